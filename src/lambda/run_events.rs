//! The run-events function's edge: a DynamoDB stream batch of the run table
//! in, one bus event per status transition out (`crate::run_events`), a
//! partial batch response back.
//!
//! Every record whose new image has another status than its old image (or a
//! new item's first status) is a transition, whoever wrote it: the API, the
//! finalizer, the reconciler or a scheduler. A write that changes no status
//! publishes nothing. The images are read leniently: a field of the wrong
//! type is left out of the event; a record without a readable key or status
//! is skipped and logged, never a crash. An event the bus did not take is
//! reported by its record's sequence number, so the stream delivers it
//! again (with the records after it: consumers drop duplicates by
//! `transitionId`).

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use serde_dynamo::AttributeValue;

use super::stream::batch_response;

use crate::domain::RunStatus;
use crate::metrics::{self, Unit};
use crate::ports::{BusEvent, EventPublisher};
use crate::run_events::{bus_event, RunTransition};

fn text(image: &serde_dynamo::Item, name: &str) -> Option<String> {
    match image.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The last `Stopped` event of the history: how the run was finalized.
fn stopped_event(image: &serde_dynamo::Item) -> Option<&std::collections::HashMap<String, AttributeValue>> {
    let Some(AttributeValue::L(events)) = image.get("History") else { return None };
    events.iter().rev().find_map(|e| match e {
        AttributeValue::M(m) if matches!(m.get("Event"), Some(AttributeValue::S(n)) if n == "Stopped") => Some(m),
        _ => None,
    })
}

/// The transition a record carries, if any: `None` for a removal, a write
/// that changed no status, or a status none of the model's eight.
pub fn transition(record: &EventRecord) -> Option<RunTransition> {
    if record.event_name == "REMOVE" {
        return None;
    }
    let new = &record.change.new_image;
    let status = text(new, "Status")?;
    let previous = text(&record.change.old_image, "Status");
    if previous.as_deref() == Some(status.as_str()) {
        return None;
    }
    let Ok(status) = status.parse::<RunStatus>() else {
        tracing::warn!(status, keys = ?record.change.keys, "a status none of the model's eight: no run event");
        return None;
    };
    let (workflow_arn, run_id) = (text(&record.change.keys, "WorkflowArn")?, text(&record.change.keys, "RunId")?);
    let stopped = stopped_event(new);
    let unconfirmed = match new.get("UnconfirmedWorkers") {
        Some(AttributeValue::M(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    Some(RunTransition {
        workflow_arn,
        run_id,
        workflow_version: text(new, "WorkflowVersion"),
        status: Some(status),
        previous_status: previous,
        modified_at: text(new, "ModifiedAt"),
        stop_requested_by: text(new, "StopRequestedBy"),
        stop_requested_at: text(new, "StopRequestedAt"),
        finalized_by: stopped.and_then(|m| match m.get("FinalizedBy") {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        }),
        workers_stopped: stopped.and_then(|m| match m.get("WorkersStopped") {
            Some(AttributeValue::N(n)) => n.parse().ok(),
            _ => None,
        }),
        unconfirmed_workers: unconfirmed,
        transition_id: record.event_id.clone(),
    })
}

/// One stream batch: the events of its transitions published in order; the
/// records of events the bus did not take reported as batch item failures.
pub async fn handle_batch<P: EventPublisher>(publisher: &P, event: Event) -> DynamoDbEventResponse {
    let mut events: Vec<BusEvent> = Vec::new();
    let mut sequence: Vec<String> = Vec::new();
    let mut skipped = 0usize;
    for record in &event.records {
        let Some(t) = transition(record) else { continue };
        match bus_event(&t) {
            Some(e) => {
                events.push(e);
                sequence.push(record.change.sequence_number.clone().unwrap_or_default());
            }
            None => skipped += 1,
        }
    }
    let mut failures = Vec::new();
    if !events.is_empty() {
        let results = match publisher.publish(&events).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "PutEvents failed; the batch's events are sent again");
                events.iter().map(|_| Some(e.detail.clone())).collect()
            }
        };
        for ((seq, e), result) in sequence.iter().zip(&events).zip(&results) {
            if let Some(why) = result {
                tracing::warn!(sequence_number = %seq, detail_type = e.detail_type, why, "run event not published; to be sent again");
                failures.push(seq.clone());
            }
        }
    }
    let published = events.len() - failures.len();
    metrics::emit(
        &[
            ("RunEventsPublished", Unit::Count, published as f64),
            ("RunEventsFailed", Unit::Count, failures.len() as f64),
            ("RunEventsSkipped", Unit::Count, skipped as f64),
        ],
        &[],
    );
    batch_response(failures)
}
