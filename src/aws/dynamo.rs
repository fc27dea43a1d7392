//! The run table in DynamoDB: the [`RunStore`] and [`FinalizerStore`] ports.
//!
//! Every write is one conditional `UpdateItem` built by [`Update`]: a set of
//! attributes, history events appended, and a status condition built from the
//! domain's own lists ([`RunStatus::STOPPABLE`]). The attribute names are the
//! documented table contract (`docs/run-table.md`); schedulers write the same
//! items.
//!
//! No transition fails because of DynamoDB's item size limit: when DynamoDB
//! refuses a write as too large, the run is read and the same write is sent
//! again with the history bounded (its oldest events dropped and counted in
//! `HistoryEventsDropped`), conditioned on the history being the one read.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use super::item::{item_size, run_record};
use super::upstream::{from_sdk, is_item_too_large};
use crate::model::{stopping_shard, RunKey, RunStatus, STOPPING_SHARDS};
use crate::ports::{
    CancelWrite, FinalizeWrite, FinalizerStore, ReconcilerStore, RunRecord, RunStore, StopRequest, StopWrite,
    StoppedWrite, StoppingRun, StoreError, UpstreamError,
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
    pub const STOPPING_SHARD: &str = "StoppingShard";
    pub const STOPPING_SINCE: &str = "StoppingSince";
    pub const HISTORY_DROPPED: &str = "HistoryEventsDropped";
}

/// The sparse index of `STOPPING` runs: only items carrying
/// `StoppingShard` and `StoppingSince` (set by the stop, removed by
/// `STOPPED`) are in it.
pub const STOPPING_INDEX: &str = "StoppingRuns";

/// The size a fitted write keeps a run item under: below DynamoDB's 400 KiB
/// (409,600 bytes) with room for the difference between DynamoDB's own
/// accounting and [`item_size`]'s documented approximation.
const FITTED_ITEM_BYTES: usize = 400_000;

/// The run table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoRunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    index: String,
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

/// One conditional `UpdateItem`: `SET` clauses, history events appended,
/// `REMOVE`d attributes, a condition. Placeholders are `#name` for attribute
/// names and `:name` for values.
#[derive(Clone)]
struct Update {
    /// (name placeholder, attribute, value placeholder)
    sets: Vec<(&'static str, &'static str, String)>,
    removes: Vec<(&'static str, &'static str)>,
    /// Events appended to `History`, bound as this placeholder.
    events: Option<(String, Vec<AttributeValue>)>,
    /// Set by [`Update::fit`]: the whole history to write, its length when
    /// read, and the new count of dropped events.
    fitted: Option<(Vec<AttributeValue>, usize, u64)>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(String, AttributeValue)>,
    condition: String,
}

impl Update {
    fn new() -> Self {
        Update {
            sets: Vec::new(),
            removes: Vec::new(),
            events: None,
            fitted: None,
            names: vec![("#status", attr::STATUS)],
            values: Vec::new(),
            condition: String::new(),
        }
    }

    fn name(&mut self, placeholder: &'static str, attribute: &'static str) {
        if !self.names.iter().any(|(p, _)| *p == placeholder) {
            self.names.push((placeholder, attribute));
        }
    }

    /// `SET #placeholder = :value`, where `:value` is bound elsewhere.
    fn set(mut self, placeholder: &'static str, attribute: &'static str, value: &str) -> Self {
        self.sets.push((placeholder, attribute, value.to_owned()));
        self.name(placeholder, attribute);
        self
    }

    fn remove(mut self, placeholder: &'static str, attribute: &'static str) -> Self {
        self.removes.push((placeholder, attribute));
        self.name(placeholder, attribute);
        self
    }

    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.push((placeholder.to_owned(), value));
        self
    }

    /// Append `events` (bound as `:placeholder`) to the run's history.
    fn append_history(mut self, placeholder: &str, events: Vec<AttributeValue>) -> Self {
        self.events = Some((placeholder.to_owned(), events));
        self.name("#history", attr::HISTORY);
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

    fn bound(&self, placeholder: &str) -> Option<&AttributeValue> {
        self.values.iter().find(|(k, _)| k == placeholder).map(|(_, v)| v)
    }

    /// The same write with the history bounded so that the item, as this
    /// write leaves it, stays under [`FITTED_ITEM_BYTES`]: the oldest events
    /// (stored ones first, then this write's own) are dropped and counted.
    /// `None` when even no history at all does not fit.
    fn fit(&self, item: &HashMap<String, AttributeValue>) -> Option<Update> {
        let stored: Vec<AttributeValue> = match item.get(attr::HISTORY) {
            Some(AttributeValue::L(events)) => events.clone(),
            _ => Vec::new(),
        };
        let dropped_before: u64 = match item.get(attr::HISTORY_DROPPED) {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        };
        let mut after = item.clone();
        for (_, attribute, value) in &self.sets {
            if let Some(v) = self.bound(value) {
                after.insert((*attribute).to_owned(), v.clone());
            }
        }
        for (_, attribute) in &self.removes {
            after.remove(*attribute);
        }
        let mut all = stored.clone();
        all.extend(self.events.as_ref().map(|(_, e)| e.clone()).unwrap_or_default());
        for drop in 0..=all.len() {
            let kept = all[drop..].to_vec();
            let mut candidate = after.clone();
            candidate.insert(attr::HISTORY.to_owned(), AttributeValue::L(kept.clone()));
            candidate.insert(attr::HISTORY_DROPPED.to_owned(), n((dropped_before + drop as u64) as usize));
            if item_size(&candidate) <= FITTED_ITEM_BYTES {
                let mut fitted = self.clone();
                fitted.fitted = Some((kept, stored.len(), dropped_before + drop as u64));
                fitted.name("#history", attr::HISTORY);
                fitted.name("#dropped", attr::HISTORY_DROPPED);
                return Some(fitted);
            }
        }
        None
    }

    fn request(self, store: &DynamoRunStore, key: &RunKey) -> UpdateItemFluentBuilder {
        let mut sets: Vec<String> = self.sets.iter().map(|(p, _, v)| format!("{p} = {v}")).collect();
        let mut values = self.values;
        let mut condition = self.condition;
        match (self.fitted, self.events) {
            (Some((history, read_len, dropped)), _) => {
                sets.push("#history = :history".into());
                sets.push("#dropped = :dropped".into());
                values.push((":history".into(), AttributeValue::L(history)));
                values.push((":dropped".into(), n(dropped as usize)));
                condition = if read_len == 0 {
                    format!("{condition} AND (attribute_not_exists(#history) OR size(#history) = :history_len)")
                } else {
                    format!("{condition} AND size(#history) = :history_len")
                };
                values.push((":history_len".into(), n(read_len)));
            }
            (None, Some((placeholder, events))) => {
                sets.push(format!("#history = list_append(if_not_exists(#history, :empty), {placeholder})"));
                values.push((":empty".into(), AttributeValue::L(Vec::new())));
                values.push((placeholder, AttributeValue::L(events)));
            }
            (None, None) => {}
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !self.removes.is_empty() {
            let removes: Vec<&str> = self.removes.iter().map(|(p, _)| *p).collect();
            expression = format!("{expression} REMOVE {}", removes.join(", "));
        }
        let mut req = store
            .client
            .update_item()
            .table_name(&store.table)
            .key(attr::WORKFLOW_ARN, s(key.workflow_arn.as_str()))
            .key(attr::RUN_ID, s(&key.run_id))
            .update_expression(expression)
            .condition_expression(condition);
        for (placeholder, name) in self.names {
            req = req.expression_attribute_names(placeholder, name);
        }
        for (placeholder, value) in values {
            req = req.expression_attribute_values(placeholder, value);
        }
        req
    }
}

type UpdateResult = Result<UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>>;

/// Why a write did not get an answer from DynamoDB's `UpdateItem`.
enum WriteError {
    /// `UpdateItem` failed: its error (a failed condition among them).
    Update(Box<SdkError<UpdateItemError, HttpResponse>>),
    /// Reading the run for a fitted write failed.
    Read(UpstreamError),
    /// Even with no history the run does not fit the item size limit.
    TooLarge(String),
}

impl WriteError {
    /// The failed condition's item (`ALL_OLD`), if that is what happened;
    /// `Some(None)` for a condition that failed on no item.
    fn condition_failed(&self) -> Option<Option<HashMap<String, AttributeValue>>> {
        match self {
            WriteError::Update(err) => condition_failed(err),
            _ => None,
        }
    }

    fn into_store_error(self, key: &RunKey) -> StoreError {
        match self {
            WriteError::Update(err) => from_sdk("dynamodb", "UpdateItem", &*err).into(),
            WriteError::Read(u) => u.into(),
            WriteError::TooLarge(detail) => StoreError::Corrupt { key: key.to_string(), detail },
        }
    }
}

impl DynamoRunStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRunStore { client, table: table.into(), index: STOPPING_INDEX.to_owned() }
    }

    /// The same store reading stopping runs from another index name.
    pub fn with_stopping_index(mut self, index: impl Into<String>) -> Self {
        self.index = index.into();
        self
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
    fn stop_update(key: &RunKey, stop: &StopRequest) -> Update {
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
            .set("#stopping_shard", attr::STOPPING_SHARD, ":shard")
            .set("#stopping_since", attr::STOPPING_SINCE, ":now")
            .append_history(":event", vec![history_event("StopRequested", &stop.at, details)])
            .value(":shard", s(&stopping_shard(key)))
            .value(":stopping", s(RunStatus::Stopping.as_str()))
            .value(":now", s(&stop.at))
            .value(":by", s(&stop.by))
            .status_in(&RunStatus::STOPPABLE)
    }
}

impl DynamoRunStore {
    /// Send `update`; if DynamoDB refuses it as too large for its item, read
    /// the run and send it again fitted ([`Update::fit`]), as often as the
    /// history changed in between (three times at most).
    async fn write(
        &self,
        key: &RunKey,
        update: Update,
        options: impl Fn(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<UpdateItemOutput, WriteError> {
        let first: UpdateResult = options(update.clone().request(self, key)).send().await;
        let mut last = match first {
            Err(err) if is_item_too_large(&err) => err,
            other => return other.map_err(|e| WriteError::Update(Box::new(e))),
        };
        for attempt in 1..=3 {
            let Some(item) = self.read_item(key).await.map_err(WriteError::Read)? else {
                // Gone since: the plain write gives the plain answer.
                return options(update.request(self, key)).send().await.map_err(|e| WriteError::Update(Box::new(e)));
            };
            let Some(fitted) = update.fit(&item) else {
                tracing::error!(item = %key, size = item_size(&item), "run does not fit DynamoDB's item size limit even without history");
                return Err(WriteError::TooLarge(format!(
                    "about {} bytes without its history: over DynamoDB's item size limit",
                    item_size(&item)
                )));
            };
            let read_len = fitted.fitted.as_ref().map_or(0, |f| f.1);
            tracing::warn!(
                item = %key,
                attempt,
                size = item_size(&item),
                dropped = fitted.fitted.as_ref().map_or(0, |f| f.2),
                "write over DynamoDB's item size limit: sent again with the oldest history events dropped"
            );
            let result = options(fitted.request(self, key))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(out) => return Ok(out),
                Err(err) => {
                    // A history that grew since the read fails the fitted
                    // condition: fit again. Any other failure is the answer.
                    let grew = condition_failed(&err).flatten().is_some_and(
                        |found| !matches!(found.get(attr::HISTORY), Some(AttributeValue::L(h)) if h.len() == read_len),
                    );
                    if !grew {
                        return Err(WriteError::Update(Box::new(err)));
                    }
                    last = err;
                }
            }
        }
        Err(WriteError::Update(Box::new(last)))
    }

    async fn read_item(&self, key: &RunKey) -> Result<Option<HashMap<String, AttributeValue>>, UpstreamError> {
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
        Ok(out.item.filter(|item| !item.is_empty()))
    }
}

/// Did the write fail on its condition? With `ALL_OLD`, the item found (an
/// empty one means no item).
fn condition_failed(err: &SdkError<UpdateItemError, HttpResponse>) -> Option<Option<HashMap<String, AttributeValue>>> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(ccf)) => {
            Some(ccf.item.clone().filter(|item| !item.is_empty()))
        }
        _ => None,
    }
}

impl RunStore for DynamoRunStore {
    async fn request_stop(&self, key: &RunKey, stop: &StopRequest) -> Result<StopWrite, StoreError> {
        let result = self
            .write(key, DynamoRunStore::stop_update(key, stop), |req| {
                req.return_values(ReturnValue::AllNew)
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| StoreError::Corrupt {
                    key: key.to_string(),
                    detail: "UpdateItem with ALL_NEW returned no attributes".into(),
                })?;
                Ok(StopWrite::Transitioned(run_record(key, item)?))
            }
            Err(err) => match err.condition_failed() {
                Some(Some(item)) => Ok(StopWrite::NotStoppable(run_record(key, item)?)),
                Some(None) => Ok(StopWrite::NotFound),
                None => Err(err.into_store_error(key)),
            },
        }
    }

    async fn get_run(&self, key: &RunKey) -> Result<Option<RunRecord>, StoreError> {
        match self.read_item(key).await? {
            Some(item) => Ok(Some(run_record(key, item)?)),
            None => Ok(None),
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
        vec![
            ("WorkersStopped", n(w.workers_stopped)),
            ("OrphansStopped", n(w.orphans_stopped)),
            ("FinalizedBy", s(w.finalized_by.as_str())),
        ],
    ));
    events
}

impl FinalizerStore for DynamoRunStore {
    async fn finalize_stop(&self, key: &RunKey, w: &StoppedWrite) -> Result<FinalizeWrite, StoreError> {
        let update = Update::new()
            .set("#status", attr::STATUS, ":stopped")
            .set("#completed", attr::COMPLETED_ON, ":now")
            .set("#modified", attr::MODIFIED_AT, ":now")
            .set("#workers", attr::WORKERS, ":no_workers")
            .remove("#stopping_shard", attr::STOPPING_SHARD)
            .remove("#stopping_since", attr::STOPPING_SINCE)
            .append_history(":events", stopped_events(w))
            .value(":stopped", s(RunStatus::Stopped.as_str()))
            .value(":now", s(&w.at))
            .value(":no_workers", AttributeValue::M(HashMap::new()))
            .status_in(&[RunStatus::Stopping]);
        match self.write(key, update, |req| req).await {
            Ok(_) => Ok(FinalizeWrite::Stopped),
            Err(err) if err.condition_failed().is_some() => Ok(FinalizeWrite::NotStopping),
            Err(err) => Err(err.into_store_error(key)),
        }
    }

    async fn request_cancel(&self, key: &RunKey, by: &str, at: &str) -> Result<CancelWrite, StoreError> {
        let update = Update::new()
            .set("#cancel", attr::CANCEL_REQUESTED, ":true")
            .set("#modified", attr::MODIFIED_AT, ":now")
            .append_history(":event", vec![history_event("CancelRequested", at, vec![("By", s(by))])])
            .value(":true", AttributeValue::Bool(true))
            .value(":false", AttributeValue::Bool(false))
            .value(":now", s(at))
            .status_in(&RunStatus::STOPPABLE)
            .and("(attribute_not_exists(#cancel) OR #cancel = :false)", &[]);
        let result = self
            .write(key, update, |req| {
                req.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .await;
        match result {
            Ok(_) => Ok(CancelWrite::Requested),
            Err(err) => match err.condition_failed() {
                Some(Some(_)) => Ok(CancelWrite::NotActive),
                Some(None) => Ok(CancelWrite::NotFound),
                None => Err(err.into_store_error(key)),
            },
        }
    }
}

impl ReconcilerStore for DynamoRunStore {
    /// Every shard of the sparse index, every page, oldest first per shard.
    async fn stopping_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        let mut runs = Vec::new();
        for shard in 0..STOPPING_SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(&self.index)
                .key_condition_expression("#shard = :shard")
                .expression_attribute_names("#shard", attr::STOPPING_SHARD)
                .expression_attribute_values(":shard", s(&shard.to_string()))
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(|err| from_sdk("dynamodb", "Query", &err))?;
                let text = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(v)) => v.clone(),
                    _ => String::new(),
                };
                runs.push(StoppingRun {
                    workflow_arn: text(attr::WORKFLOW_ARN),
                    run_id: text(attr::RUN_ID),
                    since: text(attr::STOPPING_SINCE),
                });
            }
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WorkflowArn;

    fn key() -> RunKey {
        RunKey {
            workflow_arn: WorkflowArn::parse("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/a-0123456789")
                .unwrap(),
            run_id: "r".into(),
        }
    }

    fn stop() -> StopRequest {
        StopRequest { at: "2026-11-21T10:00:00.000Z".into(), by: "b".into(), request_id: "r".into(), source_ip: None }
    }

    #[test]
    fn conditions_come_from_the_domain_lists() {
        let u = DynamoRunStore::stop_update(&key(), &stop());
        assert_eq!(u.condition, "#status IN (:starting, :queued, :running)");
        for st in RunStatus::STOPPABLE {
            let p = status_placeholder(st);
            assert!(u.values.iter().any(|(k, v)| *k == p && *v == s(st.as_str())), "{p} bound");
        }
        assert_eq!(Update::new().status_in(&[RunStatus::Stopping]).condition, "#status = :stopping");
    }

    /// An item of `events` history events of about 1 KB each, and `workers` workers.
    fn big_item(events: usize, workers: usize) -> HashMap<String, AttributeValue> {
        let event = history_event("Heartbeat", "2026-11-21T10:00:00.000Z", vec![("Note", s(&"x".repeat(1000)))]);
        HashMap::from([
            (attr::WORKFLOW_ARN.to_owned(), s(key().workflow_arn.as_str())),
            (attr::RUN_ID.to_owned(), s("r")),
            (attr::STATUS.to_owned(), s("RUNNING")),
            (attr::HISTORY.to_owned(), AttributeValue::L(vec![event; events])),
            (
                attr::WORKERS.to_owned(),
                AttributeValue::M(
                    (0..workers).map(|i| (format!("arn:aws:ecs:us-east-1:1:task/c/{i:032}"), s("c"))).collect(),
                ),
            ),
        ])
    }

    #[test]
    fn a_fitted_stop_drops_the_oldest_events_counts_them_and_keeps_its_own() {
        let item = big_item(400, 0);
        assert!(item_size(&item) > FITTED_ITEM_BYTES);
        let fitted = DynamoRunStore::stop_update(&key(), &stop()).fit(&item).expect("fits");
        let (history, read_len, dropped) = fitted.fitted.clone().unwrap();
        assert_eq!(read_len, 400);
        assert_eq!(history.len() as u64 + dropped, 401, "every event kept or counted");
        let last = history.last().unwrap().as_m().unwrap();
        assert_eq!(last["Event"], s("StopRequested"), "the stop's own event is the newest, kept");
        let req = fitted.request(&DynamoRunStore::new(client(), "T"), &key());
        let expr = req.get_update_expression().clone().unwrap();
        assert!(expr.contains("#history = :history") && expr.contains("#dropped = :dropped"), "{expr}");
        assert!(req.get_condition_expression().clone().unwrap().ends_with("AND size(#history) = :history_len"));
    }

    #[test]
    fn a_run_that_cannot_fit_even_without_history_is_refused_not_guessed() {
        // ~12,000 workers of ~50 bytes: over the limit with no history at all.
        assert!(DynamoRunStore::stop_update(&key(), &stop()).fit(&big_item(0, 12_000)).is_none());
        // The STOPPED write empties Workers, so it fits.
        let finalize = Update::new()
            .set("#workers", attr::WORKERS, ":no_workers")
            .value(":no_workers", AttributeValue::M(HashMap::new()))
            .status_in(&[RunStatus::Stopping]);
        assert!(finalize.fit(&big_item(0, 12_000)).is_some());
    }

    fn client() -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }
}
