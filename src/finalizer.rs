//! The stop finalizer: makes `STOPPED` mean "every worker is verified dead",
//! and applies the run's child policy.
//!
//! It is triggered by the run table's stream. A record is only a hint that a
//! run is `STOPPING`; the run is then read (strongly consistent) and that read
//! is the truth, so redeliveries, duplicates and stale images are harmless. The
//! one write that ends the run is conditioned on `STOPPING`, so of any number of
//! concurrent invocations exactly one moves it to `STOPPED`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use tokio::time::Instant;

use crate::model::{ChildPolicy, RunKey, RunStatus, WorkflowArn};
use crate::store::{
    CancelWrite, ChildPolicyApplied, FinalizeWrite, FinalizerStore, RunRecord, StopRequest, StopWrite, StoppedWrite,
    StoreError,
};
use crate::upstream::UpstreamError;
use crate::workers::{TaskStop, WorkerFleet, DESCRIBE_TASKS_MAX};

/// Bounds of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalizerLimits {
    /// How long one run may wait for its workers before it is handed back to
    /// the stream as a batch item failure (also bounded by the Lambda deadline).
    pub wait: Duration,
    /// First pause between checks; doubles up to `poll_max`.
    pub poll_initial: Duration,
    pub poll_max: Duration,
    /// Runs of one batch finalized at once.
    pub run_concurrency: usize,
    /// `StopTask` calls in flight at once, per run.
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
    /// Workers still running when the bound was reached: retry later.
    Pending { still_running: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// The keys and status of a stream record, all the finalizer reads from it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamKeys {
    workflow_arn: String,
    run_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamStatus {
    #[serde(default)]
    status: Option<String>,
}

/// What a stream record asks of the finalizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordIntent {
    /// Not a `STOPPING` run: ignored.
    Ignore,
    Finalize(RunKey),
    /// Cannot be read; reported as a failure so it ends in the failure
    /// destination rather than vanishing.
    Poison(String),
}

/// Decide from a record alone, cheaply. The deployed event source mapping
/// filters on `NewImage.Status = STOPPING` too, but nothing here relies on it.
pub fn classify(record: &EventRecord) -> RecordIntent {
    if record.event_name == "REMOVE" {
        return RecordIntent::Ignore;
    }
    let status: Result<StreamStatus, _> = serde_dynamo::from_item(record.change.new_image.clone());
    match status {
        Ok(StreamStatus { status: Some(s) }) if s == RunStatus::Stopping.as_str() => {}
        Ok(_) => return RecordIntent::Ignore,
        Err(e) => return RecordIntent::Poison(format!("new image unreadable: {e}")),
    }
    let keys: StreamKeys = match serde_dynamo::from_item(record.change.keys.clone()) {
        Ok(k) => k,
        Err(e) => return RecordIntent::Poison(format!("keys unreadable: {e}")),
    };
    match WorkflowArn::parse(&keys.workflow_arn) {
        Ok(workflow_arn) if crate::model::check_run_id(&keys.run_id).is_none() => {
            RecordIntent::Finalize(RunKey { workflow_arn, run_id: keys.run_id })
        }
        _ => RecordIntent::Poison(format!("invalid run key {}/{}", keys.workflow_arn, keys.run_id)),
    }
}

pub struct Finalizer<S, W> {
    store: S,
    fleet: W,
    limits: FinalizerLimits,
}

/// The principal recorded on children stopped or cancelled by a parent.
pub fn parent_principal(parent: &RunKey) -> String {
    format!("parent-run:{}/{}", parent.workflow_arn, parent.run_id)
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

    /// One stream batch. Runs are finalized concurrently, each once however
    /// many of its records the batch holds; a run that cannot be finished now
    /// is reported by its first record's sequence number, so the stream
    /// retries from there.
    pub async fn handle_batch(&self, event: Event, deadline: Option<Instant>) -> DynamoDbEventResponse {
        let mut runs: Vec<(RunKey, String)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut failures: Vec<String> = Vec::new();
        for record in &event.records {
            let seq = record.change.sequence_number.clone().unwrap_or_default();
            match classify(record) {
                RecordIntent::Ignore => {}
                RecordIntent::Poison(why) => {
                    tracing::error!(
                        sequence_number = %seq,
                        keys = ?record.change.keys,
                        why,
                        "poison stream record: reported as a failure (ends in the failure destination)"
                    );
                    failures.push(seq);
                }
                RecordIntent::Finalize(key) => {
                    if seen.insert(key.to_string()) {
                        runs.push((key, seq));
                    }
                }
            }
        }
        let results: Vec<(RunKey, String, Result<RunOutcome, FinalizeError>)> =
            stream::iter(runs.into_iter().map(|(key, seq)| async move {
                let result = self.finalize_run(&key, deadline).await;
                (key, seq, result)
            }))
            .buffer_unordered(self.limits.run_concurrency.max(1))
            .collect()
            .await;
        for (key, seq, result) in results {
            match result {
                Ok(RunOutcome::Stopped { workers_stopped, orphans_stopped, .. }) => {
                    tracing::info!(run = %key, workers_stopped, orphans_stopped, "run STOPPED")
                }
                Ok(RunOutcome::Skipped { status }) => {
                    tracing::info!(run = %key, status = ?status, "nothing to finalize")
                }
                Ok(RunOutcome::Pending { still_running }) => {
                    tracing::warn!(run = %key, still_running, "workers not confirmed stopped in time; retried by the stream");
                    failures.push(seq);
                }
                Err(e) => {
                    tracing::error!(run = %key, error = %e, "finalizing failed; retried by the stream");
                    failures.push(seq);
                }
            }
        }
        let mut response = DynamoDbEventResponse::default();
        for seq in failures {
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = Some(seq);
            response.batch_item_failures.push(f);
        }
        response
    }

    /// Finalize one run: verify (and force) every worker stopped, apply the
    /// child policy, then write `STOPPED` once.
    pub async fn finalize_run(&self, key: &RunKey, deadline: Option<Instant>) -> Result<RunOutcome, FinalizeError> {
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
        let sweep = self.wait_for_workers(key, &run, end).await?;
        if sweep.still_running > 0 {
            return Ok(RunOutcome::Pending { still_running: sweep.still_running });
        }
        let now = crate::api::now_iso();
        let child_policy = self.apply_child_policy(key, &run, &now).await?;
        let write = StoppedWrite {
            at: now,
            workers_stopped: sweep.stopped,
            orphans_stopped: sweep.orphans,
            child_policy: child_policy.clone(),
        };
        match self.store.finalize_stop(key, &write).await? {
            FinalizeWrite::Stopped => {
                Ok(RunOutcome::Stopped { workers_stopped: sweep.stopped, orphans_stopped: sweep.orphans, child_policy })
            }
            FinalizeWrite::NotStopping => Ok(RunOutcome::Skipped { status: None }),
        }
    }

    /// Poll until no worker of the run is running, stopping any that is not
    /// yet told to stop. Each pass also sweeps for unregistered workers, so a
    /// task launched late is still found.
    async fn wait_for_workers(&self, key: &RunKey, run: &RunRecord, end: Instant) -> Result<Sweep, FinalizeError> {
        let reason = crate::service::stop_reason(key, "stop-finalizer");
        // task ARN → cluster; everything ever seen, and what is still not stopped.
        let mut known: BTreeMap<String, String> = run.workers.clone();
        let mut orphans: BTreeSet<String> = BTreeSet::new();
        let mut pending: BTreeMap<String, String> = run.workers.clone();
        let mut pause = self.limits.poll_initial;
        loop {
            let mut last_error: Option<UpstreamError> = None;
            if let (Some(started_by), Some(clusters)) = (&run.worker_started_by, &run.worker_clusters) {
                for cluster in clusters {
                    match self.fleet.list_running(cluster, started_by).await {
                        Ok(arns) => {
                            for arn in arns {
                                if !known.contains_key(&arn) {
                                    tracing::warn!(run = %key, task = %arn, "unregistered worker found by startedBy sweep");
                                    orphans.insert(arn.clone());
                                    known.insert(arn.clone(), cluster.clone());
                                }
                                pending.entry(arn).or_insert_with(|| cluster.clone());
                            }
                        }
                        Err(e) => last_error = Some(e),
                    }
                }
            }
            let mut to_stop: Vec<(String, String)> = Vec::new();
            for (cluster, tasks) in group_by_cluster(&pending) {
                for chunk in tasks.chunks(DESCRIBE_TASKS_MAX) {
                    match self.fleet.describe_tasks(&cluster, chunk).await {
                        Ok(described) => {
                            for gone in described.missing {
                                pending.remove(&gone);
                            }
                            for t in described.found {
                                if t.is_stopped() {
                                    pending.remove(&t.arn);
                                } else if !t.stop_requested() {
                                    to_stop.push((t.arn, cluster.clone()));
                                }
                            }
                        }
                        Err(e) => last_error = Some(e),
                    }
                }
            }
            let stops = stream::iter(to_stop.into_iter().map(|(task, cluster)| {
                let reason = reason.as_str();
                async move {
                    let r = self.fleet.stop_task(&cluster, &task, reason).await;
                    (task, r)
                }
            }))
            .buffer_unordered(self.limits.stop_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
            for (task, r) in stops {
                match r {
                    Ok(TaskStop::Gone) => {
                        pending.remove(&task);
                    }
                    Ok(TaskStop::Accepted { .. }) => {}
                    Err(e) => last_error = Some(e),
                }
            }
            if pending.is_empty() && last_error.is_none() {
                return Ok(Sweep { stopped: known.len(), orphans: orphans.len(), still_running: 0 });
            }
            if Instant::now() + pause > end {
                if let Some(e) = last_error {
                    tracing::warn!(run = %key, error = %e, "ECS errors while verifying workers");
                }
                // An ECS error with nothing pending still leaves the run unverified.
                return Ok(Sweep { stopped: known.len(), orphans: orphans.len(), still_running: pending.len().max(1) });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.limits.poll_max);
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
            tracing::error!(run = %key, policy = %bad.0, "unknown ChildPolicy; applying TERMINATE");
            ChildPolicy::Terminate
        });
        let by = parent_principal(key);
        let mut applied = ChildPolicyApplied { policy, children: children.len(), affected: 0, skipped: 0 };
        for child in &children {
            let child_key = match WorkflowArn::parse(&child.workflow_arn) {
                Ok(arn) if crate::model::check_run_id(&child.run_id).is_none() => {
                    RunKey { workflow_arn: arn, run_id: child.run_id.clone() }
                }
                _ => {
                    tracing::error!(run = %key, child = ?child, "invalid child run key; skipped");
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

struct Sweep {
    stopped: usize,
    orphans: usize,
    still_running: usize,
}

fn group_by_cluster(tasks: &BTreeMap<String, String>) -> BTreeMap<String, Vec<String>> {
    let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (task, cluster) in tasks {
        by_cluster.entry(cluster.clone()).or_default().push(task.clone());
    }
    by_cluster
}
