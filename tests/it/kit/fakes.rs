//! One in-memory fake of each port: [`MemTable`], a run table with
//! DynamoDB's conditional semantics, and [`MemEcs`], ECS tasks that drain
//! when stopped. Both record every call, so tests can say what was asked of
//! them; both can be told to fail, hang or stall.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mwaa_stop::domain::{cluster_name, task_arn_cluster, RunKey, RunStatus};
use mwaa_stop::ports::{
    CancelWrite, Described, FinalizeWrite, FinalizerStore, ReconcilerStore, RunRecord, RunStore, StopRequest,
    StopWrite, StoppedWrite, StoppingRun, StoreError, TaskState, TaskStop, UpstreamError, UpstreamKind, WatchWrite,
    WorkerControl, WorkerFleet,
};

fn id(k: &RunKey) -> (String, String) {
    (k.workflow_arn.to_string(), k.run_id.clone())
}

/// A run record as a scheduler would have written it: workflow version
/// `v1`, each worker in cluster `c`.
pub fn run_record(arn: &str, run_id: &str, status: RunStatus, workers: &[&str]) -> RunRecord {
    RunRecord {
        workflow_arn: arn.into(),
        run_id: run_id.into(),
        status: status.as_str().into(),
        workflow_version: Some("v1".into()),
        workers: workers.iter().map(|w| (w.to_string(), "c".to_string())).collect(),
        ..Default::default()
    }
}

/// Finalizer bounds for the fakes on tokio's paused clock: a 30 s wait,
/// polls from 100 ms doubling to 2 s.
pub fn fake_finalizer_limits() -> mwaa_stop::finalize::FinalizerLimits {
    mwaa_stop::finalize::FinalizerLimits {
        wait: Duration::from_secs(30),
        poll_initial: Duration::from_millis(100),
        poll_max: Duration::from_secs(2),
        run_concurrency: 8,
        stop_concurrency: 4,
        stop_deadline: Duration::from_secs(600),
        sweep_settle: Duration::from_secs(10),
        missing_confirm: Duration::from_secs(5),
        post_stop_sweep: Duration::ZERO,
    }
}

/// What the table does on the stop write.
#[derive(Clone, Default)]
pub enum Mode {
    #[default]
    Real,
    Fail(UpstreamKind),
    Hang,
    Panic,
}

/// The run table in memory, with the conditional semantics of the real
/// writes: stop only an active run, finalize only a `STOPPING` one, request
/// a cancel once.
#[derive(Default)]
pub struct MemTable {
    pub runs: Mutex<HashMap<(String, String), RunRecord>>,
    /// What the stop write does (the other writes are always real).
    pub mode: Mode,
    pub reads: AtomicUsize,
    /// Every write attempted: (workflow ARN, run id, `stop` | `finalize` | `cancel`).
    pub writes: Mutex<Vec<(String, String, &'static str)>>,
    /// History events written: (run key, event name).
    pub events: Mutex<Vec<(String, String)>>,
    pub finalized: Mutex<Vec<(RunKey, StoppedWrite)>>,
    /// When each run was finalized (tokio's clock).
    pub finalize_at: Mutex<Vec<(String, tokio::time::Instant)>>,
    /// The sparse index of STOPPING runs: run → `StoppingSince`.
    pub stopping: Mutex<HashMap<(String, String), String>>,
    /// The index's watch partitions: watched `STOPPED` runs → `StoppingSince`.
    pub watched: Mutex<HashMap<(String, String), String>>,
    /// Every follow-up write of a watched run.
    pub watch_writes: Mutex<Vec<(RunKey, WatchWrite)>>,
}

impl MemTable {
    pub fn with_mode(mode: Mode) -> Self {
        MemTable { mode, ..Default::default() }
    }

    /// Store a run. A `STOPPING` one is in the stopping index since its
    /// `StopRequestedAt` (or long ago, when it has none).
    pub fn put(&self, r: RunRecord) {
        let id = (r.workflow_arn.clone(), r.run_id.clone());
        if r.status == "STOPPING" {
            let since = r.stop_requested_at.clone().unwrap_or_else(|| "2026-01-01T00:00:00.000Z".into());
            self.stopping.lock().unwrap().insert(id.clone(), since);
        }
        self.runs.lock().unwrap().insert(id, r);
    }

    pub fn status(&self, k: &RunKey) -> String {
        self.runs.lock().unwrap()[&id(k)].status.clone()
    }

    pub fn run(&self, k: &RunKey) -> RunRecord {
        self.runs.lock().unwrap()[&id(k)].clone()
    }

    pub fn events_of(&self, k: &RunKey) -> Vec<String> {
        self.events.lock().unwrap().iter().filter(|(r, _)| r == &k.to_string()).map(|(_, e)| e.clone()).collect()
    }

    /// How many writes of this kind were attempted.
    pub fn write_count(&self, kind: &str) -> usize {
        self.writes.lock().unwrap().iter().filter(|(_, _, k)| *k == kind).count()
    }

    fn wrote(&self, key: &RunKey, kind: &'static str) {
        self.writes.lock().unwrap().push((key.workflow_arn.to_string(), key.run_id.clone(), kind));
    }

    fn event(&self, k: &RunKey, e: &str) {
        self.events.lock().unwrap().push((k.to_string(), e.to_owned()));
    }
}

impl RunStore for MemTable {
    async fn request_stop(&self, key: &RunKey, stop: &StopRequest) -> Result<StopWrite, StoreError> {
        self.wrote(key, "stop");
        match &self.mode {
            Mode::Real => {}
            Mode::Fail(kind) => return Err(UpstreamError::new("dynamodb", "UpdateItem", *kind, "injected").into()),
            Mode::Hang => std::future::pending::<()>().await,
            Mode::Panic => panic!("injected panic"),
        }
        let mut runs = self.runs.lock().unwrap();
        let Some(r) = runs.get_mut(&id(key)) else { return Ok(StopWrite::NotFound) };
        if !r.run_status().is_some_and(RunStatus::is_stoppable) {
            return Ok(StopWrite::NotStoppable(r.clone()));
        }
        r.status = "STOPPING".into();
        r.stop_requested_by = Some(stop.by.clone());
        r.stop_requested_at = Some(stop.at.clone());
        let written = r.clone();
        drop(runs);
        self.stopping.lock().unwrap().insert(id(key), stop.at.clone());
        self.event(key, "StopRequested");
        Ok(StopWrite::Transitioned(written))
    }

    async fn get_run(&self, key: &RunKey) -> Result<Option<RunRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.runs.lock().unwrap().get(&id(key)).cloned())
    }
}

impl FinalizerStore for MemTable {
    async fn finalize_stop(&self, key: &RunKey, w: &StoppedWrite) -> Result<FinalizeWrite, StoreError> {
        self.wrote(key, "finalize");
        let mut runs = self.runs.lock().unwrap();
        match runs.get_mut(&id(key)) {
            Some(r) if r.status == "STOPPING" => {
                r.status = "STOPPED".into();
                r.workers.clear();
            }
            _ => return Ok(FinalizeWrite::NotStopping),
        }
        let r = runs.get_mut(&id(key)).expect("just read");
        if w.watch {
            r.unconfirmed_workers = w.unconfirmed.clone();
        }
        if let Some(message) = w.unconfirmed_message() {
            r.error_message = Some(message);
        }
        drop(runs);
        let since = self.stopping.lock().unwrap().remove(&id(key));
        if w.watch {
            self.watched.lock().unwrap().insert(id(key), since.unwrap_or_default());
        }
        if w.child_policy.is_some() {
            self.event(key, "ChildPolicyApplied");
        }
        self.event(key, "Stopped");
        self.finalized.lock().unwrap().push((key.clone(), w.clone()));
        self.finalize_at.lock().unwrap().push((key.run_id.clone(), tokio::time::Instant::now()));
        Ok(FinalizeWrite::Stopped)
    }

    async fn request_cancel(&self, key: &RunKey, _by: &str, _at: &str) -> Result<CancelWrite, StoreError> {
        self.wrote(key, "cancel");
        let mut runs = self.runs.lock().unwrap();
        let Some(r) = runs.get_mut(&id(key)) else { return Ok(CancelWrite::NotFound) };
        if !r.run_status().is_some_and(RunStatus::is_stoppable) || r.cancel_requested == Some(true) {
            return Ok(CancelWrite::NotActive);
        }
        r.cancel_requested = Some(true);
        drop(runs);
        self.event(key, "CancelRequested");
        Ok(CancelWrite::Requested)
    }

    async fn update_watch(&self, key: &RunKey, w: &WatchWrite) -> Result<bool, StoreError> {
        self.wrote(key, "watch");
        let mut runs = self.runs.lock().unwrap();
        let Some(r) = runs.get_mut(&id(key)).filter(|r| r.status == "STOPPED") else { return Ok(false) };
        if w.end_watch {
            if r.unconfirmed_workers.len() != w.read_len {
                return Ok(false);
            }
            r.unconfirmed_workers.clear();
        } else {
            for t in &w.confirmed {
                if !w.found.contains_key(t) {
                    r.unconfirmed_workers.remove(t);
                }
            }
            for (t, c) in &w.found {
                if !w.confirmed.contains(t) {
                    r.unconfirmed_workers.insert(t.clone(), c.clone());
                }
            }
        }
        drop(runs);
        if w.end_watch {
            self.watched.lock().unwrap().remove(&id(key));
        }
        if !w.found.is_empty() {
            self.event(key, "LateWorkersFound");
        }
        if !w.confirmed.is_empty() {
            self.event(key, "WorkersConfirmed");
        }
        self.watch_writes.lock().unwrap().push((key.clone(), w.clone()));
        Ok(true)
    }
}

/// The entries of one partition set of the fake stopping index.
fn index_entries(index: &Mutex<HashMap<(String, String), String>>) -> Vec<StoppingRun> {
    let entries = index.lock().unwrap();
    entries
        .iter()
        .map(|((arn, run), since)| StoppingRun { workflow_arn: arn.clone(), run_id: run.clone(), since: since.clone() })
        .collect()
}

impl ReconcilerStore for MemTable {
    async fn stopping_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        Ok(index_entries(&self.stopping))
    }

    async fn watched_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        Ok(index_entries(&self.watched))
    }
}

/// ECS in memory. A task ECS does not know is gone (`MISSING`, and
/// `StopTask` finds nothing to stop). A stopped task reports `STOPPING` for
/// `stop_lag` describes before `STOPPED`, as real tasks take a while to drain.
#[derive(Default)]
pub struct MemEcs {
    /// ECS's account-wide token buckets, enforced as ECS does; none: no limit.
    pub account: Option<AccountBuckets>,
    /// When each task was first told to stop (accepted `StopTask`).
    pub told_at: Mutex<BTreeMap<String, tokio::time::Instant>>,
    /// task → (last status, desired status, describes since stop)
    pub tasks: Mutex<BTreeMap<String, (String, String, usize)>>,
    pub started_by: Mutex<HashMap<String, String>>,
    pub stop_lag: usize,
    /// Every `StopTask`: (cluster, task, reason).
    pub calls: Mutex<Vec<(String, String, String)>>,
    pub stop_calls: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Each `StopTask` takes this long.
    pub latency: Duration,
    /// Tasks whose ARN ends with one of these: `StopTask` fails (a 5xx) /
    /// finds them gone / never answers.
    pub fail: Vec<&'static str>,
    pub gone: Vec<&'static str>,
    pub hang: Vec<&'static str>,
    /// Tasks that never stop (a stuck agent).
    pub stuck: Vec<&'static str>,
    pub describe_calls: AtomicUsize,
    /// `DescribeTasks` is throttled this many times first (without buckets).
    pub describe_failures: AtomicUsize,
    /// Every `DescribeTasks`: (cluster, how many tasks).
    pub describes: Mutex<Vec<(String, usize)>>,
    /// Calls that named a task under another cluster than the one it runs in
    /// (tasks named `<cluster>/<id>` carry their cluster; others are not checked).
    pub wrong_cluster: Mutex<Vec<String>>,
    /// `ListTasks` lags `RunTask`: a task launched by [`MemEcs::launched_by`]
    /// is listed only this long after its launch (tokio's clock).
    pub list_lag: Duration,
    /// When each task was launched by [`MemEcs::launched_by`].
    pub launched_at: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Reads are eventually consistent: `DescribeTasks` answers `MISSING` and
    /// `StopTask` "not found" for a task whose ARN ends with one of these
    /// until this long after its launch (tokio's clock).
    pub unknown_for: Duration,
    pub young: Vec<&'static str>,
    /// `ListTasks` fails (a 5xx) this many times first.
    pub list_failures: AtomicUsize,
}

impl MemEcs {
    pub fn running(&self, tasks: &[&str]) {
        for t in tasks {
            self.tasks.lock().unwrap().insert(t.to_string(), ("RUNNING".into(), "RUNNING".into(), 0));
        }
    }

    pub fn launched_by(&self, task: &str, by: &str) {
        self.running(&[task]);
        self.started_by.lock().unwrap().insert(task.into(), by.into());
        self.launched_at.lock().unwrap().insert(task.into(), tokio::time::Instant::now());
    }

    /// A task launched now and never told to stop by anyone (`RUNNING`).
    pub fn launched_now(&self, task: &str) {
        self.running(&[task]);
        self.launched_at.lock().unwrap().insert(task.into(), tokio::time::Instant::now());
    }

    /// ECS's reads do not know `task` yet (see [`MemEcs::unknown_for`]).
    fn not_yet_known(&self, task: &str) -> bool {
        ends_with_any(task, &self.young)
            && self.launched_at.lock().unwrap().get(task).is_none_or(|at| at.elapsed() < self.unknown_for)
    }

    pub fn stopping(&self, task: &str) {
        self.tasks.lock().unwrap().insert(task.into(), ("STOPPING".into(), "STOPPED".into(), 0));
    }

    pub fn last_status(&self, task: &str) -> String {
        self.tasks.lock().unwrap()[task].0.clone()
    }

    /// The cluster a task runs in, as ECS knows it: the one its ARN names
    /// (`arn:aws:ecs:...:task/CLUSTER/ID`), or `CLUSTER` of a test name
    /// `CLUSTER/ID`; others are not checked.
    fn home(task: &str) -> Option<&str> {
        if task.starts_with("arn:") {
            return task_arn_cluster(task);
        }
        task.split_once('/').map(|(home, _)| home)
    }

    /// Whether `task` is addressed in its own cluster. ECS answers a task
    /// asked about in another cluster as unknown (`MISSING`, "not found"),
    /// and so does this fake; each such call is recorded.
    fn check_cluster(&self, call: &str, cluster: &str, task: &str) -> bool {
        match Self::home(task) {
            Some(home) if home != cluster_name(cluster) => {
                self.wrong_cluster.lock().unwrap().push(format!("{call} {task} in {cluster}"));
                false
            }
            _ => true,
        }
    }
}

fn throttling(operation: &'static str) -> UpstreamError {
    UpstreamError::new("ecs", operation, UpstreamKind::Throttled, "ThrottlingException: Rate exceeded")
}

/// One of ECS's token buckets: tokens, when last refilled, capacity, refill
/// per second.
pub struct Bucket {
    state: Mutex<(f64, tokio::time::Instant)>,
    capacity: f64,
    rate: f64,
}

impl Bucket {
    fn full(capacity: f64, rate: f64) -> Self {
        Bucket { state: Mutex::new((capacity, tokio::time::Instant::now())), capacity, rate }
    }
}

/// ECS's per-account throttling on tokio's clock, with the published
/// buckets: `StopTask` (shared with `RunTask`) 100 tokens refilling 40/s,
/// `DescribeTasks` and `ListTasks` 100 refilling 20/s. A call finding no
/// token is answered `ThrottlingException` and costs nothing.
pub struct AccountBuckets {
    pub stop: Bucket,
    pub read: Bucket,
    /// Every throttled call, by operation.
    pub throttled: Mutex<Vec<&'static str>>,
}

impl AccountBuckets {
    pub fn published() -> Self {
        AccountBuckets {
            stop: Bucket::full(100.0, 40.0),
            read: Bucket::full(100.0, 20.0),
            throttled: Mutex::new(Vec::new()),
        }
    }

    /// A scheduler's `RunTask`: a token of the `StopTask` bucket, or throttled.
    pub fn run_task(&self) -> bool {
        self.admit(&self.stop)
    }

    pub fn throttled_count(&self) -> usize {
        self.throttled.lock().unwrap().len()
    }

    fn admit(&self, bucket: &Bucket) -> bool {
        let mut s = bucket.state.lock().unwrap();
        let now = tokio::time::Instant::now();
        s.0 = (s.0 + (now - s.1).as_secs_f64() * bucket.rate).min(bucket.capacity);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            let which = if std::ptr::eq(bucket, &self.stop) { "StopTask bucket" } else { "read bucket" };
            self.throttled.lock().unwrap().push(which);
            false
        }
    }
}

fn ends_with_any(task: &str, suffixes: &[&str]) -> bool {
    suffixes.iter().any(|s| task.ends_with(s))
}

impl WorkerControl for MemEcs {
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<TaskStop, UpstreamError> {
        self.stop_calls.fetch_add(1, Ordering::SeqCst);
        self.calls.lock().unwrap().push((cluster.into(), task.into(), reason.into()));
        let home = self.check_cluster("StopTask", cluster, task);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let admitted = self.account.as_ref().is_none_or(|a| a.admit(&a.stop));
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if ends_with_any(task, &self.hang) {
            std::future::pending::<()>().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !admitted {
            return Err(throttling("StopTask"));
        }
        if ends_with_any(task, &self.fail) {
            return Err(UpstreamError::new("ecs", "StopTask", UpstreamKind::Fault, "injected"));
        }
        if ends_with_any(task, &self.gone) || self.not_yet_known(task) || !home {
            return Ok(TaskStop::Gone);
        }
        let mut tasks = self.tasks.lock().unwrap();
        match tasks.get_mut(task) {
            None => Ok(TaskStop::Gone),
            Some(t) => {
                if t.0 != "STOPPED" {
                    t.0 = "STOPPING".into();
                }
                t.1 = "STOPPED".into();
                self.told_at.lock().unwrap().entry(task.to_owned()).or_insert_with(tokio::time::Instant::now);
                Ok(TaskStop::Accepted { last_status: Some(t.0.clone()) })
            }
        }
    }
}

impl WorkerFleet for MemEcs {
    async fn describe_tasks(&self, cluster: &str, tasks: &[String]) -> Result<Described, UpstreamError> {
        self.describe_calls.fetch_add(1, Ordering::SeqCst);
        self.describes.lock().unwrap().push((cluster.to_owned(), tasks.len()));
        let elsewhere: Vec<bool> = tasks.iter().map(|t| !self.check_cluster("DescribeTasks", cluster, t)).collect();
        if self.account.as_ref().is_some_and(|a| !a.admit(&a.read)) {
            return Err(throttling("DescribeTasks"));
        }
        if self.describe_failures.load(Ordering::SeqCst) > 0 {
            self.describe_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(UpstreamError::new("ecs", "DescribeTasks", UpstreamKind::Throttled, "injected"));
        }
        assert!(tasks.len() <= 100, "DescribeTasks takes at most 100 tasks");
        let young: Vec<bool> =
            tasks.iter().zip(&elsewhere).map(|(t, elsewhere)| *elsewhere || self.not_yet_known(t)).collect();
        let mut all = self.tasks.lock().unwrap();
        let mut out = Described::default();
        for (t, young) in tasks.iter().zip(young) {
            match all.get_mut(t).filter(|_| !young) {
                None => out.missing.push(t.clone()),
                Some(state) => {
                    if state.1 == "STOPPED" && state.0 != "STOPPED" && !ends_with_any(t, &self.stuck) {
                        state.2 += 1;
                        if state.2 > self.stop_lag {
                            state.0 = "STOPPED".into();
                        }
                    }
                    out.found.push(TaskState {
                        arn: t.clone(),
                        last_status: Some(state.0.clone()),
                        desired_status: Some(state.1.clone()),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Both listings of the port: desired `RUNNING` and desired `STOPPED`
    /// (every task ECS still knows), each task only once [`MemEcs::list_lag`]
    /// has passed since its launch.
    async fn list_running(&self, _cluster: &str, started_by: &str) -> Result<Vec<String>, UpstreamError> {
        if self.account.as_ref().is_some_and(|a| !a.admit(&a.read)) {
            return Err(throttling("ListTasks"));
        }
        if self.list_failures.load(Ordering::SeqCst) > 0 {
            self.list_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(UpstreamError::new("ecs", "ListTasks", UpstreamKind::Fault, "injected"));
        }
        let by = self.started_by.lock().unwrap();
        let launched = self.launched_at.lock().unwrap();
        let listed = |t: &String| launched.get(t).is_none_or(|at| at.elapsed() >= self.list_lag);
        Ok(by.iter().filter(|(t, b)| *b == started_by && listed(t)).map(|(t, _)| t.clone()).collect())
    }
}

// ---------------------------------------------------------------------------
// A shared fake is a fake: several procedures (API processes, finalizers) of
// one test over the same table and the same ECS. The product's ports have no
// such impl: only the tests share one adapter among procedures this way.
// ---------------------------------------------------------------------------

impl RunStore for &MemTable {
    async fn request_stop(&self, key: &RunKey, stop: &StopRequest) -> Result<StopWrite, StoreError> {
        (**self).request_stop(key, stop).await
    }
    async fn get_run(&self, key: &RunKey) -> Result<Option<RunRecord>, StoreError> {
        (**self).get_run(key).await
    }
}

impl FinalizerStore for &MemTable {
    async fn finalize_stop(&self, key: &RunKey, w: &StoppedWrite) -> Result<FinalizeWrite, StoreError> {
        (**self).finalize_stop(key, w).await
    }
    async fn request_cancel(&self, key: &RunKey, by: &str, at: &str) -> Result<CancelWrite, StoreError> {
        (**self).request_cancel(key, by, at).await
    }
    async fn update_watch(&self, key: &RunKey, w: &WatchWrite) -> Result<bool, StoreError> {
        (**self).update_watch(key, w).await
    }
}

impl ReconcilerStore for &MemTable {
    async fn stopping_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        (**self).stopping_runs().await
    }
    async fn watched_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        (**self).watched_runs().await
    }
}

impl WorkerControl for &MemEcs {
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<TaskStop, UpstreamError> {
        (**self).stop_task(cluster, task, reason).await
    }
}

impl WorkerFleet for &MemEcs {
    async fn describe_tasks(&self, cluster: &str, tasks: &[String]) -> Result<Described, UpstreamError> {
        (**self).describe_tasks(cluster, tasks).await
    }
    async fn list_running(&self, cluster: &str, started_by: &str) -> Result<Vec<String>, UpstreamError> {
        (**self).list_running(cluster, started_by).await
    }
}
