//! The ports: what the stop and finalize procedures need from the run table
//! and from ECS, as traits and the plain data they exchange. The adapters in
//! [`crate::aws`] implement them with the AWS SDK; the tests implement them in
//! memory. Nothing here names an SDK type.

use std::collections::BTreeMap;
use std::future::Future;

use crate::domain::{ChildPolicy, RunKey, RunStatus};

// ---------------------------------------------------------------------------
// Failures of the services behind the ports
// ---------------------------------------------------------------------------

/// What kind of upstream failure happened, after the SDK's own retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// The service said slow down, and the SDK's retries did not get through.
    Throttled,
    /// The SDK's operation or attempt timeout fired.
    Timeout,
    /// Anything else: a 5xx, a connection failure, a response we cannot read.
    Fault,
    /// The service refused the request as invalid (a `ValidationException`):
    /// the same request can never succeed, so nobody is told to retry it.
    Rejected,
}

/// A DynamoDB or ECS call that failed. The full SDK text stays in `detail`,
/// which is logged and never sent to a caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {operation} failed ({kind:?}): {detail}")]
pub struct UpstreamError {
    pub service: &'static str,
    pub operation: &'static str,
    pub kind: UpstreamKind,
    pub detail: String,
}

impl UpstreamError {
    pub fn new(service: &'static str, operation: &'static str, kind: UpstreamKind, detail: impl Into<String>) -> Self {
        UpstreamError { service, operation, kind, detail: detail.into() }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An item that does not follow the table contract (including one too
    /// large for the transition even with its history trimmed).
    #[error("run {key} does not follow the table contract: {detail}")]
    Corrupt { key: String, detail: String },
}

impl StoreError {
    /// Retrying the same call cannot succeed: an item outside the table
    /// contract, or a request DynamoDB refuses as invalid.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } => true,
            StoreError::Upstream(u) => u.kind == UpstreamKind::Rejected,
        }
    }
}

// ---------------------------------------------------------------------------
// The run table
// ---------------------------------------------------------------------------

/// A run as the service reads it from the table (`docs/run-table.md`).
/// Schedulers may store more than this; what they store with a wrong type is
/// read as absent by the adapter, so one scheduler bug cannot make a run
/// unstoppable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecord {
    pub workflow_arn: String,
    pub run_id: String,
    pub status: String,
    pub workflow_version: Option<String>,
    pub run_type: Option<String>,
    pub created_at: Option<String>,
    pub started_on: Option<String>,
    pub modified_at: Option<String>,
    pub completed_on: Option<String>,
    pub error_message: Option<String>,
    pub task_instances: Option<Vec<String>>,
    pub override_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Active worker tasks: task ARN → cluster.
    pub workers: BTreeMap<String, String>,
    pub stop_requested_at: Option<String>,
    pub stop_requested_by: Option<String>,
    /// The `startedBy` its scheduler gives every worker's `RunTask`: lets the
    /// finalizer find workers launched but never registered.
    pub worker_started_by: Option<String>,
    /// The clusters the scheduler launches this run's workers in.
    pub worker_clusters: Option<Vec<String>>,
    /// A malformed entry is a [`ChildRef`] with empty fields, which the child
    /// policy counts as skipped.
    pub child_runs: Option<Vec<ChildRef>>,
    /// `TERMINATE` (default), `REQUEST_CANCEL` or `ABANDON`.
    pub child_policy: Option<String>,
    pub cancel_requested: Option<bool>,
    /// `UnconfirmedWorkers` of a `STOPPED` run: workers the finalizer could
    /// not confirm dead by the stop deadline, or found by the post-stop
    /// sweep, which the reconciler keeps stopping and describing (task ARN →
    /// cluster).
    pub unconfirmed_workers: BTreeMap<String, String>,
}

/// A child run, as listed in its parent's `ChildRuns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    pub workflow_arn: String,
    pub run_id: String,
}

impl RunRecord {
    /// The stored status, if it is one of the model's eight.
    pub fn run_status(&self) -> Option<RunStatus> {
        self.status.parse().ok()
    }
}

/// Everything the stop transition writes, decided by the caller (so the
/// adapter holds no clock and no policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    pub at: String,
    pub by: String,
    pub request_id: String,
    pub source_ip: Option<String>,
}

/// The outcome of the one conditional write.
#[derive(Debug, Clone, PartialEq)]
pub enum StopWrite {
    /// This write moved the run to `STOPPING`; the run as written (`ALL_NEW`).
    Transitioned(RunRecord),
    /// The condition failed on an existing run; the run as found (`ALL_OLD`).
    NotStoppable(RunRecord),
    /// No run with that key.
    NotFound,
}

/// What the API needs from the run table.
pub trait RunStore: Send + Sync {
    /// One conditional `UpdateItem`: active → `STOPPING`. No read before it.
    fn request_stop(
        &self,
        key: &RunKey,
        stop: &StopRequest,
    ) -> impl Future<Output = Result<StopWrite, StoreError>> + Send;
    /// A strongly consistent read of one run.
    fn get_run(&self, key: &RunKey) -> impl Future<Output = Result<Option<RunRecord>, StoreError>> + Send;
}

/// Which path finalized a run (the `FinalizedBy` detail of its `Stopped`
/// event): the stream, or the reconciler's safety net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalizedBy {
    #[default]
    Stream,
    Reconciler,
}

impl FinalizedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalizedBy::Stream => "stream",
            FinalizedBy::Reconciler => "reconciler",
        }
    }
}

/// What the finalizer records when it moves a run to `STOPPED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedWrite {
    pub at: String,
    pub finalized_by: FinalizedBy,
    /// Distinct worker tasks confirmed stopped (registered and orphans).
    pub workers_stopped: usize,
    /// Of those, tasks found by the `startedBy` sweep and not registered.
    pub orphans_stopped: usize,
    pub child_policy: Option<ChildPolicyApplied>,
    /// Workers not confirmed dead when the stop deadline passed (task ARN →
    /// cluster): named on the run (`UnconfirmedWorkers`, `ErrorMessage`, the
    /// `Stopped` event). Empty for a verified stop.
    pub unconfirmed: BTreeMap<String, String>,
    /// Keep the run in the stopping index's watch partitions after `STOPPED`
    /// (unconfirmed workers, or the post-stop sweep window still open), so
    /// the reconciler follows it up.
    pub watch: bool,
}

/// The longest `ErrorMessage` a `STOPPED` write with unconfirmed workers
/// sets (the task ARNs it names are cut to fit).
pub const UNCONFIRMED_MESSAGE_MAX: usize = 1_024;

impl StoppedWrite {
    /// `ErrorMessage` for a run stopped at the deadline: how many workers are
    /// not confirmed dead, and their task ARNs (as many as fit).
    pub fn unconfirmed_message(&self) -> Option<String> {
        if self.unconfirmed.is_empty() {
            return None;
        }
        let head = format!(
            "Stopped at the stop deadline with {} worker task(s) not confirmed stopped; still being stopped: ",
            self.unconfirmed.len()
        );
        let tasks = self.unconfirmed.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        let text = format!("{head}{tasks}");
        Some(crate::domain::truncate_to(&text, UNCONFIRMED_MESSAGE_MAX).to_owned())
    }
}

/// The reconciler's follow-up of a watched `STOPPED` run, written
/// conditioned on `STOPPED`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchWrite {
    pub at: String,
    /// Workers of `UnconfirmedWorkers` now confirmed dead: removed from it.
    pub confirmed: Vec<String>,
    /// Workers found running by the post-stop sweep (task ARN → cluster):
    /// added to `UnconfirmedWorkers`.
    pub found: BTreeMap<String, String>,
    /// Nothing left to watch: leave the stopping index (and drop
    /// `UnconfirmedWorkers`), conditioned on `UnconfirmedWorkers` still
    /// having `read_len` entries (no concurrent follow-up added one).
    pub end_watch: bool,
    /// How many `UnconfirmedWorkers` the follow-up read.
    pub read_len: usize,
}

/// The `ChildPolicyApplied` event: what the policy did to the children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPolicyApplied {
    pub policy: ChildPolicy,
    pub children: usize,
    /// Children the policy changed (stopped or cancel-requested).
    pub affected: usize,
    /// Children already finished, missing, listed with an invalid key, outside
    /// the parent's account, partition or region, or whose item the policy
    /// cannot act on.
    pub skipped: usize,
    /// Why each child the policy could not act on was skipped (finished and
    /// missing children are not listed: that is the normal case).
    pub skipped_children: Vec<SkippedChild>,
}

/// A child the child policy did not act on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedChild {
    pub workflow_arn: String,
    pub run_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalizeWrite {
    /// This write moved the run to `STOPPED`.
    Stopped,
    /// The run was no longer `STOPPING`: another invocation won.
    NotStopping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelWrite {
    Requested,
    /// Finished, or already cancel-requested.
    NotActive,
    NotFound,
}

/// What the stop finalizer needs from the run table, beyond the API's.
pub trait FinalizerStore: RunStore {
    /// `STOPPING` → `STOPPED`, conditioned on `STOPPING`.
    fn finalize_stop(
        &self,
        key: &RunKey,
        w: &StoppedWrite,
    ) -> impl Future<Output = Result<FinalizeWrite, StoreError>> + Send;
    /// Mark an active child `CancelRequested` with a history event, once.
    fn request_cancel(
        &self,
        key: &RunKey,
        by: &str,
        at: &str,
    ) -> impl Future<Output = Result<CancelWrite, StoreError>> + Send;
    /// The follow-up of a watched `STOPPED` run, conditioned on `STOPPED`:
    /// `false` when the run is not (or no longer) `STOPPED`.
    fn update_watch(&self, key: &RunKey, w: &WatchWrite) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A run found `STOPPING` by the reconciler's index, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppingRun {
    pub workflow_arn: String,
    pub run_id: String,
    /// `StoppingSince`, as stored.
    pub since: String,
}

/// What the reconciler needs beyond the finalizer: the runs that are
/// `STOPPING` now, from an index that holds nothing else.
pub trait ReconcilerStore: FinalizerStore {
    fn stopping_runs(&self) -> impl Future<Output = Result<Vec<StoppingRun>, StoreError>> + Send;
    /// The `STOPPED` runs still watched (the index's watch partitions):
    /// unconfirmed workers, or the post-stop sweep window still open.
    fn watched_runs(&self) -> impl Future<Output = Result<Vec<StoppingRun>, StoreError>> + Send;
}

// ---------------------------------------------------------------------------
// The workers (ECS tasks)
// ---------------------------------------------------------------------------

/// What one `StopTask` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStop {
    /// ECS accepted the stop; `last_status` is what it reported then.
    Accepted { last_status: Option<String> },
    /// ECS no longer knows the task (or its cluster): it is not running.
    Gone,
}

/// What the API needs from ECS.
pub trait WorkerControl: Send + Sync {
    fn stop_task(
        &self,
        cluster: &str,
        task: &str,
        reason: &str,
    ) -> impl Future<Output = Result<TaskStop, UpstreamError>> + Send;
}

/// One task as ECS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub arn: String,
    pub last_status: Option<String>,
    pub desired_status: Option<String>,
}

impl TaskState {
    pub fn is_stopped(&self) -> bool {
        self.last_status.as_deref() == Some("STOPPED")
    }

    /// ECS has been told to stop it (by the API or an earlier pass).
    pub fn stop_requested(&self) -> bool {
        self.desired_status.as_deref() == Some("STOPPED")
    }
}

/// A `DescribeTasks` answer: the tasks ECS knows, and those it does not
/// (reported as `MISSING` failures: long gone, so not running).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    pub found: Vec<TaskState>,
    pub missing: Vec<String>,
}

/// ECS's `DescribeTasks` limit.
pub const DESCRIBE_TASKS_MAX: usize = 100;

/// What the stop finalizer needs from ECS, beyond the API's `StopTask`.
pub trait WorkerFleet: WorkerControl {
    /// At most [`DESCRIBE_TASKS_MAX`] tasks of one cluster.
    fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> impl Future<Output = Result<Described, UpstreamError>> + Send;
    /// Every task of `cluster` started by `started_by` that ECS still lists:
    /// desired status `RUNNING`, then `STOPPED` (told to stop, and maybe
    /// still running: a hung agent), all pages of both.
    fn list_running(
        &self,
        cluster: &str,
        started_by: &str,
    ) -> impl Future<Output = Result<Vec<String>, UpstreamError>> + Send;
}

// ---------------------------------------------------------------------------
// The event bus (EventBridge)
// ---------------------------------------------------------------------------

/// One run event for the bus: a `PutEvents` entry without the bus and the
/// source, which the adapter holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    pub detail_type: &'static str,
    pub resources: Vec<String>,
    /// The detail, a JSON object.
    pub detail: String,
}

/// What the run-events function needs from EventBridge.
pub trait EventPublisher: Send + Sync {
    /// Publish `events`, in order; per event `None` when the bus took it, or
    /// why it did not (the event may be sent again). An `Err` is a call that
    /// failed as a whole: none of them is known to be published.
    fn publish(&self, events: &[BusEvent]) -> impl Future<Output = Result<Vec<Option<String>>, UpstreamError>> + Send;
}
