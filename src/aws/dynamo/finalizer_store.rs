//! The finalizer's port: `STOPPING` → `STOPPED`, and a child's cancel request.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use super::update::Update;
use super::{attr, history_event, n, s, watch_shard, DynamoRunStore};
use crate::aws::upstream::{from_sdk, is_item_too_large, is_validation};
use crate::domain::{stopping_shard, RunKey, RunStatus};
use crate::ports::{CancelWrite, FinalizeWrite, FinalizerStore, StoppedWrite, StoreError, WatchWrite};

/// The events the `STOPPED` write appends.
fn stopped_events(w: &StoppedWrite) -> Vec<AttributeValue> {
    let mut events = Vec::new();
    if let Some(c) = &w.child_policy {
        let mut details = vec![
            ("Policy", s(c.policy.as_str())),
            ("Children", n(c.children)),
            ("Affected", n(c.affected)),
            ("Skipped", n(c.skipped)),
        ];
        if !c.skipped_children.is_empty() {
            let listed = c
                .skipped_children
                .iter()
                .map(|k| {
                    AttributeValue::M(HashMap::from([
                        ("WorkflowArn".to_owned(), s(&k.workflow_arn)),
                        ("RunId".to_owned(), s(&k.run_id)),
                        ("Reason".to_owned(), s(&k.reason)),
                    ]))
                })
                .collect();
            details.push(("SkippedChildren", AttributeValue::L(listed)));
        }
        events.push(history_event("ChildPolicyApplied", &w.at, details));
    }
    let mut details = vec![
        ("WorkersStopped", n(w.workers_stopped)),
        ("OrphansStopped", n(w.orphans_stopped)),
        ("FinalizedBy", s(w.finalized_by.as_str())),
    ];
    if !w.unconfirmed.is_empty() {
        details.push(("UnconfirmedWorkers", task_list(w.unconfirmed.keys())));
        details.push(("UnconfirmedCount", n(w.unconfirmed.len())));
    }
    events.push(history_event("Stopped", &w.at, details));
    events
}

/// Task ARNs as an L of S, at most [`EVENT_TASKS_MAX`] (the event's count
/// says how many there were).
fn task_list<'a>(tasks: impl Iterator<Item = &'a String>) -> AttributeValue {
    AttributeValue::L(tasks.take(EVENT_TASKS_MAX).map(|t| s(t)).collect())
}

/// The most task ARNs one history event names.
const EVENT_TASKS_MAX: usize = 20;

/// A task → cluster map as stored (`Workers`, `UnconfirmedWorkers`).
fn task_map(tasks: &BTreeMap<String, String>) -> AttributeValue {
    AttributeValue::M(tasks.iter().map(|(t, c)| (t.clone(), s(c))).collect())
}

impl FinalizerStore for DynamoRunStore {
    async fn finalize_stop(&self, key: &RunKey, w: &StoppedWrite) -> Result<FinalizeWrite, StoreError> {
        let mut update = Update::new()
            .set("#status", attr::STATUS, ":stopped")
            .set("#completed", attr::COMPLETED_ON, ":now")
            .set("#modified", attr::MODIFIED_AT, ":now")
            .set("#workers", attr::WORKERS, ":no_workers");
        // A watched run stays in the index, in its watch partition; the
        // reconciler follows it up (`StoppingSince` stays `StopRequestedAt`).
        update = if w.watch {
            update
                .set("#stopping_shard", attr::STOPPING_SHARD, ":watch_shard")
                .set("#unconfirmed", attr::UNCONFIRMED_WORKERS, ":unconfirmed")
                .value(":watch_shard", s(&watch_shard(&stopping_shard(key))))
                .value(":unconfirmed", task_map(&w.unconfirmed))
        } else {
            update.remove("#stopping_shard", attr::STOPPING_SHARD).remove("#stopping_since", attr::STOPPING_SINCE)
        };
        if let Some(message) = w.unconfirmed_message() {
            update = update.set("#error", attr::ERROR_MESSAGE, ":error").value(":error", s(&message));
        }
        let update = update
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
            .value(":now", s(at))
            .status_in(&RunStatus::STOPPABLE)
            .unless_cancel_requested();
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

    /// One `UpdateItem` conditioned on `STOPPED`: confirmed workers leave
    /// `UnconfirmedWorkers`, late finds join it, each with a history event;
    /// the end of the watch removes the map and the index keys, conditioned
    /// on the map being the size read. Small by construction (a few entries
    /// and events), so it is not fitted to the item size limit: if DynamoDB
    /// refuses it as too large, or as invalid because `History` is not a
    /// list, it is sent again without its events (logged), so the watch
    /// still ends; any other refusal is an error and the next pass tries
    /// again.
    async fn update_watch(&self, key: &RunKey, w: &WatchWrite) -> Result<bool, StoreError> {
        let mut events = Vec::new();
        if !w.found.is_empty() {
            events.push(history_event(
                "LateWorkersFound",
                &w.at,
                vec![("Workers", task_list(w.found.keys())), ("Count", n(w.found.len()))],
            ));
        }
        if !w.confirmed.is_empty() {
            events.push(history_event(
                "WorkersConfirmed",
                &w.at,
                vec![("Workers", task_list(w.confirmed.iter())), ("Count", n(w.confirmed.len()))],
            ));
        }
        match self.send_watch(key, w, &events).await {
            Err(err) if !events.is_empty() && (is_item_too_large(&err) || is_validation(&err)) => {
                tracing::error!(item = %key, events = ?events, "the watch's history events cannot be appended (item size limit, or a History that is not a list): written without them");
                self.send_watch(key, w, &[]).await.map_or_else(watch_answer, |_| Ok(true))
            }
            result => result.map_or_else(watch_answer, |_| Ok(true)),
        }
    }
}

/// A watch write's failure: a failed condition is `false` (the run changed
/// since it was read), anything else an error.
fn watch_answer(err: SdkError<UpdateItemError, HttpResponse>) -> Result<bool, StoreError> {
    if err.as_service_error().is_some_and(UpdateItemError::is_conditional_check_failed_exception) {
        Ok(false)
    } else {
        Err(from_sdk("dynamodb", "UpdateItem", &err).into())
    }
}

impl DynamoRunStore {
    /// The watch's one `UpdateItem`, appending `events` to the history.
    async fn send_watch(
        &self,
        key: &RunKey,
        w: &WatchWrite,
        events: &[AttributeValue],
    ) -> Result<UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>> {
        let mut names: Vec<(String, &str)> = vec![
            ("#status".into(), attr::STATUS),
            ("#modified".into(), attr::MODIFIED_AT),
            ("#u".into(), attr::UNCONFIRMED_WORKERS),
        ];
        let mut values: Vec<(String, AttributeValue)> =
            vec![(":stopped".into(), s(RunStatus::Stopped.as_str())), (":now".into(), s(&w.at))];
        let mut sets = vec!["#modified = :now".to_owned()];
        if !events.is_empty() {
            names.push(("#history".into(), attr::HISTORY));
            sets.push("#history = list_append(if_not_exists(#history, :empty), :events)".into());
            values.push((":empty".into(), AttributeValue::L(Vec::new())));
            values.push((":events".into(), AttributeValue::L(events.to_vec())));
        }
        let mut removes = Vec::new();
        let mut condition = "#status = :stopped".to_owned();
        if w.end_watch {
            removes.extend(["#u".to_owned(), "#shard".into(), "#since".into()]);
            names.push(("#shard".into(), attr::STOPPING_SHARD));
            names.push(("#since".into(), attr::STOPPING_SINCE));
            values.push((":read_len".into(), n(w.read_len)));
            condition = if w.read_len == 0 {
                format!("{condition} AND (attribute_not_exists(#u) OR size(#u) = :read_len)")
            } else {
                format!("{condition} AND size(#u) = :read_len")
            };
        } else {
            let confirmed: std::collections::BTreeSet<&String> = w.confirmed.iter().collect();
            let mut i = 0;
            for task in w.confirmed.iter().filter(|t| !w.found.contains_key(*t)) {
                names.push((format!("#t{i}"), task));
                removes.push(format!("#u.#t{i}"));
                i += 1;
            }
            for (task, cluster) in w.found.iter().filter(|(t, _)| !confirmed.contains(t)) {
                names.push((format!("#t{i}"), task));
                values.push((format!(":c{i}"), s(cluster)));
                sets.push(format!("#u.#t{i} = :c{i}"));
                i += 1;
            }
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression = format!("{expression} REMOVE {}", removes.join(", "));
        }
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::WORKFLOW_ARN, s(key.workflow_arn.as_str()))
            .key(attr::RUN_ID, s(&key.run_id))
            .update_expression(expression)
            .condition_expression(condition);
        for (placeholder, name) in names {
            req = req.expression_attribute_names(placeholder, name);
        }
        for (placeholder, value) in values {
            req = req.expression_attribute_values(placeholder, value);
        }
        req.send().await
    }
}
