//! Pacing ECS calls to ECS's own token buckets, so that a stop of any size
//! is paced rather than throttled.
//!
//! ECS throttles per account and Region with token buckets: `StopTask`
//! (shared with `RunTask`, `StartTask`, ...) holds 100 tokens and refills 40
//! per second; `DescribeTasks` and `ListTasks` hold 100 and refill 20 per
//! second. A throttled call is answered `ThrottlingException`.
//!
//! [`Paced`] wraps any [`WorkerFleet`] and takes a token from a process-wide
//! [`TokenBucket`] before each call. The two functions use the buckets
//! differently ([`EcsRates::for_api`], [`EcsRates::for_finalizer`]):
//!
//! - the API spends the burst: one wave of at most `stop_burst` `StopTask`s,
//!   all at once, and never waits for a token. A worker it has no token for
//!   (or that ECS throttles) is left to the finalizer, reported as
//!   `UpstreamKind::Throttled`;
//! - the finalizer takes the refill: it starts with an empty bucket (the
//!   API's wave has just spent the account's), never bursts, and waits for
//!   each token, so beyond the burst `StopTask`s go out at the refill rate.
//!
//! Both leave `reserve` of the refill rate to the schedulers' `RunTask`.
//! ECS's bucket is shared by every process of the account, which a
//! process-local bucket cannot see: a `ThrottlingException` is back-pressure.
//! The bucket is emptied and its rate halved (at most once per
//! [`CUT_INTERVAL`]), recovering linearly over [`RECOVERY`]; the finalizer
//! sends the call again after its next token. The SDK never retries a
//! throttled ECS call itself (`aws::ecs`), so a retry quota cannot turn into
//! a storm of unpaced single attempts.
//!
//! The finalizer's `DescribeTasks` of different runs waiting for a read
//! token are coalesced into one call of up to 100 tasks, so polling many
//! runs costs a token per 100 tasks, not one per run.
//!
//! Time is tokio's, so the fakes tier runs all of this on a paused clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::ports::{Described, TaskStop, UpstreamError, UpstreamKind, WorkerControl, WorkerFleet, DESCRIBE_TASKS_MAX};

/// ECS's published bucket of `StopTask` (shared with `RunTask` and
/// `StartTask`): capacity and refill per second.
pub const ECS_STOP_BURST: u32 = 100;
pub const ECS_STOP_RATE: f64 = 40.0;
/// ECS's published bucket of `DescribeTasks` and `ListTasks`.
pub const ECS_READ_BURST: u32 = 100;
pub const ECS_READ_RATE: f64 = 20.0;

/// A throttle halves the rate at most this often: the throttles answered to
/// one burst of concurrent calls are one signal, not many.
pub const CUT_INTERVAL: Duration = Duration::from_millis(100);
/// After a cut, the rate grows back to the configured one over this time.
pub const RECOVERY: Duration = Duration::from_secs(20);
/// The rate is never cut below this fraction of the configured one.
const MIN_FACTOR: f64 = 1.0 / 40.0;
/// A call throttled by ECS is sent again at most this many times (each
/// after a token of the cut bucket); the callers' deadlines bound it too.
pub const MAX_RESENDS: u32 = 8;

/// The account's ECS rates as this deployment may use them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EcsRates {
    pub stop_burst: u32,
    /// `StopTask` tokens per second (the account's refill).
    pub stop_rate: f64,
    pub read_burst: u32,
    pub read_rate: f64,
    /// The fraction of `stop_rate` left to the schedulers' `RunTask` (0 to
    /// 0.9). The burst is not reserved: a stop's wave is one moment.
    pub reserve: f64,
}

impl Default for EcsRates {
    fn default() -> Self {
        EcsRates {
            stop_burst: ECS_STOP_BURST,
            stop_rate: ECS_STOP_RATE,
            read_burst: ECS_READ_BURST,
            read_rate: ECS_READ_RATE,
            reserve: 0.1,
        }
    }
}

/// One token bucket: how many tokens it holds, how fast it refills, how many
/// it starts with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub capacity: f64,
    pub rate: f64,
    pub initial: f64,
}

/// How a function takes its tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub stop: BucketSpec,
    pub read: BucketSpec,
    /// Wait for a token, and send a throttled call again (the finalizer);
    /// or take only what is there now and leave the rest (the API).
    pub wait: bool,
}

impl EcsRates {
    fn stop_refill(&self) -> f64 {
        self.stop_rate * (1.0 - self.reserve)
    }

    /// The API: the whole burst for one wave, never a wait.
    pub fn for_api(&self) -> Pacing {
        let burst = f64::from(self.stop_burst);
        let read = f64::from(self.read_burst);
        Pacing {
            stop: BucketSpec { capacity: burst, rate: self.stop_refill(), initial: burst },
            read: BucketSpec { capacity: read, rate: self.read_rate, initial: read },
            wait: false,
        }
    }

    /// The finalizer (and the reconciler): the refill rate, no burst, starting
    /// empty; reads may use the read bucket's burst.
    pub fn for_finalizer(&self) -> Pacing {
        let read = f64::from(self.read_burst);
        Pacing {
            stop: BucketSpec { capacity: 1.0, rate: self.stop_refill(), initial: 0.0 },
            read: BucketSpec { capacity: read, rate: self.read_rate, initial: read },
            wait: true,
        }
    }
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
    /// The fraction of the configured rate in force (1 until a throttle).
    factor: f64,
    last_cut: Option<Instant>,
    /// Bumped by a throttle: reservations made before it are void, their
    /// waiters take a place again at the cut rate.
    generation: u64,
}

/// A token bucket on tokio's clock. Tokens are reserved in order: a waiter
/// takes its token at once (the count may go below zero) and sleeps until
/// the refill has covered it, so waiters are served first come, first
/// served, and a waiter that is cancelled gives its token back. A throttle
/// voids every reservation: the waiters queue again at the cut rate, so no
/// call goes out on a schedule made before ECS said slow down.
#[derive(Debug)]
pub struct TokenBucket {
    spec: BucketSpec,
    state: Mutex<State>,
}

impl TokenBucket {
    pub fn new(spec: BucketSpec) -> Self {
        let state = State {
            tokens: spec.initial.min(spec.capacity),
            at: Instant::now(),
            factor: 1.0,
            last_cut: None,
            generation: 0,
        };
        TokenBucket { spec, state: Mutex::new(state) }
    }

    fn refilled(&self) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        s.tokens = (s.tokens + dt * self.spec.rate * s.factor).min(self.spec.capacity);
        s.factor = (s.factor + dt / RECOVERY.as_secs_f64()).min(1.0);
        s.at = now;
        s
    }

    /// Take a token if there is one now.
    pub fn try_take(&self) -> bool {
        let mut s = self.refilled();
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take the next token, waiting for the refill if need be.
    pub async fn take(&self) {
        loop {
            let (wait, generation) = {
                let mut s = self.refilled();
                s.tokens -= 1.0;
                let wait = if s.tokens >= 0.0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64(-s.tokens / (self.spec.rate * s.factor).max(f64::MIN_POSITIVE))
                };
                (wait, s.generation)
            };
            if wait.is_zero() {
                return;
            }
            let mut reservation = Reservation { bucket: self, generation, used: false };
            tokio::time::sleep(wait).await;
            reservation.used = true;
            if self.refilled().generation == generation {
                return;
            }
        }
    }

    /// ECS said slow down: the account's bucket is empty, whatever this one
    /// believed. Empty it, and halve the rate (at most once per
    /// [`CUT_INTERVAL`]).
    pub fn throttled(&self) {
        let mut s = self.refilled();
        // The debt of the voided reservations is forgiven: their waiters
        // take a place again.
        s.tokens = s.tokens.clamp(-1.0, 0.0);
        s.generation += 1;
        let now = s.at;
        if s.last_cut.is_none_or(|t| now.saturating_duration_since(t) >= CUT_INTERVAL) {
            s.factor = (s.factor * 0.5).max(MIN_FACTOR);
            s.last_cut = Some(now);
        }
    }

    /// A token taken but not used goes back.
    pub fn give_back(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.tokens = (s.tokens + 1.0).min(self.spec.capacity);
    }

    /// The rate in force now (tokens per second).
    pub fn rate(&self) -> f64 {
        self.spec.rate * self.refilled().factor
    }
}

/// A token taken by a waiter; given back if the waiter is cancelled first.
struct Reservation<'a> {
    bucket: &'a TokenBucket,
    generation: u64,
    used: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut s = self.bucket.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.used && s.generation == self.generation {
            s.tokens = (s.tokens + 1.0).min(self.bucket.spec.capacity);
        }
    }
}

/// What pacing did, for the log, the metrics and the benchmark.
#[derive(Debug, Default)]
pub struct PacingCounts {
    /// Calls ECS answered with a throttling error.
    pub throttled: AtomicU64,
    /// `StopTask`s the API left to the finalizer for want of a token.
    pub deferred: AtomicU64,
}

/// A [`WorkerFleet`] whose calls are paced by process-wide token buckets.
/// Clones share the buckets.
#[derive(Debug, Clone)]
pub struct Paced<W> {
    inner: W,
    stop: Arc<TokenBucket>,
    read: Arc<TokenBucket>,
    wait: bool,
    counts: Arc<PacingCounts>,
    describes: Arc<DescribeBatches>,
}

impl<W> Paced<W> {
    pub fn new(inner: W, pacing: Pacing) -> Self {
        Paced {
            inner,
            stop: Arc::new(TokenBucket::new(pacing.stop)),
            read: Arc::new(TokenBucket::new(pacing.read)),
            wait: pacing.wait,
            counts: Arc::new(PacingCounts::default()),
            describes: Arc::new(DescribeBatches::default()),
        }
    }

    pub fn inner(&self) -> &W {
        &self.inner
    }

    pub fn counts(&self) -> &PacingCounts {
        &self.counts
    }

    /// One paced call: a token first (or, for the API, none left: the call is
    /// not sent), then the call.
    async fn paced<T, F, Fut>(&self, bucket: &TokenBucket, operation: &'static str, call: F) -> Result<T, UpstreamError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        if self.wait {
            bucket.take().await;
        } else if !bucket.try_take() {
            self.counts.deferred.fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::new(
                "ecs",
                operation,
                UpstreamKind::Throttled,
                "not sent: this function's share of the ECS bucket is spent",
            ));
        }
        self.send(bucket, call).await
    }

    /// The call, with a token in hand. A throttle cuts the bucket and, when
    /// this side waits, the call goes again after its next token.
    async fn send<T, F, Fut>(&self, bucket: &TokenBucket, call: F) -> Result<T, UpstreamError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let mut resends = 0;
        loop {
            match call().await {
                Err(e) if e.kind == UpstreamKind::Throttled => {
                    self.counts.throttled.fetch_add(1, Ordering::Relaxed);
                    bucket.throttled();
                    if !self.wait || resends >= MAX_RESENDS {
                        return Err(e);
                    }
                    resends += 1;
                    bucket.take().await;
                }
                other => return other,
            }
        }
    }
}

/// `DescribeTasks` requests of one process waiting for a read token, per
/// cluster. Whoever gets a token sends one call for the oldest waiting
/// requests, up to ECS's 100 tasks, and hands each its part of the answer:
/// while the read bucket is short, the polls of many runs share its tokens
/// instead of queueing one call each.
#[derive(Debug, Default)]
struct DescribeBatches {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<String, VecDeque<Waiting>>>,
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    tasks: Vec<String>,
    reply: oneshot::Sender<Result<Described, UpstreamError>>,
}

impl DescribeBatches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Waiting>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest requests of `cluster` that fit one call, if request `id`
    /// is still waiting (else another caller is already answering it).
    fn take_batch(&self, cluster: &str, id: u64) -> Option<Vec<Waiting>> {
        let mut waiting = self.lock();
        let queue = waiting.get_mut(cluster)?;
        if !queue.iter().any(|w| w.id == id) {
            return None;
        }
        let mut batch: Vec<Waiting> = Vec::new();
        let mut tasks = 0;
        while let Some(next) = queue.front() {
            if !batch.is_empty() && tasks + next.tasks.len() > DESCRIBE_TASKS_MAX {
                break;
            }
            tasks += next.tasks.len();
            batch.extend(queue.pop_front());
        }
        if queue.is_empty() {
            waiting.remove(cluster);
        }
        Some(batch)
    }
}

/// Takes a cancelled request out of the queue, so nobody describes for it.
struct Enqueued<'a> {
    batches: &'a DescribeBatches,
    cluster: &'a str,
    id: u64,
}

impl Drop for Enqueued<'_> {
    fn drop(&mut self) {
        let mut waiting = self.batches.lock();
        if let Some(queue) = waiting.get_mut(self.cluster) {
            queue.retain(|w| w.id != self.id);
            if queue.is_empty() {
                waiting.remove(self.cluster);
            }
        }
    }
}

impl<W: WorkerFleet> Paced<W> {
    /// `DescribeTasks` for `tasks`, coalesced with the other requests of this
    /// process waiting for a read token (see [`DescribeBatches`]).
    async fn describe_coalesced(&self, cluster: &str, tasks: &[String]) -> Result<Described, UpstreamError> {
        let (reply, mut answer) = oneshot::channel();
        let id = self.describes.next_id.fetch_add(1, Ordering::Relaxed);
        self.describes.lock().entry(cluster.to_owned()).or_default().push_back(Waiting {
            id,
            tasks: tasks.to_vec(),
            reply,
        });
        let _enqueued = Enqueued { batches: &self.describes, cluster, id };
        let lost = || UpstreamError::new("ecs", "DescribeTasks", UpstreamKind::Fault, "the batch's call was cancelled");
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => return answered.unwrap_or_else(|_| Err(lost())),
                () = self.read.take() => {
                    let Some(batch) = self.describes.take_batch(cluster, id) else {
                        // Another caller took this request into its call: the
                        // token goes back, the answer comes from that call.
                        self.read.give_back();
                        return answer.await.unwrap_or_else(|_| Err(lost()));
                    };
                    self.answer_batch(cluster, batch).await;
                }
            }
        }
    }

    /// One `DescribeTasks` for a batch (a token in hand); each request gets
    /// the tasks it asked about, or the call's error.
    async fn answer_batch(&self, cluster: &str, batch: Vec<Waiting>) {
        let mut all: Vec<String> = batch.iter().flat_map(|w| w.tasks.iter().cloned()).collect();
        all.sort();
        all.dedup();
        let result = self.send(&self.read, || self.inner.describe_tasks(cluster, &all)).await;
        for w in batch {
            let part = match &result {
                Ok(d) => {
                    let asked: HashSet<&String> = w.tasks.iter().collect();
                    Ok(Described {
                        found: d.found.iter().filter(|t| asked.contains(&t.arn)).cloned().collect(),
                        missing: d.missing.iter().filter(|t| asked.contains(t)).cloned().collect(),
                    })
                }
                Err(e) => Err(e.clone()),
            };
            let _ = w.reply.send(part);
        }
    }
}

impl<W: WorkerControl> WorkerControl for Paced<W> {
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<TaskStop, UpstreamError> {
        self.paced(&self.stop, "StopTask", || self.inner.stop_task(cluster, task, reason)).await
    }
}

impl<W: WorkerFleet> WorkerFleet for Paced<W> {
    /// The finalizer's (which waits for tokens) are coalesced across runs;
    /// the API never describes.
    async fn describe_tasks(&self, cluster: &str, tasks: &[String]) -> Result<Described, UpstreamError> {
        if self.wait {
            self.describe_coalesced(cluster, tasks).await
        } else {
            self.paced(&self.read, "DescribeTasks", || self.inner.describe_tasks(cluster, tasks)).await
        }
    }

    /// One token per call, however many pages it reads (a page holds 100
    /// tasks; a run's sweep rarely needs two).
    async fn list_running(&self, cluster: &str, started_by: &str) -> Result<Vec<String>, UpstreamError> {
        self.paced(&self.read, "ListTasks", || self.inner.list_running(cluster, started_by)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(capacity: f64, rate: f64, initial: f64) -> TokenBucket {
        TokenBucket::new(BucketSpec { capacity, rate, initial })
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_gives_its_burst_at_once_then_the_refill_rate() {
        let b = bucket(100.0, 40.0, 100.0);
        let t0 = Instant::now();
        for _ in 0..100 {
            b.take().await;
        }
        assert_eq!(Instant::now(), t0, "the burst waits for nothing");
        for _ in 0..40 {
            b.take().await;
        }
        let took = Instant::now() - t0;
        assert!((took.as_secs_f64() - 1.0).abs() < 0.001, "40 more at 40/s take a second: {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn try_take_never_waits_and_never_goes_below_zero() {
        let b = bucket(3.0, 1.0, 3.0);
        assert_eq!((0..5).filter(|_| b.try_take()).count(), 3);
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert!(b.try_take(), "one token refilled in a second");
        assert!(!b.try_take());
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_empties_the_bucket_and_halves_the_rate_once_per_interval() {
        let b = bucket(100.0, 40.0, 100.0);
        b.throttled();
        b.throttled();
        assert_eq!(b.rate(), 20.0, "two throttles of one burst are one cut");
        assert!(!b.try_take(), "the bucket is empty after a throttle");
        tokio::time::advance(CUT_INTERVAL).await;
        b.throttled();
        assert!(b.rate() < 20.0 && b.rate() > 10.0, "a later throttle cuts again: {}", b.rate());
        tokio::time::advance(RECOVERY).await;
        assert_eq!(b.rate(), 40.0, "the rate recovers fully within RECOVERY");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_gives_its_token_back() {
        let b = bucket(1.0, 1.0, 0.0);
        let cancelled = tokio::time::timeout(Duration::from_millis(100), b.take()).await;
        assert!(cancelled.is_err());
        let t0 = Instant::now();
        b.take().await;
        let waited = Instant::now() - t0;
        assert!(
            waited <= Duration::from_millis(901),
            "the next waiter is not charged for the cancelled one: {waited:?}"
        );
    }

    #[test]
    fn the_api_spends_the_burst_and_the_finalizer_the_refill_less_the_reserve() {
        let rates = EcsRates::default();
        let api = rates.for_api();
        assert_eq!((api.stop.capacity, api.stop.initial, api.wait), (100.0, 100.0, false));
        let fin = rates.for_finalizer();
        assert_eq!((fin.stop.capacity, fin.stop.initial, fin.wait), (1.0, 0.0, true));
        assert!((fin.stop.rate - 36.0).abs() < 1e-9, "10% of 40/s is left to RunTask");
    }
}
