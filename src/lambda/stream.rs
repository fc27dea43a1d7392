//! The stream function's edge: a DynamoDB stream batch of the run table in,
//! a partial batch response out (`ReportBatchItemFailures`).
//!
//! Records are decoded here ([`classify`]); the runs they name are finalized
//! by [`Finalizer`], each once however many of its records the batch holds.
//! A run that cannot be finished now is reported by its first record's
//! sequence number, so the stream retries from there; a record that cannot
//! be read is reported too, so it ends in the failure destination rather
//! than vanishing.

use std::collections::HashSet;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde::Deserialize;
use tokio::time::Instant;

use crate::domain::{check_run_id, RunKey, RunStatus, WorkflowArn};
use crate::finalize::{Finalizer, RunOutcome};
use crate::ports::{FinalizedBy, FinalizerStore, WorkerFleet};

/// The keys of a stream record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamKeys {
    workflow_arn: String,
    run_id: String,
}

/// The status in a record's new image: all the finalizer reads from it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamStatus {
    #[serde(default)]
    status: Option<StatusValue>,
}

/// A `Status` of any type: one that is not a string is not `STOPPING`, so
/// its record is none of the finalizer's business (a scheduler's type slip
/// is not a poison record that would take the records after it to the
/// failure destination).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusValue {
    Text(String),
    Other(serde::de::IgnoredAny),
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
        Ok(StreamStatus { status: Some(StatusValue::Text(s)) }) if s == RunStatus::Stopping.as_str() => {}
        Ok(_) => return RecordIntent::Ignore,
        Err(e) => return RecordIntent::Poison(format!("new image unreadable: {e}")),
    }
    let keys: StreamKeys = match serde_dynamo::from_item(record.change.keys.clone()) {
        Ok(k) => k,
        Err(e) => return RecordIntent::Poison(format!("keys unreadable: {e}")),
    };
    match WorkflowArn::parse(&keys.workflow_arn) {
        Ok(workflow_arn) if check_run_id(&keys.run_id).is_none() => {
            RecordIntent::Finalize(RunKey { workflow_arn, run_id: keys.run_id })
        }
        _ => RecordIntent::Poison(format!("invalid run key {}/{}", keys.workflow_arn, keys.run_id)),
    }
}

/// One stream batch: every `STOPPING` run it names finalized concurrently,
/// the ones not finished (and poison records) reported as batch item failures.
pub async fn handle_batch<S: FinalizerStore, W: WorkerFleet>(
    finalizer: &Finalizer<S, W>,
    event: Event,
    deadline: Option<Instant>,
) -> DynamoDbEventResponse {
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
    for (_, seq, result) in finalizer.finalize_runs(runs, deadline, FinalizedBy::Stream).await {
        if !matches!(result, Ok(RunOutcome::Stopped { .. } | RunOutcome::Skipped { .. })) {
            failures.push(seq);
        }
    }
    batch_response(failures)
}

/// The partial batch response reporting `failures` (sequence numbers): the
/// stream delivers again from the first of them.
pub(crate) fn batch_response(failures: Vec<String>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for seq in failures {
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = Some(seq);
        response.batch_item_failures.push(f);
    }
    response
}
