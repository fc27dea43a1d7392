//! The one stream reader ([`StreamTail`]: moto's DynamoDB stream as the
//! events Lambda's DynamoDB event source delivers) and the one delivery loop
//! ([`deliver`]), which follows Lambda's retry rule for
//! `ReportBatchItemFailures` the way the local stream mapping
//! (`localdev.stream_mapper`) does: redeliver from the lowest failed
//! sequence number, up to `max_retries` times, then the rest goes to the
//! failure destination.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use mwaa_stop::domain::RunKey;
use mwaa_stop::finalize::Finalizer;
use mwaa_stop::lambda::stream::handle_batch;
use mwaa_stop::ports::{FinalizerStore, WorkerFleet};
use serde_json::{json, Value};

use super::REGION;

/// Reads new records of a DynamoDB stream, shard by shard, from its start.
pub struct StreamTail {
    pub stream_arn: String,
    /// shard id → next iterator (None once the shard is closed)
    iterators: HashMap<String, Option<String>>,
}

impl StreamTail {
    pub fn new(stream_arn: String) -> Self {
        StreamTail { stream_arn, iterators: HashMap::new() }
    }

    /// Every record written since the last call, as a Lambda DynamoDB event.
    pub async fn next_event(&mut self, streams: &aws_sdk_dynamodbstreams::Client) -> (Event, usize) {
        let desc = streams.describe_stream().stream_arn(&self.stream_arn).send().await.unwrap();
        for shard in desc.stream_description().unwrap().shards() {
            let id = shard.shard_id().unwrap().to_owned();
            if !self.iterators.contains_key(&id) {
                let it = streams
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(&id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .unwrap()
                    .shard_iterator;
                self.iterators.insert(id, it);
            }
        }
        let mut records = Vec::new();
        for it in self.iterators.values_mut() {
            let Some(current) = it.clone() else { continue };
            let out = streams.get_records().shard_iterator(current).send().await.unwrap();
            for r in out.records() {
                records.push(lambda_record(r, &self.stream_arn));
            }
            *it = out.next_shard_iterator;
        }
        let n = records.len();
        (serde_json::from_value(json!({ "Records": records })).unwrap(), n)
    }

    /// Everything left in the stream, as one event.
    pub async fn rest(&mut self, streams: &aws_sdk_dynamodbstreams::Client) -> Event {
        let mut all: Event = serde_json::from_value(json!({ "Records": [] })).unwrap();
        loop {
            let (event, n) = self.next_event(streams).await;
            if n == 0 {
                return all;
            }
            all.records.extend(event.records);
        }
    }
}

fn image(m: Option<&HashMap<String, AttributeValue>>) -> Value {
    match m {
        Some(m) => serde_json::to_value(serde_dynamo::Item::from(m.clone())).unwrap(),
        None => json!({}),
    }
}

/// One stream record in Lambda's event format.
pub fn lambda_record(r: &Record, stream_arn: &str) -> Value {
    let d = r.dynamodb().unwrap();
    json!({
        "eventID": r.event_id(), "eventName": r.event_name().unwrap().as_str(), "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": REGION, "eventSourceARN": stream_arn,
        "dynamodb": {
            "ApproximateCreationDateTime": d.approximate_creation_date_time().map(|t| t.secs()).unwrap_or(0),
            "Keys": image(d.keys.as_ref()), "NewImage": image(d.new_image.as_ref()), "OldImage": image(d.old_image.as_ref()),
            "SequenceNumber": d.sequence_number(), "SizeBytes": d.size_bytes().unwrap_or(0),
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

/// A copy of an event (the event types are not `Clone`).
pub fn copy(event: &Event) -> Event {
    serde_json::from_value(serde_json::to_value(event).unwrap()).unwrap()
}

/// What [`deliver`] did.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Records read from the stream and delivered.
    pub records: usize,
    /// Redeliveries after a batch reported failures.
    pub retries: usize,
    /// Sequence numbers that went to the failure destination.
    pub failed_to_destination: Vec<String>,
}

/// Deliver the stream to the finalizer until it is quiet, batch by batch,
/// with Lambda's retry rule (see the module docs).
pub async fn deliver<S: FinalizerStore, W: WorkerFleet>(
    streams: &aws_sdk_dynamodbstreams::Client,
    tail: &mut StreamTail,
    finalizer: &Finalizer<S, W>,
    max_retries: usize,
) -> Delivery {
    deliver_to(streams, tail, max_retries, |event| handle_batch(finalizer, event, None)).await
}

/// The same delivery loop, to any stream consumer (the finalizer, the
/// run-events publisher): `handler` gets each batch, and its partial batch
/// response decides what is delivered again.
pub async fn deliver_to<F, Fut>(
    streams: &aws_sdk_dynamodbstreams::Client,
    tail: &mut StreamTail,
    max_retries: usize,
    mut handler: F,
) -> Delivery
where
    F: FnMut(Event) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::event::streams::DynamoDbEventResponse>,
{
    let mut delivery = Delivery::default();
    for _ in 0..20 {
        let (event, n) = tail.next_event(streams).await;
        if n == 0 {
            return delivery;
        }
        delivery.records += n;
        let mut pending = event;
        let mut attempt = 0;
        loop {
            let resp = handler(copy(&pending)).await;
            let failed: Vec<String> =
                resp.batch_item_failures.iter().filter_map(|f| f.item_identifier.clone()).collect();
            if failed.is_empty() {
                break;
            }
            let start = pending
                .records
                .iter()
                .position(|r| r.change.sequence_number.as_ref().is_some_and(|s| failed.contains(s)))
                .unwrap_or(0);
            pending.records.drain(..start);
            if attempt >= max_retries {
                delivery
                    .failed_to_destination
                    .extend(pending.records.iter().filter_map(|r| r.change.sequence_number.clone()));
                break;
            }
            attempt += 1;
            delivery.retries += 1;
        }
    }
    panic!("the stream did not go quiet")
}

/// A `MODIFY` record of run `k` (`RUNNING` → `new_status`) as Lambda
/// delivers it, with sequence number `seq`.
pub fn stream_record(k: &RunKey, new_status: &str, seq: &str) -> serde_json::Value {
    json!({
        "eventID": format!("ev-{seq}"), "eventName": "MODIFY", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795255200,
            "Keys": {"WorkflowArn": {"S": k.workflow_arn.to_string()}, "RunId": {"S": k.run_id}},
            "NewImage": {"WorkflowArn": {"S": k.workflow_arn.to_string()}, "RunId": {"S": k.run_id}, "Status": {"S": new_status}},
            "OldImage": {"WorkflowArn": {"S": k.workflow_arn.to_string()}, "RunId": {"S": k.run_id}, "Status": {"S": "RUNNING"}},
            "SequenceNumber": seq, "SizeBytes": 100, "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/WorkflowRuns/stream/2026-11-21T00:00:00.000"
    })
}

pub fn stream_batch(records: Vec<serde_json::Value>) -> Event {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}
