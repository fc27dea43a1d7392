//! The finalizer's port: `STOPPING` → `STOPPED`, and a child's cancel request.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::update::Update;
use super::{attr, history_event, n, s, DynamoRunStore};
use crate::domain::{RunKey, RunStatus};
use crate::ports::{CancelWrite, FinalizeWrite, FinalizerStore, StoppedWrite, StoreError};

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
}
