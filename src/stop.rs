//! The stop procedure: `StopWorkflowRun` and the read `GetWorkflowRun`,
//! written against the ports so the whole decision logic runs with fakes.
//!
//! One conditional write moves an active run to `STOPPING`; only the request
//! that made that transition then sends one wave of `StopTask`, all at once
//! up to ECS's burst (the worker port is paced, `crate::pacing`). Whatever
//! the wave does not confirm (no token left, throttled, failed, past the
//! budget) is the finalizer's, which paces it to ECS's refill rate.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Instrument;

use crate::authz::{Action, Authz, Basis, Question};
use crate::domain::{timestamp, truncate_to, Caller, RunKey, RunStatus, StopDecision};
use crate::error::ApiError;
use crate::ports::{RunRecord, RunStore, StopRequest, StopWrite, TaskStop, UpstreamError, UpstreamKind, WorkerControl};

/// ECS caps `StopTask.reason` at 255 characters.
pub(crate) const ECS_REASON_MAX: usize = 255;

/// How the `StopTask` fan-out is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanOutLimits {
    /// `StopTask` calls in flight at once: ECS's burst (100), so a stop of up
    /// to 100 workers is one round trip after the write.
    pub concurrency: usize,
    /// Time the fan-out may take before the API answers anyway; whatever is
    /// not confirmed by then is the finalizer's.
    pub budget: Duration,
}

impl Default for FanOutLimits {
    fn default() -> Self {
        FanOutLimits { concurrency: 100, budget: Duration::from_secs(10) }
    }
}

/// What the fan-out achieved, for the log and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutReport {
    pub accepted: usize,
    pub gone: usize,
    pub failed: usize,
    /// Left to the finalizer because ECS's bucket is spent (no token in this
    /// function's share, or a throttle): back-pressure, not a failure.
    pub deferred: usize,
    /// Not answered within the budget.
    pub unfinished: usize,
}

/// The answer to `StopWorkflowRun`.
#[derive(Debug, Clone, PartialEq)]
pub struct StopOutput {
    /// The run as written (`ALL_NEW`) or as found (`ALL_OLD`).
    pub run: RunRecord,
    pub status: RunStatus,
    /// Only the request that made the transition stops workers.
    pub fan_out: Option<FanOutReport>,
}

pub struct Service<S, W> {
    store: S,
    workers: W,
    limits: FanOutLimits,
    authz: Authz,
}

/// Current UTC time as the table stores it.
pub(crate) fn now_iso() -> String {
    timestamp(OffsetDateTime::now_utc())
}

/// The span every log line of one run's handling is written in.
pub(crate) fn run_span(operation: &'static str, key: &RunKey) -> tracing::Span {
    tracing::info_span!("run", operation, run = %key)
}

/// The `reason` ECS records on each stopped task: enough to find the run and
/// the person from the task alone.
pub fn stop_reason(key: &RunKey, by: &str) -> String {
    let reason = format!(
        "StopWorkflowRun: run {} of workflow {} stopped by {}",
        key.run_id,
        key.workflow_arn.workflow_name(),
        by
    );
    truncate_to(&reason, ECS_REASON_MAX).to_owned()
}

impl<S: RunStore, W: WorkerControl> Service<S, W> {
    pub fn new(store: S, workers: W, limits: FanOutLimits) -> Self {
        Service { store, workers, limits, authz: Authz::default() }
    }

    /// The same service deciding access with `authz` (shared: a refresh of
    /// it is seen by the next request) instead of the shipped default policy.
    pub fn with_authz(mut self, authz: Authz) -> Self {
        self.authz = authz;
        self
    }

    pub fn authz(&self) -> &Authz {
        &self.authz
    }

    /// The access decision, made before anything is read or written: it
    /// needs no run data. A denial is logged in the run's span with the
    /// deciding policies (the forbids that applied; none: no permit applied)
    /// and answered with the fixed `AccessDeniedException`, whatever the
    /// reason, so a caller learns nothing of the policies or the run.
    fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        key: &RunKey,
        source_ip: Option<&str>,
    ) -> Result<(), ApiError> {
        let d = self.authz.decide(&Question { caller, action, workflow: &key.workflow_arn, source_ip });
        for error in &d.errors {
            tracing::warn!(principal = caller.principal(), error = %error, "a policy failed to evaluate (it did not apply)");
        }
        if d.allowed {
            tracing::debug!(principal = caller.principal(), policies = ?d.policy_ids(), "access allowed");
            return Ok(());
        }
        match &d.basis {
            Basis::FailClosed(why) => tracing::error!(
                principal = caller.principal(),
                action = action.as_str(),
                why = %why,
                "access denied: the policy set is unusable, every request is denied"
            ),
            Basis::Malformed(why) => {
                tracing::warn!(principal = caller.principal(), action = action.as_str(), why = %why, "access denied: request not expressible")
            }
            _ => tracing::warn!(
                principal = caller.principal(),
                action = action.as_str(),
                policies = ?d.policy_ids(),
                "access denied by policy{}",
                if d.policy_ids().is_empty() { " (no permit applied)" } else { " (forbidden)" }
            ),
        }
        Err(ApiError::access_denied())
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn workers(&self) -> &W {
        &self.workers
    }

    /// Stop a run: one conditional write, then (only for the request that made
    /// the transition) one bounded, concurrent wave of `StopTask`.
    ///
    /// `deadline` is when the caller must have its answer; the fan-out never
    /// runs past it.
    pub async fn stop_workflow_run(
        &self,
        caller: &Caller,
        key: &RunKey,
        stop: &StopRequest,
        deadline: Option<Instant>,
    ) -> Result<StopOutput, ApiError> {
        async {
            self.authorize(caller, Action::StopWorkflowRun, key, stop.source_ip.as_deref())?;
            let write = self.store.request_stop(key, stop).await.map_err(|e| {
                tracing::error!(error = %e, "stop transition failed");
                ApiError::from(e)
            })?;
            match write {
                StopWrite::NotFound => Err(ApiError::run_not_found(&key.run_id)),
                StopWrite::NotStoppable(run) => match run.run_status().and_then(StopDecision::from_failed_condition) {
                    Some(StopDecision::AlreadyStopped(status)) => {
                        tracing::info!(%status, "stop is a no-op: run already stopping or stopped");
                        Ok(StopOutput { run, status, fan_out: None })
                    }
                    Some(StopDecision::Finished(status)) => {
                        tracing::info!(%status, "stop refused: run already finished");
                        Err(ApiError::run_finished(status))
                    }
                    _ => {
                        tracing::error!(status = %run.status, "stop condition failed on a run with an active or unknown status");
                        Err(ApiError::internal())
                    }
                },
                StopWrite::Transitioned(run) => {
                    let reason = stop_reason(key, &stop.by);
                    let report = self.fan_out(&run, &reason, deadline).await;
                    tracing::info!(
                        by = %stop.by,
                        workers = run.workers.len(),
                        accepted = report.accepted,
                        gone = report.gone,
                        failed = report.failed,
                        deferred = report.deferred,
                        unfinished = report.unfinished,
                        "run moved to STOPPING"
                    );
                    Ok(StopOutput { run, status: RunStatus::Stopping, fan_out: Some(report) })
                }
            }
        }
        .instrument(run_span("StopWorkflowRun", key))
        .await
    }

    async fn fan_out(&self, run: &RunRecord, reason: &str, deadline: Option<Instant>) -> FanOutReport {
        let total = run.workers.len();
        let mut report = FanOutReport::default();
        if total == 0 {
            return report;
        }
        let budget_end = Instant::now() + self.limits.budget;
        let end = deadline.map_or(budget_end, |d| d.min(budget_end));
        // Futures are built eagerly from a named async fn: a closure returning
        // an async block here trips the compiler's `Send` inference.
        let calls: Vec<_> = run.workers.iter().map(|(task, cluster)| self.stop_one(task, cluster, reason)).collect();
        let mut results = stream::iter(calls).buffer_unordered(self.limits.concurrency.max(1));
        let mut answered = 0;
        loop {
            match tokio::time::timeout_at(end, results.next()).await {
                Ok(Some((task, result))) => {
                    answered += 1;
                    match result {
                        Ok(TaskStop::Accepted { .. }) => report.accepted += 1,
                        Ok(TaskStop::Gone) => report.gone += 1,
                        Err(e) if e.kind == UpstreamKind::Throttled => report.deferred += 1,
                        Err(e) => {
                            report.failed += 1;
                            tracing::warn!(task = %task, error = %e, "StopTask failed; the finalizer will retry");
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        pending = total - answered,
                        "StopTask fan-out budget spent; the finalizer will finish"
                    );
                    break;
                }
            }
        }
        report.unfinished = total - answered;
        report
    }

    async fn stop_one<'a>(
        &self,
        task: &'a str,
        cluster: &str,
        reason: &str,
    ) -> (&'a str, Result<TaskStop, UpstreamError>) {
        (task, self.workers.stop_task(cluster, task, reason).await)
    }

    /// Read a run for `GetWorkflowRun`. A denied read is refused before the
    /// table is read, so a run's existence never leaks.
    pub async fn get_workflow_run(&self, caller: &Caller, key: &RunKey) -> Result<RunRecord, ApiError> {
        self.read_workflow_run(caller, key, None).await
    }

    /// [`Self::get_workflow_run`] with the caller's source IP for the policies.
    pub async fn read_workflow_run(
        &self,
        caller: &Caller,
        key: &RunKey,
        source_ip: Option<&str>,
    ) -> Result<RunRecord, ApiError> {
        async {
            self.authorize(caller, Action::GetWorkflowRun, key, source_ip)?;
            match self.store.get_run(key).await {
                Ok(Some(run)) => Ok(run),
                Ok(None) => Err(ApiError::run_not_found(&key.run_id)),
                Err(e) => {
                    tracing::error!(error = %e, "reading run failed");
                    Err(e.into())
                }
            }
        }
        .instrument(run_span("GetWorkflowRun", key))
        .await
    }
}
