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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;
use tracing::Instrument;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::metrics::{self, Unit};
use crate::model::{check_run_id, timestamp, ChildPolicy, RunKey, RunStatus, WorkflowArn};
use crate::ports::{
    CancelWrite, ChildPolicyApplied, FinalizeWrite, FinalizedBy, FinalizerStore, ReconcilerStore, RunRecord,
    StopRequest, StopWrite, StoppedWrite, StoreError, TaskStop, UpstreamError, WorkerFleet, DESCRIBE_TASKS_MAX,
};
use crate::stop::{run_span, stop_reason};

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

/// What the checks concluded about a run's workers.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    /// Every worker, registered or found by the sweep, is `STOPPED` or unknown
    /// to ECS, and the last pass saw no ECS error.
    Verified { stopped: usize, orphans: usize },
    /// Not proven: workers still running, or ECS errors in the last pass.
    Unverified { pending: usize, error: Option<UpstreamError> },
}

/// What one reconciler pass found and did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReconcileReport {
    /// Runs `STOPPING` longer than the threshold: stranded, finalized here.
    pub found: usize,
    pub stopped: usize,
    /// Workers not verified stopped yet: the next pass tries again.
    pub pending: usize,
    /// Failed, or listed in the index with an unreadable key.
    pub failed: usize,
    /// The age of the oldest `STOPPING` run (0 when there is none).
    pub oldest_stopping_age_seconds: f64,
}

/// The principal recorded on children stopped or cancelled by a parent.
pub(crate) fn parent_principal(parent: &RunKey) -> String {
    format!("parent-run:{}/{}", parent.workflow_arn, parent.run_id)
}

/// What one run's checks know so far (task ARN → cluster).
struct WorkerCheck {
    /// Every worker ever seen: registered, and orphans found by the sweep.
    known: BTreeMap<String, String>,
    orphans: BTreeSet<String>,
    /// Not yet confirmed stopped.
    pending: BTreeMap<String, String>,
    /// The last ECS error of the current pass.
    error: Option<UpstreamError>,
}

impl WorkerCheck {
    fn new(run: &RunRecord) -> Self {
        WorkerCheck { known: run.workers.clone(), orphans: BTreeSet::new(), pending: run.workers.clone(), error: None }
    }

    fn verdict(&self) -> Option<Verdict> {
        (self.pending.is_empty() && self.error.is_none())
            .then_some(Verdict::Verified { stopped: self.known.len(), orphans: self.orphans.len() })
    }

    fn unverified(self) -> Verdict {
        Verdict::Unverified { pending: self.pending.len(), error: self.error }
    }

    fn pending_by_cluster(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (task, cluster) in &self.pending {
            by_cluster.entry(cluster.clone()).or_default().push(task.clone());
        }
        by_cluster
    }
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

    /// Pass after pass until every worker is verified stopped or `end` comes:
    /// each pass sweeps for unregistered workers (so a task launched late is
    /// still found), describes the pending ones, and stops those ECS was never
    /// told to stop. The worker port is paced (`crate::pacing`): a pass takes
    /// as long as ECS's buckets allow, so the polling follows the bucket. The
    /// pause between passes is `poll_initial`, doubling up to `poll_max` only
    /// while passes meet ECS errors. A pass still waiting for tokens at `end`
    /// is cut short: what it confirmed counts, the rest stays pending.
    async fn verify_workers(&self, key: &RunKey, run: &RunRecord, end: Instant) -> Verdict {
        let reason = stop_reason(key, "stop-finalizer");
        let mut check = WorkerCheck::new(run);
        let mut pause = self.limits.poll_initial;
        loop {
            check.error = None;
            let pass = async {
                self.sweep_unregistered(run, &mut check).await;
                let unasked = self.describe_pending(&mut check).await;
                self.stop_unasked(unasked, &reason, &mut check).await;
            };
            if tokio::time::timeout_at(end, pass).await.is_err() {
                return check.unverified();
            }
            if let Some(verdict) = check.verdict() {
                return verdict;
            }
            pause =
                if check.error.is_some() { (pause * 2).min(self.limits.poll_max) } else { self.limits.poll_initial };
            if Instant::now() + pause > end {
                return check.unverified();
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Tasks with the run's `startedBy` still meant to run, in its clusters:
    /// every one not registered is an orphan, and pending.
    async fn sweep_unregistered(&self, run: &RunRecord, check: &mut WorkerCheck) {
        let (Some(started_by), Some(clusters)) = (&run.worker_started_by, &run.worker_clusters) else { return };
        for cluster in clusters {
            match self.fleet.list_running(cluster, started_by).await {
                Ok(arns) => {
                    for arn in arns {
                        if !check.known.contains_key(&arn) {
                            tracing::warn!(task = %arn, "unregistered worker found by startedBy sweep");
                            check.orphans.insert(arn.clone());
                            check.known.insert(arn.clone(), cluster.clone());
                        }
                        check.pending.entry(arn).or_insert_with(|| cluster.clone());
                    }
                }
                Err(e) => check.error = Some(e),
            }
        }
    }

    /// `DescribeTasks` of every pending task, per cluster and at most 100 a
    /// call, up to `stop_concurrency` calls at once: stopped and unknown
    /// tasks leave `pending`; the running ones ECS was never told to stop are
    /// returned.
    async fn describe_pending(&self, check: &mut WorkerCheck) -> Vec<(String, String)> {
        let calls: Vec<(String, Vec<String>)> = check
            .pending_by_cluster()
            .into_iter()
            .flat_map(|(cluster, tasks)| {
                tasks.chunks(DESCRIBE_TASKS_MAX).map(|chunk| (cluster.clone(), chunk.to_vec())).collect::<Vec<_>>()
            })
            .collect();
        let mut answers = stream::iter(calls.into_iter().map(|(cluster, chunk)| async move {
            let described = self.fleet.describe_tasks(&cluster, &chunk).await;
            (cluster, described)
        }))
        .buffer_unordered(self.limits.stop_concurrency.max(1));
        let mut unasked = Vec::new();
        while let Some((cluster, described)) = answers.next().await {
            match described {
                Ok(described) => {
                    for gone in described.missing {
                        check.pending.remove(&gone);
                    }
                    for t in described.found {
                        if t.is_stopped() {
                            check.pending.remove(&t.arn);
                        } else if !t.stop_requested() {
                            unasked.push((t.arn, cluster.clone()));
                        }
                    }
                }
                Err(e) => check.error = Some(e),
            }
        }
        unasked
    }

    /// `StopTask` for each `(task, cluster)`, at most `stop_concurrency` at once.
    async fn stop_unasked(&self, tasks: Vec<(String, String)>, reason: &str, check: &mut WorkerCheck) {
        let stops = stream::iter(tasks.into_iter().map(|(task, cluster)| async move {
            let r = self.fleet.stop_task(&cluster, &task, reason).await;
            (task, r)
        }))
        .buffer_unordered(self.limits.stop_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        for (task, r) in stops {
            match r {
                Ok(TaskStop::Gone) => {
                    check.pending.remove(&task);
                }
                Ok(TaskStop::Accepted { .. }) => {}
                Err(e) => check.error = Some(e),
            }
        }
    }

    async fn apply_child_policy(
        &self,
        key: &RunKey,
        run: &RunRecord,
        now: &str,
    ) -> Result<Option<ChildPolicyApplied>, FinalizeError> {
        let children = run.child_runs.clone().unwrap_or_default();
        if children.is_empty() {
            return Ok(None);
        }
        let policy = ChildPolicy::from_stored(run.child_policy.as_deref()).unwrap_or_else(|bad| {
            tracing::error!(policy = %bad.0, "unknown ChildPolicy; applying TERMINATE");
            ChildPolicy::Terminate
        });
        let by = parent_principal(key);
        let mut applied = ChildPolicyApplied { policy, children: children.len(), affected: 0, skipped: 0 };
        for child in &children {
            let child_key = match WorkflowArn::parse(&child.workflow_arn) {
                Ok(arn) if check_run_id(&child.run_id).is_none() => {
                    RunKey { workflow_arn: arn, run_id: child.run_id.clone() }
                }
                _ => {
                    tracing::error!(child = ?child, "invalid child run key; skipped");
                    applied.skipped += 1;
                    continue;
                }
            };
            let changed = match policy {
                ChildPolicy::Abandon => false,
                ChildPolicy::Terminate => {
                    let stop = StopRequest {
                        at: now.to_owned(),
                        by: by.clone(),
                        request_id: format!("child-policy:{}", key.run_id),
                        source_ip: None,
                    };
                    matches!(self.store.request_stop(&child_key, &stop).await?, StopWrite::Transitioned(_))
                }
                ChildPolicy::RequestCancel => {
                    self.store.request_cancel(&child_key, &by, now).await? == CancelWrite::Requested
                }
            };
            if changed {
                applied.affected += 1;
            } else if policy != ChildPolicy::Abandon {
                applied.skipped += 1;
            }
        }
        Ok(Some(applied))
    }
}

impl<S: ReconcilerStore, W: WorkerFleet> Finalizer<S, W> {
    /// One pass of the safety net: every run the index shows `STOPPING` for
    /// longer than `after` is finalized by the same procedure and the same
    /// conditional writes as the stream's, recorded as `FinalizedBy:
    /// reconciler`. Level-triggered: a run the stream gave up on, or never
    /// delivered, is found on the next pass.
    pub async fn reconcile(&self, after: Duration, deadline: Option<Instant>) -> Result<ReconcileReport, StoreError> {
        let now = OffsetDateTime::now_utc();
        let stopping = self.store.stopping_runs().await?;
        let mut report = ReconcileReport::default();
        let mut stranded = Vec::new();
        for run in stopping {
            let age = OffsetDateTime::parse(&run.since, &Rfc3339).map(|since| (now - since).as_seconds_f64().max(0.0));
            let key = WorkflowArn::parse(&run.workflow_arn)
                .ok()
                .filter(|_| check_run_id(&run.run_id).is_none())
                .map(|workflow_arn| RunKey { workflow_arn, run_id: run.run_id.clone() });
            match (key, age) {
                (Some(key), Ok(age)) => {
                    report.oldest_stopping_age_seconds = report.oldest_stopping_age_seconds.max(age);
                    if age >= after.as_secs_f64() {
                        stranded.push((key, ()));
                    }
                }
                _ => {
                    tracing::error!(workflow_arn = %run.workflow_arn, run_id = %run.run_id, since = %run.since, "stopping index entry with an unreadable key or StoppingSince");
                    report.failed += 1;
                }
            }
        }
        report.found = stranded.len();
        if report.found > 0 {
            tracing::warn!(found = report.found, "stranded STOPPING runs found; finalizing them");
        }
        for (_, (), result) in self.finalize_runs(stranded, deadline, FinalizedBy::Reconciler).await {
            match result {
                Ok(RunOutcome::Stopped { .. }) => report.stopped += 1,
                Ok(RunOutcome::Skipped { .. }) => {}
                Ok(RunOutcome::Pending { .. }) => report.pending += 1,
                Err(_) => report.failed += 1,
            }
        }
        metrics::emit(
            &[
                ("ReconcilerFinds", Unit::Count, report.found as f64),
                ("OldestStoppingAgeSeconds", Unit::Seconds, report.oldest_stopping_age_seconds),
            ],
            &[],
        );
        Ok(report)
    }
}
