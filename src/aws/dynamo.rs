//! The run table in DynamoDB: the [`RunStore`] and [`FinalizerStore`] ports.
//!
//! Every write is one conditional `UpdateItem` built by [`Update`]: a set of
//! attributes, history events appended, and a status condition built from the
//! domain's own lists ([`RunStatus::STOPPABLE`]). The attribute names are the
//! documented table contract (`docs/run-table.md`); schedulers write the same
//! items.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::item::run_record;
use super::upstream::from_sdk;
use crate::model::{RunKey, RunStatus};
use crate::ports::{
    CancelWrite, FinalizeWrite, FinalizerStore, RunRecord, RunStore, StopRequest, StopWrite, StoppedWrite, StoreError,
};

/// Attribute names of the run table contract.
pub(crate) mod attr {
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

/// The run table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoRunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: usize) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// One history event: its name, when, and its details (a map: readers look
/// details up by name).
fn history_event(event: &str, at: &str, details: Vec<(&str, AttributeValue)>) -> AttributeValue {
    let mut m = HashMap::from([("Event".to_owned(), s(event)), ("At".to_owned(), s(at))]);
    m.extend(details.into_iter().map(|(k, v)| (k.to_owned(), v)));
    AttributeValue::M(m)
}

/// The expression value placeholder of a status: `:running` for `RUNNING`.
fn status_placeholder(status: RunStatus) -> String {
    format!(":{}", status.as_str().to_ascii_lowercase())
}

/// One conditional `UpdateItem`: `SET` clauses, history events appended, a
/// condition. Placeholders are `#name` for attribute names and `:name` for
/// values.
struct Update {
    sets: Vec<String>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(String, AttributeValue)>,
    condition: String,
}

impl Update {
    fn new() -> Self {
        Update {
            sets: Vec::new(),
            names: vec![("#status", attr::STATUS)],
            values: Vec::new(),
            condition: String::new(),
        }
    }

    /// `SET #placeholder = :value`, where `:value` is bound elsewhere.
    fn set(mut self, placeholder: &'static str, attribute: &'static str, value: &str) -> Self {
        self.sets.push(format!("{placeholder} = {value}"));
        if placeholder != "#status" {
            self.names.push((placeholder, attribute));
        }
        self
    }

    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.push((placeholder.to_owned(), value));
        self
    }

    /// Append `events` (bound as `:placeholder`) to the run's history.
    fn append_history(mut self, placeholder: &str, events: Vec<AttributeValue>) -> Self {
        self.sets.push(format!("#history = list_append(if_not_exists(#history, :empty), {placeholder})"));
        self.names.push(("#history", attr::HISTORY));
        self.values.push((":empty".to_owned(), AttributeValue::L(Vec::new())));
        self.values.push((placeholder.to_owned(), AttributeValue::L(events)));
        self
    }

    /// The condition `#status IN (...)` over `statuses`, or `#status = :x`
    /// for one, binding each status's placeholder.
    fn status_in(mut self, statuses: &[RunStatus]) -> Self {
        let placeholders: Vec<String> = statuses.iter().map(|st| status_placeholder(*st)).collect();
        for (st, p) in statuses.iter().zip(&placeholders) {
            if !self.values.iter().any(|(k, _)| k == p) {
                self.values.push((p.clone(), s(st.as_str())));
            }
        }
        self.condition = match placeholders.as_slice() {
            [one] => format!("#status = {one}"),
            many => format!("#status IN ({})", many.join(", ")),
        };
        self
    }

    /// More condition, `AND`-ed.
    fn and(mut self, clause: &str, names: &[(&'static str, &'static str)]) -> Self {
        self.condition = format!("{} AND {clause}", self.condition);
        self.names.extend_from_slice(names);
        self
    }

    fn request(self, store: &DynamoRunStore, key: &RunKey) -> UpdateItemFluentBuilder {
        let mut req = store
            .client
            .update_item()
            .table_name(&store.table)
            .key(attr::WORKFLOW_ARN, s(key.workflow_arn.as_str()))
            .key(attr::RUN_ID, s(&key.run_id))
            .update_expression(format!("SET {}", self.sets.join(", ")))
            .condition_expression(self.condition);
        for (placeholder, name) in self.names {
            req = req.expression_attribute_names(placeholder, name);
        }
        for (placeholder, value) in self.values {
            req = req.expression_attribute_values(placeholder, value);
        }
        req
    }
}

impl DynamoRunStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRunStore { client, table: table.into() }
    }

    /// A client built from the shared SDK configuration ([`super::sdk_config`]).
    pub fn from_conf(conf: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoRunStore::new(aws_sdk_dynamodb::Client::new(conf), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The stop transition: active → `STOPPING`, who and when, and a
    /// `StopRequested` event.
    fn stop_update(stop: &StopRequest) -> Update {
        let mut details =
            vec![("By", s(&stop.by)), ("RequestId", s(&stop.request_id)), ("Operation", s("StopWorkflowRun"))];
        if let Some(ip) = &stop.source_ip {
            details.push(("SourceIp", s(ip)));
        }
        Update::new()
            .set("#status", attr::STATUS, ":stopping")
            .set("#stop_at", attr::STOP_REQUESTED_AT, ":now")
            .set("#stop_by", attr::STOP_REQUESTED_BY, ":by")
            .set("#modified", attr::MODIFIED_AT, ":now")
            .append_history(":event", vec![history_event("StopRequested", &stop.at, details)])
            .value(":stopping", s(RunStatus::Stopping.as_str()))
            .value(":now", s(&stop.at))
            .value(":by", s(&stop.by))
            .status_in(&RunStatus::STOPPABLE)
    }
}

/// Did the write fail on its condition? With `ALL_OLD`, the item found (an
/// empty one means no item).
fn condition_failed(
    err: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, aws_smithy_runtime_api::http::Response>,
) -> Option<Option<HashMap<String, AttributeValue>>> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(ccf)) => {
            Some(ccf.item.clone().filter(|item| !item.is_empty()))
        }
        _ => None,
    }
}

impl RunStore for DynamoRunStore {
    async fn request_stop(&self, key: &RunKey, stop: &StopRequest) -> Result<StopWrite, StoreError> {
        let result = DynamoRunStore::stop_update(stop)
            .request(self, key)
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
                Ok(StopWrite::Transitioned(run_record(key, item)?))
            }
            Err(err) => match condition_failed(&err) {
                Some(Some(item)) => Ok(StopWrite::NotStoppable(run_record(key, item)?)),
                Some(None) => Ok(StopWrite::NotFound),
                None => Err(from_sdk("dynamodb", "UpdateItem", &err).into()),
            },
        }
    }

    async fn get_run(&self, key: &RunKey) -> Result<Option<RunRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::WORKFLOW_ARN, s(key.workflow_arn.as_str()))
            .key(attr::RUN_ID, s(&key.run_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| from_sdk("dynamodb", "GetItem", &err))?;
        match out.item {
            Some(item) if !item.is_empty() => Ok(Some(run_record(key, item)?)),
            _ => Ok(None),
        }
    }
}

/// The events the `STOPPED` write appends.
fn stopped_events(w: &StoppedWrite) -> Vec<AttributeValue> {
    let mut events = Vec::new();
    if let Some(c) = &w.child_policy {
        events.push(history_event(
            "ChildPolicyApplied",
            &w.at,
            vec![
                ("Policy", s(c.policy.as_str())),
                ("Children", n(c.children)),
                ("Affected", n(c.affected)),
                ("Skipped", n(c.skipped)),
            ],
        ));
    }
    events.push(history_event(
        "Stopped",
        &w.at,
        vec![("WorkersStopped", n(w.workers_stopped)), ("OrphansStopped", n(w.orphans_stopped))],
    ));
    events
}

impl FinalizerStore for DynamoRunStore {
    async fn finalize_stop(&self, key: &RunKey, w: &StoppedWrite) -> Result<FinalizeWrite, StoreError> {
        let result = Update::new()
            .set("#status", attr::STATUS, ":stopped")
            .set("#completed", attr::COMPLETED_ON, ":now")
            .set("#modified", attr::MODIFIED_AT, ":now")
            .set("#workers", attr::WORKERS, ":no_workers")
            .append_history(":events", stopped_events(w))
            .value(":stopped", s(RunStatus::Stopped.as_str()))
            .value(":now", s(&w.at))
            .value(":no_workers", AttributeValue::M(HashMap::new()))
            .status_in(&[RunStatus::Stopping])
            .request(self, key)
            .send()
            .await;
        match result {
            Ok(_) => Ok(FinalizeWrite::Stopped),
            Err(err) if condition_failed(&err).is_some() => Ok(FinalizeWrite::NotStopping),
            Err(err) => Err(from_sdk("dynamodb", "UpdateItem", &err).into()),
        }
    }

    async fn request_cancel(&self, key: &RunKey, by: &str, at: &str) -> Result<CancelWrite, StoreError> {
        let result = Update::new()
            .set("#cancel", attr::CANCEL_REQUESTED, ":true")
            .set("#modified", attr::MODIFIED_AT, ":now")
            .append_history(":event", vec![history_event("CancelRequested", at, vec![("By", s(by))])])
            .value(":true", AttributeValue::Bool(true))
            .value(":false", AttributeValue::Bool(false))
            .value(":now", s(at))
            .status_in(&RunStatus::STOPPABLE)
            .and("(attribute_not_exists(#cancel) OR #cancel = :false)", &[])
            .request(self, key)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(CancelWrite::Requested),
            Err(err) => match condition_failed(&err) {
                Some(Some(_)) => Ok(CancelWrite::NotActive),
                Some(None) => Ok(CancelWrite::NotFound),
                None => Err(from_sdk("dynamodb", "UpdateItem", &err).into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_come_from_the_domain_lists() {
        let stop = StopRequest { at: "t".into(), by: "b".into(), request_id: "r".into(), source_ip: None };
        let u = DynamoRunStore::stop_update(&stop);
        assert_eq!(u.condition, "#status IN (:starting, :queued, :running)");
        for st in RunStatus::STOPPABLE {
            let p = status_placeholder(st);
            assert!(u.values.iter().any(|(k, v)| *k == p && *v == s(st.as_str())), "{p} bound");
        }
        assert_eq!(Update::new().status_in(&[RunStatus::Stopping]).condition, "#status = :stopping");
    }
}
