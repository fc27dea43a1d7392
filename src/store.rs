//! The run table: the narrow interface the service needs, and its DynamoDB
//! adapter. The attribute names here are the documented table contract
//! (`docs/run-table.md`); schedulers write the same items.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use serde::Deserialize;

use crate::model::{ChildPolicy, RunKey, RunStatus};
use crate::upstream::UpstreamError;

/// Attribute names of the run table contract.
pub mod attr {
    pub const WORKFLOW_ARN: &str = "WorkflowArn";
    pub const RUN_ID: &str = "RunId";
    pub const STATUS: &str = "Status";
    pub const WORKERS: &str = "Workers";
    pub const HISTORY: &str = "History";
    pub const STOP_REQUESTED_AT: &str = "StopRequestedAt";
    pub const STOP_REQUESTED_BY: &str = "StopRequestedBy";
    pub const MODIFIED_AT: &str = "ModifiedAt";
    pub const COMPLETED_ON: &str = "CompletedOn";
    pub const CANCEL_REQUESTED: &str = "CancelRequested";
    pub const CHILD_RUNS: &str = "ChildRuns";
    pub const WORKER_CLUSTERS: &str = "WorkerClusters";
    pub const WORKER_STARTED_BY: &str = "WorkerStartedBy";
}

/// A run as the service reads it from the table. Unknown attributes are
/// ignored so schedulers may store more than this contract names, and an
/// optional attribute of the wrong type is logged and read as absent (see
/// [`parse`]): one scheduler bug must not make a run unstoppable.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunRecord {
    pub workflow_arn: String,
    pub run_id: String,
    pub status: String,
    #[serde(default)]
    pub workflow_version: Option<String>,
    #[serde(default)]
    pub run_type: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_on: Option<String>,
    #[serde(default)]
    pub modified_at: Option<String>,
    #[serde(default)]
    pub completed_on: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub task_instances: Option<Vec<String>>,
    #[serde(default)]
    pub override_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Active worker tasks: task ARN → cluster (read by [`parse`], leniently).
    #[serde(skip)]
    pub workers: BTreeMap<String, String>,
    #[serde(default)]
    pub stop_requested_at: Option<String>,
    #[serde(default)]
    pub stop_requested_by: Option<String>,
    /// The `startedBy` its scheduler gives every worker's `RunTask`: lets the
    /// finalizer find workers launched but never registered.
    #[serde(default)]
    pub worker_started_by: Option<String>,
    /// The clusters the scheduler launches this run's workers in (SS).
    #[serde(default)]
    pub worker_clusters: Option<Vec<String>>,
    /// Read by [`parse`] entry by entry: a malformed entry becomes a
    /// [`ChildRef`] with empty fields, which the child policy counts as skipped.
    #[serde(skip)]
    pub child_runs: Option<Vec<ChildRef>>,
    /// `TERMINATE` (default), `REQUEST_CANCEL` or `ABANDON`.
    #[serde(default)]
    pub child_policy: Option<String>,
    #[serde(default)]
    pub cancel_requested: Option<bool>,
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

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An item that does not follow the table contract.
    #[error("run {key} does not follow the table contract: {detail}")]
    Corrupt { key: String, detail: String },
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

/// The run table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoRunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The condition and update of the stop transition. Public so tests (and the
/// finalizer's child policy) use exactly the same expression.
pub const STOP_UPDATE_EXPRESSION: &str = "SET #status = :stopping, #stop_at = :now, #stop_by = :by, #modified = :now, \
     #history = list_append(if_not_exists(#history, :empty), :event)";
pub const STOP_CONDITION_EXPRESSION: &str = "#status IN (:starting, :queued, :running)";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The `StopRequested` history event: who, when, through which request.
pub fn stop_requested_event(stop: &StopRequest) -> AttributeValue {
    let mut event = HashMap::from([
        ("Event".to_owned(), s("StopRequested")),
        ("At".to_owned(), s(&stop.at)),
        ("By".to_owned(), s(&stop.by)),
        ("RequestId".to_owned(), s(&stop.request_id)),
        ("Operation".to_owned(), s("StopWorkflowRun")),
    ]);
    if let Some(ip) = &stop.source_ip {
        event.insert("SourceIp".to_owned(), s(ip));
    }
    AttributeValue::M(event)
}

fn key_of(key: &RunKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (attr::WORKFLOW_ARN.to_owned(), s(key.workflow_arn.as_str())),
        (attr::RUN_ID.to_owned(), s(&key.run_id)),
    ])
}

/// Parse an item. Only the key and `Status` must follow the contract: the
/// rest is written by schedulers, and a run whose stop transition has already
/// been written must still get its workers stopped and reach `STOPPED`. So a
/// bad `Workers` entry is logged and left to the finalizer's `startedBy`
/// sweep, a bad `ChildRuns` entry is counted as skipped by the child policy,
/// and any other attribute of the wrong type is logged and read as absent.
fn parse(key: &RunKey, mut item: HashMap<String, AttributeValue>) -> Result<RunRecord, StoreError> {
    // The history only grows and nothing here reads it: drop it before the
    // copy the fallback needs and before serde walks the item.
    item.remove(attr::HISTORY);
    let workers = item.remove(attr::WORKERS);
    let children = item.remove(attr::CHILD_RUNS);
    normalize_sweep_attributes(key, &mut item);
    let mut run: RunRecord = match serde_dynamo::from_item(item.clone()) {
        Ok(run) => run,
        Err(_) => parse_dropping_bad_attributes(key, item)?,
    };
    run.child_runs = children.and_then(|c| child_refs(key, c));
    match workers {
        None => {}
        Some(AttributeValue::M(entries)) => {
            for (task, cluster) in entries {
                match cluster {
                    AttributeValue::S(cluster) => {
                        run.workers.insert(task, cluster);
                    }
                    other => {
                        tracing::error!(run = %key, task, value = ?other, "worker entry is not a cluster name; skipped")
                    }
                }
            }
        }
        Some(other) => tracing::error!(run = %key, value = ?other, "Workers is not a map; no worker read from it"),
    }
    Ok(run)
}

/// The orphan sweep's two attributes, read as meant when a scheduler slipped
/// on their types: `WorkerClusters` is SS by contract, but one S, or an L
/// whose S entries name clusters, still says where orphans may run, and a
/// `WorkerStartedBy` written as N is the same `startedBy` string. Reading
/// either as absent would skip the sweep and leave unregistered workers billing.
fn normalize_sweep_attributes(key: &RunKey, item: &mut HashMap<String, AttributeValue>) {
    let clusters = match item.get(attr::WORKER_CLUSTERS) {
        Some(AttributeValue::S(one)) => Some(vec![one.clone()]),
        Some(AttributeValue::L(list)) => Some(list.iter().filter_map(|v| v.as_s().ok().cloned()).collect()),
        _ => None,
    };
    if let Some(clusters) = clusters {
        tracing::warn!(run = %key, ?clusters, "WorkerClusters is not a string set; its strings are read as one");
        item.insert(attr::WORKER_CLUSTERS.to_owned(), AttributeValue::Ss(clusters));
    }
    if let Some(AttributeValue::N(n)) = item.get(attr::WORKER_STARTED_BY) {
        tracing::warn!(run = %key, started_by = %n, "WorkerStartedBy is a number; read as its string");
        let n = n.clone();
        item.insert(attr::WORKER_STARTED_BY.to_owned(), AttributeValue::S(n));
    }
}

/// The slow path of [`parse`], taken only for an item that does not follow
/// the contract: keep the required attributes, then every other attribute
/// that parses on its own, in name order so the result is deterministic.
fn parse_dropping_bad_attributes(
    key: &RunKey,
    mut item: HashMap<String, AttributeValue>,
) -> Result<RunRecord, StoreError> {
    let corrupt = |e: serde_dynamo::Error| StoreError::Corrupt { key: key.to_string(), detail: e.to_string() };
    let mut kept: HashMap<String, AttributeValue> = HashMap::new();
    for name in [attr::WORKFLOW_ARN, attr::RUN_ID, attr::STATUS] {
        if let Some(value) = item.remove(name) {
            kept.insert(name.to_owned(), value);
        }
    }
    serde_dynamo::from_item::<_, RunRecord>(kept.clone()).map_err(corrupt)?;
    let mut names: Vec<String> = item.keys().cloned().collect();
    names.sort();
    for name in names {
        let Some(value) = item.remove(&name) else { continue };
        let mut trial = kept.clone();
        trial.insert(name.clone(), value.clone());
        match serde_dynamo::from_item::<_, RunRecord>(trial) {
            Ok(_) => {
                kept.insert(name, value);
            }
            Err(e) => {
                tracing::error!(run = %key, attribute = %name, error = %e, "attribute does not follow the table contract; read as absent")
            }
        }
    }
    serde_dynamo::from_item(kept).map_err(corrupt)
}

/// `ChildRuns`, entry by entry. A malformed entry keeps whatever key fields
/// it has (empty otherwise) so the child policy reports it as skipped rather
/// than the parent forgetting a child.
fn child_refs(key: &RunKey, children: AttributeValue) -> Option<Vec<ChildRef>> {
    if matches!(&children, AttributeValue::Null(_)) {
        return None;
    }
    let AttributeValue::L(entries) = children else {
        // Children exist but cannot be named: one malformed entry, so the
        // parent's ChildPolicyApplied event records a skip instead of nothing.
        tracing::error!(run = %key, value = ?children, "ChildRuns is not a list; its children cannot be read");
        return Some(vec![ChildRef { workflow_arn: String::new(), run_id: String::new() }]);
    };
    let field = |entry: &HashMap<String, AttributeValue>, name: &str| match entry.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    };
    let refs = entries
        .into_iter()
        .map(|entry| match entry {
            AttributeValue::M(m) => {
                let child = ChildRef { workflow_arn: field(&m, attr::WORKFLOW_ARN), run_id: field(&m, attr::RUN_ID) };
                if child.workflow_arn.is_empty() || child.run_id.is_empty() {
                    tracing::error!(run = %key, entry = ?m, "ChildRuns entry without a WorkflowArn and RunId string");
                }
                child
            }
            other => {
                tracing::error!(run = %key, entry = ?other, "ChildRuns entry is not a map");
                ChildRef { workflow_arn: String::new(), run_id: String::new() }
            }
        })
        .collect();
    Some(refs)
}

impl DynamoRunStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRunStore { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

impl RunStore for DynamoRunStore {
    async fn request_stop(&self, key: &RunKey, stop: &StopRequest) -> Result<StopWrite, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(key)))
            .update_expression(STOP_UPDATE_EXPRESSION)
            .condition_expression(STOP_CONDITION_EXPRESSION)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#stop_at", attr::STOP_REQUESTED_AT)
            .expression_attribute_names("#stop_by", attr::STOP_REQUESTED_BY)
            .expression_attribute_names("#modified", attr::MODIFIED_AT)
            .expression_attribute_names("#history", attr::HISTORY)
            .expression_attribute_values(":stopping", s(RunStatus::Stopping.as_str()))
            .expression_attribute_values(":starting", s(RunStatus::Starting.as_str()))
            .expression_attribute_values(":queued", s(RunStatus::Queued.as_str()))
            .expression_attribute_values(":running", s(RunStatus::Running.as_str()))
            .expression_attribute_values(":now", s(&stop.at))
            .expression_attribute_values(":by", s(&stop.by))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":event", AttributeValue::L(vec![stop_requested_event(stop)]))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| StoreError::Corrupt {
                    key: key.to_string(),
                    detail: "UpdateItem with ALL_NEW returned no attributes".into(),
                })?;
                Ok(StopWrite::Transitioned(parse(key, item)?))
            }
            Err(err) => {
                if let Some(UpdateItemError::ConditionalCheckFailedException(ccf)) = err.as_service_error() {
                    return match ccf.item.clone() {
                        Some(item) if !item.is_empty() => Ok(StopWrite::NotStoppable(parse(key, item)?)),
                        _ => Ok(StopWrite::NotFound),
                    };
                }
                Err(UpstreamError::from_sdk("dynamodb", "UpdateItem", &err).into())
            }
        }
    }

    async fn get_run(&self, key: &RunKey) -> Result<Option<RunRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| UpstreamError::from_sdk("dynamodb", "GetItem", &err))?;
        match out.item {
            Some(item) if !item.is_empty() => Ok(Some(parse(key, item)?)),
            _ => Ok(None),
        }
    }
}

/// What the finalizer records when it moves a run to `STOPPED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedWrite {
    pub at: String,
    /// Distinct worker tasks confirmed stopped (registered and orphans).
    pub workers_stopped: usize,
    /// Of those, tasks found by the `startedBy` sweep and not registered.
    pub orphans_stopped: usize,
    pub child_policy: Option<ChildPolicyApplied>,
}

/// The `ChildPolicyApplied` event: what the policy did to the children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPolicyApplied {
    pub policy: ChildPolicy,
    pub children: usize,
    /// Children the policy changed (stopped or cancel-requested).
    pub affected: usize,
    /// Children already finished, missing, or listed with an invalid key.
    pub skipped: usize,
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
}

fn n(v: usize) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub const FINALIZE_UPDATE_EXPRESSION: &str = "SET #status = :stopped, #completed = :now, #modified = :now, \
     #workers = :no_workers, #history = list_append(if_not_exists(#history, :empty), :events)";
pub const FINALIZE_CONDITION_EXPRESSION: &str = "#status = :stopping";
pub const CANCEL_UPDATE_EXPRESSION: &str =
    "SET #cancel = :true, #modified = :now, #history = list_append(if_not_exists(#history, :empty), :event)";
pub const CANCEL_CONDITION_EXPRESSION: &str =
    "#status IN (:starting, :queued, :running) AND (attribute_not_exists(#cancel) OR #cancel = :false)";

/// The events the `STOPPED` write appends.
pub fn stopped_events(w: &StoppedWrite) -> Vec<AttributeValue> {
    let mut events = Vec::new();
    if let Some(c) = &w.child_policy {
        events.push(AttributeValue::M(HashMap::from([
            ("Event".to_owned(), s("ChildPolicyApplied")),
            ("At".to_owned(), s(&w.at)),
            ("Policy".to_owned(), s(c.policy.as_str())),
            ("Children".to_owned(), n(c.children)),
            ("Affected".to_owned(), n(c.affected)),
            ("Skipped".to_owned(), n(c.skipped)),
        ])));
    }
    events.push(AttributeValue::M(HashMap::from([
        ("Event".to_owned(), s("Stopped")),
        ("At".to_owned(), s(&w.at)),
        ("WorkersStopped".to_owned(), n(w.workers_stopped)),
        ("OrphansStopped".to_owned(), n(w.orphans_stopped)),
    ])));
    events
}

impl FinalizerStore for DynamoRunStore {
    async fn finalize_stop(&self, key: &RunKey, w: &StoppedWrite) -> Result<FinalizeWrite, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(key)))
            .update_expression(FINALIZE_UPDATE_EXPRESSION)
            .condition_expression(FINALIZE_CONDITION_EXPRESSION)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#completed", attr::COMPLETED_ON)
            .expression_attribute_names("#modified", attr::MODIFIED_AT)
            .expression_attribute_names("#workers", attr::WORKERS)
            .expression_attribute_names("#history", attr::HISTORY)
            .expression_attribute_values(":stopped", s(RunStatus::Stopped.as_str()))
            .expression_attribute_values(":stopping", s(RunStatus::Stopping.as_str()))
            .expression_attribute_values(":now", s(&w.at))
            .expression_attribute_values(":no_workers", AttributeValue::M(HashMap::new()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":events", AttributeValue::L(stopped_events(w)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(FinalizeWrite::Stopped),
            Err(err) if matches!(err.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Ok(FinalizeWrite::NotStopping)
            }
            Err(err) => Err(UpstreamError::from_sdk("dynamodb", "UpdateItem", &err).into()),
        }
    }

    async fn request_cancel(&self, key: &RunKey, by: &str, at: &str) -> Result<CancelWrite, StoreError> {
        let event = AttributeValue::M(HashMap::from([
            ("Event".to_owned(), s("CancelRequested")),
            ("At".to_owned(), s(at)),
            ("By".to_owned(), s(by)),
        ]));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(key)))
            .update_expression(CANCEL_UPDATE_EXPRESSION)
            .condition_expression(CANCEL_CONDITION_EXPRESSION)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#cancel", attr::CANCEL_REQUESTED)
            .expression_attribute_names("#modified", attr::MODIFIED_AT)
            .expression_attribute_names("#history", attr::HISTORY)
            .expression_attribute_values(":starting", s(RunStatus::Starting.as_str()))
            .expression_attribute_values(":queued", s(RunStatus::Queued.as_str()))
            .expression_attribute_values(":running", s(RunStatus::Running.as_str()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", s(at))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":event", AttributeValue::L(vec![event]))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(CancelWrite::Requested),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(ccf)) => {
                    Ok(if ccf.item.as_ref().is_some_and(|i| !i.is_empty()) {
                        CancelWrite::NotActive
                    } else {
                        CancelWrite::NotFound
                    })
                }
                _ => Err(UpstreamError::from_sdk("dynamodb", "UpdateItem", &err).into()),
            },
        }
    }
}

impl From<StoreError> for crate::error::ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Upstream(u) => u.into(),
            StoreError::Corrupt { .. } => crate::error::ApiError::internal(),
        }
    }
}
