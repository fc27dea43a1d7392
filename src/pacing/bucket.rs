//! A token bucket on tokio's clock, cut by a throttle and recovering.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{BucketSpec, CUT_INTERVAL, MIN_FACTOR, RECOVERY};

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
}
