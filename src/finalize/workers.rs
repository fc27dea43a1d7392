//! Verifying a run's workers dead: pass after pass, sweep the unregistered
//! ones by `startedBy`, describe the pending ones, stop those ECS was never
//! told to stop, until a [`Verdict`].

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use super::Finalizer;
use crate::domain::RunKey;
use crate::ports::{FinalizerStore, RunRecord, TaskStop, UpstreamError, WorkerFleet, DESCRIBE_TASKS_MAX};
use crate::stop::stop_reason;

/// What the checks concluded about a run's workers.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    /// Every worker, registered or found by the sweep, is `STOPPED` or unknown
    /// to ECS, and the last pass saw no ECS error.
    Verified { stopped: usize, orphans: usize },
    /// Not proven: workers still running, or ECS errors in the last pass.
    Unverified { pending: usize, error: Option<UpstreamError> },
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

impl<S: FinalizerStore, W: WorkerFleet> Finalizer<S, W> {
    /// Pass after pass until every worker is verified stopped or `end` comes:
    /// each pass sweeps for unregistered workers (so a task launched late is
    /// still found), describes the pending ones, and stops those ECS was never
    /// told to stop. The worker port is paced (`crate::pacing`): a pass takes
    /// as long as ECS's buckets allow, so the polling follows the bucket. The
    /// pause between passes is `poll_initial`, doubling up to `poll_max` only
    /// while passes meet ECS errors. A pass still waiting for tokens at `end`
    /// is cut short: what it confirmed counts, the rest stays pending.
    pub(super) async fn verify_workers(&self, key: &RunKey, run: &RunRecord, end: Instant) -> Verdict {
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
}
