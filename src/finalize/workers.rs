//! Verifying a run's workers dead: pass after pass, sweep the unregistered
//! ones by `startedBy`, describe the pending ones, stop those ECS was never
//! told to stop, until a [`Verdict`].
//!
//! What counts as dead (`docs/run-table.md`, "What counts as dead"):
//! - `lastStatus = STOPPED` in `DescribeTasks`. `DEACTIVATING` and
//!   `DEPROVISIONING` do not count: the stop deadline bounds the wait for them.
//! - "Not found" (`MISSING`, a `StopTask` answered "not found", a cluster ECS
//!   does not know) only when seen on two passes at least `missing_confirm`
//!   apart: ECS's reads are eventually consistent, and a task launched a
//!   moment ago can be unknown to them.
//! - Every task is addressed in the cluster its ARN names, whatever the run
//!   recorded (a mismatch is logged as an error).
//! - For a run with `WorkerStartedBy` and `WorkerClusters`, the verdict needs
//!   a clean sweep (every cluster listed without error) started at least
//!   `sweep_settle` after the stop was accepted, so a task whose `RunTask` was
//!   in flight when the stop landed has had time to show in `ListTasks`.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use super::Finalizer;
use crate::domain::{worker_cluster, RunKey};
use crate::ports::{FinalizerStore, RunRecord, TaskStop, UpstreamError, WorkerFleet, DESCRIBE_TASKS_MAX};
use crate::stop::stop_reason;

/// What the checks concluded about a run's workers.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    /// Every worker, registered or found by the sweep, is dead (see the
    /// module's rules), and the last pass saw no ECS error.
    Verified { stopped: usize, orphans: usize },
    /// The stop deadline passed first: `unconfirmed` (task → cluster) are
    /// not confirmed dead; the run is written `STOPPED` naming them.
    /// `swept`: a settled clean sweep was made (else the watch must sweep).
    Expired { stopped: usize, orphans: usize, unconfirmed: BTreeMap<String, String>, swept: bool },
    /// Not proven: workers still running, or ECS errors in the last pass.
    Unverified { pending: usize, error: Option<UpstreamError> },
}

/// When the verdict may be given, on tokio's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VerdictClock {
    /// A sweep counts only if it started at or after this (`None`: the run
    /// cannot be swept, no `WorkerStartedBy`/`WorkerClusters`).
    pub settle_at: Option<Instant>,
    /// Past this, the run is written `STOPPED` with what is left named.
    pub deadline_at: Instant,
}

/// What one run's checks know so far (task ARN → cluster).
pub(super) struct WorkerCheck {
    /// Registered workers (or, when following up a `STOPPED` run, its
    /// `UnconfirmedWorkers`), addressed in their ARN's cluster.
    pub(super) registered: BTreeMap<String, String>,
    /// Tasks found by the sweep, not registered, and seen alive (not
    /// `STOPPED`) at least once.
    pub(super) orphans: BTreeMap<String, String>,
    /// Not yet confirmed dead.
    pub(super) pending: BTreeMap<String, String>,
    /// Confirmed dead (so a sweep listing them again adds nothing).
    pub(super) confirmed: BTreeSet<String>,
    /// Tasks seen "not found", and when first.
    missing_since: BTreeMap<String, Instant>,
    /// The last ECS error of the current pass.
    pub(super) error: Option<UpstreamError>,
    /// A clean sweep counted (see [`VerdictClock::settle_at`]).
    pub(super) swept: bool,
    /// Tasks the current pass told to stop for the first time.
    told: usize,
    /// Every task ever sent a `StopTask` by this check.
    asked: BTreeSet<String>,
}

/// `workers` addressed in the cluster each ARN names: a recorded cluster
/// naming another is an error in the record, logged, and the ARN wins.
pub(super) fn addressed(workers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    workers
        .iter()
        .map(|(task, recorded)| match worker_cluster(task, recorded) {
            Ok(cluster) => (task.clone(), cluster.to_owned()),
            Err(own) => {
                tracing::error!(task = %task, recorded = %recorded, arn_cluster = %own, "worker recorded under another cluster than its ARN names; using the ARN's");
                (task.clone(), own.to_owned())
            }
        })
        .collect()
}

impl WorkerCheck {
    pub(super) fn new(workers: &BTreeMap<String, String>, can_sweep: bool) -> Self {
        let registered = addressed(workers);
        WorkerCheck {
            pending: registered.clone(),
            registered,
            orphans: BTreeMap::new(),
            confirmed: BTreeSet::new(),
            missing_since: BTreeMap::new(),
            error: None,
            swept: !can_sweep,
            told: 0,
            asked: BTreeSet::new(),
        }
    }

    fn stopped(&self) -> usize {
        self.registered.len() + self.orphans.len()
    }

    pub(super) fn done(&self) -> bool {
        self.pending.is_empty() && self.error.is_none() && self.swept
    }

    fn verdict(&self) -> Option<Verdict> {
        self.done().then_some(Verdict::Verified { stopped: self.stopped(), orphans: self.orphans.len() })
    }

    fn unverified(self) -> Verdict {
        Verdict::Unverified { pending: self.pending.len(), error: self.error }
    }

    fn expired(self) -> Verdict {
        let unconfirmed = self.pending.clone();
        let stopped =
            self.registered.keys().chain(self.orphans.keys()).filter(|t| !unconfirmed.contains_key(*t)).count();
        Verdict::Expired { stopped, orphans: self.orphans.len(), unconfirmed, swept: self.swept }
    }

    fn confirm(&mut self, task: &str) {
        if self.pending.remove(task).is_some() {
            self.confirmed.insert(task.to_owned());
        }
        self.missing_since.remove(task);
    }

    /// ECS said it does not know `task`: dead only on a second sighting at
    /// least `after` past the first.
    fn not_found(&mut self, task: &str, after: std::time::Duration) {
        let now = Instant::now();
        match self.missing_since.get(task) {
            Some(first) if now.duration_since(*first) >= after => self.confirm(task),
            Some(_) => {}
            None => {
                tracing::info!(task = %task, "task not found by ECS; confirmed only if still not found later");
                self.missing_since.insert(task.to_owned(), now);
            }
        }
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
    /// Pass after pass until every worker is verified dead, the stop
    /// deadline passes (then [`Verdict::Expired`]) or `end` comes: each pass
    /// sweeps for unregistered workers (so a task launched late is still
    /// found), describes the pending ones, and stops those ECS was never
    /// told to stop. The worker port is paced (`crate::pacing`): a pass takes
    /// as long as ECS's buckets allow, so the polling follows the bucket. The
    /// pause between passes is `poll_initial`, doubling up to `poll_max` only
    /// while passes meet ECS errors. A pass still waiting for tokens at `end`
    /// is cut short: what it confirmed counts, the rest stays pending.
    pub(super) async fn verify_workers(
        &self,
        key: &RunKey,
        run: &RunRecord,
        end: Instant,
        clock: VerdictClock,
    ) -> Verdict {
        let reason = stop_reason(key, "stop-finalizer");
        let mut check = WorkerCheck::new(&run.workers, clock.settle_at.is_some());
        // Past the deadline, a run still gets the time to see a missing task
        // twice before what is left is named.
        // It expires only after a pass that told no worker to stop for the
        // first time: every pending worker was told (or its `StopTask` keeps
        // failing) and described since, so a large run found late by the
        // reconciler is not cut off while it is paced.
        let expire_at = clock.deadline_at.max(Instant::now() + self.limits.missing_confirm);
        let mut pause = self.limits.poll_initial;
        loop {
            let cut_short = tokio::time::timeout_at(end, self.pass(run, &reason, clock.settle_at, &mut check)).await;
            if cut_short.is_err() {
                return if Instant::now() >= expire_at && check.told == 0 {
                    check.expired()
                } else {
                    check.unverified()
                };
            }
            if let Some(verdict) = check.verdict() {
                return verdict;
            }
            if Instant::now() >= expire_at && check.told == 0 {
                return check.expired();
            }
            pause =
                if check.error.is_some() { (pause * 2).min(self.limits.poll_max) } else { self.limits.poll_initial };
            if Instant::now() + pause > end {
                return check.unverified();
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// One pass: sweep, describe the pending, stop those never told to.
    pub(super) async fn pass(
        &self,
        run: &RunRecord,
        reason: &str,
        settle_at: Option<Instant>,
        check: &mut WorkerCheck,
    ) {
        check.error = None;
        check.told = 0;
        let started = Instant::now();
        if let Some(settle_at) = settle_at {
            if self.sweep_unregistered(run, check).await && started >= settle_at {
                check.swept = true;
            }
        }
        let unasked = self.describe_pending(check).await;
        self.stop_unasked(unasked, reason, check).await;
    }

    /// Tasks with the run's `startedBy` that ECS still lists (desired
    /// `RUNNING` or `STOPPED`), in its clusters: every one not registered and
    /// not yet confirmed dead is pending (an orphan once seen alive). `true`
    /// when every cluster was listed without error.
    async fn sweep_unregistered(&self, run: &RunRecord, check: &mut WorkerCheck) -> bool {
        let (Some(started_by), Some(clusters)) = (&run.worker_started_by, &run.worker_clusters) else { return true };
        let mut clean = true;
        for cluster in clusters {
            match self.fleet.list_running(cluster, started_by).await {
                Ok(arns) => {
                    let listed: BTreeMap<String, String> = arns.into_iter().map(|arn| (arn, cluster.clone())).collect();
                    for (arn, cluster) in addressed(&listed) {
                        if check.registered.contains_key(&arn) || check.confirmed.contains(&arn) {
                            continue;
                        }
                        check.pending.entry(arn).or_insert(cluster);
                    }
                }
                Err(e) => {
                    clean = false;
                    check.error = Some(e);
                }
            }
        }
        clean
    }

    /// `DescribeTasks` of every pending task, per cluster and at most 100 a
    /// call, up to `stop_concurrency` calls at once: stopped tasks leave
    /// `pending` (and unknown ones, on a second sighting); the running ones
    /// ECS was never told to stop are returned.
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
        let confirm_after = self.limits.missing_confirm;
        while let Some((cluster, described)) = answers.next().await {
            match described {
                Ok(described) => {
                    for gone in described.missing {
                        check.not_found(&gone, confirm_after);
                    }
                    for t in described.found {
                        if t.is_stopped() {
                            check.confirm(&t.arn);
                            continue;
                        }
                        check.missing_since.remove(&t.arn);
                        if !check.registered.contains_key(&t.arn) && !check.orphans.contains_key(&t.arn) {
                            tracing::warn!(task = %t.arn, "unregistered worker found by startedBy sweep");
                            check.orphans.insert(t.arn.clone(), cluster.clone());
                        }
                        if !t.stop_requested() {
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
        for (task, _) in &tasks {
            if check.asked.insert(task.clone()) {
                check.told += 1;
            }
        }
        let stops = stream::iter(tasks.into_iter().map(|(task, cluster)| async move {
            let r = self.fleet.stop_task(&cluster, &task, reason).await;
            (task, r)
        }))
        .buffer_unordered(self.limits.stop_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        for (task, r) in stops {
            match r {
                Ok(TaskStop::Gone) => check.not_found(&task, self.limits.missing_confirm),
                Ok(TaskStop::Accepted { .. }) => {}
                Err(e) => check.error = Some(e),
            }
        }
    }
}
