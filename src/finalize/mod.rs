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
mod workers;

use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;
use tracing::Instrument;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{timestamp, RunKey, RunStatus};
use crate::metrics::{self, Unit};
use crate::ports::{
    ChildPolicyApplied, FinalizeWrite, FinalizedBy, FinalizerStore, StoppedWrite, StoreError, UpstreamError,
    WorkerFleet,
};
use crate::stop::run_span;

pub use reconcile::ReconcileReport;
pub(crate) use workers::Verdict;

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
}

impl Default for FinalizerLimits {
    fn default() -> Self {
        FinalizerLimits {
            wait: Duration::from_secs(120),
            poll_initial: Duration::from_millis(250),
            poll_max: Duration::from_secs(5),
            run_concurrency: 16,
            stop_concurrency: 32,
        }
    }
}

/// How one run ended in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// This invocation wrote `STOPPED`.
    Stopped { workers_stopped: usize, orphans_stopped: usize, child_policy: Option<ChildPolicyApplied> },
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
                Ok(RunOutcome::Stopped { workers_stopped, orphans_stopped, .. }) => {
                    tracing::info!(workers_stopped, orphans_stopped, finalized_by = by.as_str(), "run STOPPED")
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
        let (stopped, orphans) = match self.verify_workers(key, &run, end).await {
            Verdict::Verified { stopped, orphans } => (stopped, orphans),
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
        let write = StoppedWrite {
            at,
            finalized_by: by,
            workers_stopped: stopped,
            orphans_stopped: orphans,
            child_policy: child_policy.clone(),
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
                metrics::emit(&values, &[("FinalizedBy", by.as_str())]);
                Ok(RunOutcome::Stopped { workers_stopped: stopped, orphans_stopped: orphans, child_policy })
            }
            FinalizeWrite::NotStopping => Ok(RunOutcome::Skipped { status: None }),
        }
    }
}
