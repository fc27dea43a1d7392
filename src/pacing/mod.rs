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

//!
//! One job per file: this one holds ECS's rates and how each function takes
//! them; [`bucket`] the token bucket, [`paced`] the wrapper of the worker
//! port, [`describe_batches`] the coalescing of `DescribeTasks`.

mod bucket;
mod describe_batches;
mod paced;

use std::time::Duration;

pub use bucket::TokenBucket;
pub use paced::{Paced, PacingCounts};

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

#[cfg(test)]
mod tests {
    use super::*;

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
