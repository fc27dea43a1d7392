//! The finalize procedure: makes `STOPPED` mean "every worker is verified
//! dead", and applies the run's child policy.
//!
//! A trigger (a stream record, see [`crate::lambda::stream`]) is only a hint
//! that a run is `STOPPING`; the run is then read (strongly consistent) and
//! that read is the truth, so redeliveries, duplicates and stale images are
//! harmless. The one write that ends the run is conditioned on `STOPPING`, so
//! of any number of concurrent invocations exactly one moves it to `STOPPED`.
//!
//! Per run, in order: [`Finalizer::finalize_run`] reads the run, verifies its
//! workers (each pass: sweep for unregistered workers, describe what is not
//! yet known stopped, stop what ECS was never told to stop) until a
//! [`Verdict`], applies the child policy, and writes `STOPPED`.
//!
//! One job per file: this one reads the run and writes `STOPPED`;
//! [`workers`] verifies the workers, [`children`] applies the child policy,
//! [`reconcile`] is the safety net's pass over the stopping index.

mod children;
mod reconcile;
mod watch;
mod workers;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;
use tracing::Instrument;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{timestamp, truncate_to, RunKey, RunStatus};
use crate::metrics::{self, Unit};
use crate::ports::{
    ChildPolicyApplied, FinalizeWrite, FinalizedBy, FinalizerStore, RunRecord, StoppedWrite, StoreError, UpstreamError,
    WorkerFleet,
};
use crate::stop::run_span;

pub use reconcile::ReconcileReport;
pub(crate) use workers::{Verdict, VerdictClock};

/// Bounds of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalizerLimits {
    /// How long one run may wait for its workers before it is handed back to
    /// the trigger for a retry (also bounded by the Lambda deadline).
    pub wait: Duration,
    /// Pause between checks. The checks themselves wait for ECS's bucket.
    pub poll_initial: Duration,
    /// After a check that met ECS errors the pause doubles, up to this.
    pub poll_max: Duration,
    /// Runs of one batch finalized at once.
    pub run_concurrency: usize,
    /// `StopTask` (and `DescribeTasks`) calls in flight at once, per run; the
    /// pacing sets the rate.
    pub stop_concurrency: usize,
    /// The stop deadline: past `StopRequestedAt` + this, a run whose workers
    /// are not all confirmed dead is written `STOPPED` anyway, naming them
    /// (`UnconfirmedWorkers`), and the reconciler keeps after them.
    pub stop_deadline: Duration,
    /// A `startedBy` sweep counts for the verdict only if it started at
    /// least this long after `StopRequestedAt` (`ListTasks` lags `RunTask`).
    pub sweep_settle: Duration,
    /// A task ECS says it does not know is dead only when still unknown on a
    /// pass at least this long after the first sighting.
    pub missing_confirm: Duration,
    /// After `STOPPED`, the reconciler sweeps a run by `startedBy` until
    /// `StopRequestedAt` + this (0: no post-stop sweep).
    pub post_stop_sweep: Duration,
}

impl Default for FinalizerLimits {
    fn default() -> Self {
        FinalizerLimits {
            wait: Duration::from_secs(120),
            poll_initial: Duration::from_millis(250),
            poll_max: Duration::from_secs(5),
            run_concurrency: 16,
            stop_concurrency: 32,
            stop_deadline: Duration::from_secs(600),
            sweep_settle: Duration::from_secs(10),
            missing_confirm: Duration::from_secs(5),
            post_stop_sweep: Duration::from_secs(300),
        }
    }
}

/// How one run ended in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// This invocation wrote `STOPPED`. `unconfirmed`: workers not confirmed
    /// dead by the stop deadline, named on the run (0 for a verified stop).
    Stopped {
        workers_stopped: usize,
        orphans_stopped: usize,
        child_policy: Option<ChildPolicyApplied>,
        unconfirmed: usize,
    },
    /// Nothing to do: the run is not (or no longer) `STOPPING`, or is gone.
    Skipped { status: Option<RunStatus> },
    /// The workers could not be verified stopped within the bound: retry
    /// later. `still_running` counts the workers not confirmed stopped (0 when
    /// they all are but the `startedBy` sweep could not run).
    Pending { still_running: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

pub struct Finalizer<S, W> {
    store: S,
    fleet: W,
    limits: FinalizerLimits,
}

impl<S: FinalizerStore, W: WorkerFleet> Finalizer<S, W> {
    pub fn new(store: S, fleet: W, limits: FinalizerLimits) -> Self {
        Finalizer { store, fleet, limits }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn fleet(&self) -> &W {
        &self.fleet
    }

    /// Finalize several runs at once (at most `run_concurrency`), each once;
    /// the results in no particular order.
    pub(crate) async fn finalize_runs<T: Send>(
        &self,
        runs: Vec<(RunKey, T)>,
        deadline: Option<Instant>,
        by: FinalizedBy,
    ) -> Vec<(RunKey, T, Result<RunOutcome, FinalizeError>)> {
        stream::iter(runs.into_iter().map(|(key, tag)| async move {
            let result = self.finalize_run_by(&key, deadline, by).await;
            (key, tag, result)
        }))
        .buffer_unordered(self.limits.run_concurrency.max(1))
        .collect()
        .await
    }

    /// Finalize one run: verify (and force) every worker stopped, apply the
    /// child policy, then write `STOPPED` once.
    pub async fn finalize_run(&self, key: &RunKey, deadline: Option<Instant>) -> Result<RunOutcome, FinalizeError> {
        self.finalize_run_by(key, deadline, FinalizedBy::Stream).await
    }

    /// [`Finalizer::finalize_run`], recording which path finalized the run.
    pub async fn finalize_run_by(
        &self,
        key: &RunKey,
        deadline: Option<Instant>,
        by: FinalizedBy,
    ) -> Result<RunOutcome, FinalizeError> {
        async {
            let outcome = self.finalize_in_span(key, deadline, by).await;
            match &outcome {
                Ok(RunOutcome::Stopped { workers_stopped, orphans_stopped, unconfirmed: 0, .. }) => {
                    tracing::info!(workers_stopped, orphans_stopped, finalized_by = by.as_str(), "run STOPPED")
                }
                Ok(RunOutcome::Stopped { workers_stopped, orphans_stopped, unconfirmed, .. }) => {
                    tracing::error!(workers_stopped, orphans_stopped, unconfirmed, finalized_by = by.as_str(), "run STOPPED at the stop deadline with workers not confirmed dead; the reconciler keeps stopping them")
                }
                Ok(RunOutcome::Skipped { status }) => tracing::info!(status = ?status, "nothing to finalize"),
                Ok(RunOutcome::Pending { still_running }) => {
                    metrics::emit(&[("FinalizerPendingRetries", Unit::Count, 1.0)], &[("FinalizedBy", by.as_str())]);
                    tracing::warn!(still_running, "workers not verified stopped in time; to be retried")
                }
                Err(e) => {
                    metrics::emit(&[("FinalizerPendingRetries", Unit::Count, 1.0)], &[("FinalizedBy", by.as_str())]);
                    tracing::error!(error = %e, "finalizing failed; to be retried")
                }
            }
            outcome
        }
        .instrument(run_span("FinalizeStop", key))
        .await
    }

    async fn finalize_in_span(
        &self,
        key: &RunKey,
        deadline: Option<Instant>,
        by: FinalizedBy,
    ) -> Result<RunOutcome, FinalizeError> {
        let Some(run) = self.store.get_run(key).await? else {
            return Ok(RunOutcome::Skipped { status: None });
        };
        let status = run.run_status();
        if status != Some(RunStatus::Stopping) {
            return Ok(RunOutcome::Skipped { status });
        }
        let end = {
            let bound = Instant::now() + self.limits.wait;
            deadline.map_or(bound, |d| d.min(bound))
        };
        let stopped_at = stop_instant(&run);
        let can_sweep = run.worker_started_by.is_some() && run.worker_clusters.is_some();
        let clock = VerdictClock {
            settle_at: can_sweep.then_some(stopped_at + self.limits.sweep_settle),
            deadline_at: stopped_at + self.limits.stop_deadline,
        };
        let (stopped, orphans, unconfirmed, swept) = match self.verify_workers(key, &run, end, clock).await {
            Verdict::Verified { stopped, orphans } => (stopped, orphans, BTreeMap::new(), true),
            Verdict::Expired { stopped, orphans, unconfirmed, swept } => (stopped, orphans, unconfirmed, swept),
            Verdict::Unverified { pending, error } => {
                if let Some(e) = error {
                    tracing::warn!(error = %e, "ECS errors while verifying workers");
                }
                return Ok(RunOutcome::Pending { still_running: pending });
            }
        };
        let now = OffsetDateTime::now_utc();
        let at = timestamp(now);
        let child_policy = self.apply_child_policy(key, &run, &at).await?;
        // Followed up by the reconciler: what is not confirmed dead, a
        // sweepable run until its post-stop sweep window closes, and one
        // whose sweep never came back clean before the deadline.
        let window_open = can_sweep && (!swept || Instant::now() < stopped_at + self.limits.post_stop_sweep);
        let write = StoppedWrite {
            at,
            finalized_by: by,
            workers_stopped: stopped,
            orphans_stopped: orphans,
            child_policy: child_policy.clone(),
            watch: !unconfirmed.is_empty() || window_open,
            unconfirmed: unconfirmed.clone(),
        };
        match self.store.finalize_stop(key, &write).await? {
            FinalizeWrite::Stopped => {
                let since = run.stop_requested_at.as_deref().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
                let mut values = vec![
                    ("WorkersStopped", Unit::Count, stopped as f64),
                    ("OrphansStopped", Unit::Count, orphans as f64),
                ];
                if let Some(since) = since {
                    values.push(("StopToStoppedSeconds", Unit::Seconds, (now - since).as_seconds_f64().max(0.0)));
                }
                if !unconfirmed.is_empty() {
                    values.push(("StoppedWithUnconfirmedWorkers", Unit::Count, 1.0));
                    tracing::error!(unconfirmed = %unconfirmed_list(&unconfirmed), "workers not confirmed dead at the stop deadline");
                }
                metrics::emit(&values, &[("FinalizedBy", by.as_str())]);
                Ok(RunOutcome::Stopped {
                    workers_stopped: stopped,
                    orphans_stopped: orphans,
                    child_policy,
                    unconfirmed: unconfirmed.len(),
                })
            }
            FinalizeWrite::NotStopping => Ok(RunOutcome::Skipped { status: None }),
        }
    }
}

/// When the stop was accepted, on tokio's clock: `StopRequestedAt`'s age
/// (wall clock, read once per read of the run) before now. A run without a
/// readable `StopRequestedAt` (not one this control plane stopped) is timed
/// from its `ModifiedAt`, and from now if that is unreadable too (the later,
/// so no bound is shortened).
pub(crate) fn stop_instant(run: &RunRecord) -> Instant {
    let now = Instant::now();
    let parse = |t: &Option<String>| t.as_deref().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let age = parse(&run.stop_requested_at)
        .or_else(|| parse(&run.modified_at))
        .map(|t| (OffsetDateTime::now_utc() - t).max(time::Duration::ZERO))
        .and_then(|age| Duration::try_from(age).ok())
        .unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

/// Task ARNs, comma separated, for logs, cut to a bounded length.
pub(crate) fn unconfirmed_list(workers: &BTreeMap<String, String>) -> String {
    let all = workers.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
    truncate_to(&all, 1_000).to_owned()
}
