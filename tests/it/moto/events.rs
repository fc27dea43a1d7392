//! Run events on EventBridge (issue 19 part 2), against moto through the
//! real SDKs: the table's stream delivered to the run-events handler, which
//! publishes to moto's `default` bus; a rule on the bus feeds an SQS queue,
//! which the tests read as a consumer would.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mwaa_stop::aws::EventBridgePublisher;
use mwaa_stop::lambda::http::AuthMode;
use mwaa_stop::lambda::run_events::handle_batch;
use serde_json::Value;

use crate::kit::proxy::{Action, Proxy, Rule, When};
use crate::kit::*;

/// A queue fed by a rule on the default bus matching the stack's source.
async fn subscribe(world: &World, source: &str) -> (aws_sdk_sqs::Client, String) {
    let conf = sdk_config_for(&world.moto.url).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let events = aws_sdk_eventbridge::Client::new(&conf);
    let url = sqs.create_queue().queue_name("run-events").send().await.unwrap().queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("run-events")
        .event_pattern(serde_json::json!({"source": [source]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("run-events")
        .targets(aws_sdk_eventbridge::types::Target::builder().id("queue").arn(arn).build().unwrap())
        .send()
        .await
        .unwrap();
    (sqs, url)
}

/// Every event the queue holds, as EventBridge delivered them.
async fn received(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let out = sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return all;
        }
        for m in messages {
            all.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }
}

/// (detail-type, previousStatus → status) of each event, in order.
fn transitions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let d = &e["detail"];
            (
                e["detail-type"].as_str().unwrap().to_owned(),
                format!("{} -> {}", d["previousStatus"].as_str().unwrap_or("-"), d["status"].as_str().unwrap()),
            )
        })
        .collect()
}

/// Every transition of a stopped run, whoever wrote it (the scheduler's
/// insert, the API's STOPPING, the finalizer's STOPPED), is one event with
/// the real service's detail-type, the run's ARN as its resource, and the
/// stop's who and when; writes that change no status publish nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_of_a_stop_is_one_event_on_the_bus() {
    let world = World::new().await;
    let (sqs, queue) = subscribe(&world, "mwaa-stop").await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    world.set(&arn, "run-1", "Note", s("a write that changes no status")).await;
    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!(reply.json["Status"], "STOPPING");
    drain_stream(&world, &mut world.tail().await, &finalizer).await;

    let publisher = EventBridgePublisher::from_conf(&sdk_config_for(&world.moto.url).await, "default", "mwaa-stop");
    let mut tail = world.tail().await;
    let delivery = deliver_to(&world.streams, &mut tail, 0, |event| handle_batch(&publisher, event)).await;
    assert!(delivery.failed_to_destination.is_empty() && delivery.retries == 0, "{delivery:?}");

    let events = received(&sqs, &queue).await;
    assert_eq!(
        transitions(&events),
        [
            ("MWAA Serverless Workflow Run Running".to_owned(), "- -> RUNNING".to_owned()),
            ("MWAA Serverless Workflow Run Stopping".to_owned(), "RUNNING -> STOPPING".to_owned()),
            ("MWAA Serverless Workflow Run Stopped".to_owned(), "STOPPING -> STOPPED".to_owned()),
        ]
    );
    for e in &events {
        assert_eq!(e["source"], "mwaa-stop");
        assert_eq!(e["resources"], serde_json::json!([arn]));
        assert_eq!(e["detail"]["workflowArn"], arn.as_str());
        assert_eq!(e["detail"]["runId"], "run-1");
        assert_eq!(e["detail"]["workflowVersion"], "v3");
    }
    let (stopping, stopped) = (&events[1]["detail"], &events[2]["detail"]);
    assert_eq!(stopping["stopRequestedBy"], ALICE);
    assert!(stopping["stopRequestedAt"].is_string() && stopping["finalizedBy"].is_null());
    assert_eq!((stopped["stopRequestedBy"].as_str(), stopped["finalizedBy"].as_str()), (Some(ALICE), Some("stream")));
    assert_eq!(stopped["workersStopped"], 2);
    let ids: BTreeSet<&str> = events.iter().map(|e| e["detail"]["transitionId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "one key per transition");
}

/// At least once: `PutEvents` failing (here beyond the SDK's own retries)
/// leaves the events unpublished, their records are reported as batch item
/// failures, and the stream's redelivery publishes them. A consumer sees
/// each transition at least once, duplicates carrying the same
/// `transitionId`. A finalizer racing the reconciler makes one transition,
/// hence one `Stopped` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_events_is_delivered_again_and_a_race_is_still_one_event() {
    let world = World::new().await;
    let (sqs, queue) = subscribe(&world, "mwaa-stop").await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    // The stream finalizer and the reconciler at once.
    let stream_side = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let reconciler = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    let (_, report) =
        tokio::join!(drain_stream(&world, &mut tail, &stream_side), reconciler.reconcile(Duration::ZERO, None));
    report.unwrap();
    assert_eq!(world.get_item(&arn, "run-1").await.unwrap()["Status"].as_s().unwrap(), "STOPPED");

    let bus =
        Proxy::with_rules(&world.moto.url, vec![Rule::new("PutEvents", When::FirstN(4), Action::ServerError)]).await;
    let publisher = EventBridgePublisher::from_conf(&sdk_config_for(&bus.url).await, "default", "mwaa-stop");
    let mut tail = world.tail().await;
    let delivery = deliver_to(&world.streams, &mut tail, 5, |event| handle_batch(&publisher, event)).await;
    assert!(delivery.retries >= 1, "the failed batch was delivered again: {delivery:?}");
    assert!(delivery.failed_to_destination.is_empty(), "{delivery:?}");
    assert!(bus.count("PutEvents:injected-500") == 4, "{:?}", bus.log());

    let events = received(&sqs, &queue).await;
    let mut per_transition: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in transitions(&events) {
        *per_transition.entry(t).or_default() += 1;
    }
    assert_eq!(
        per_transition.keys().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        [
            "MWAA Serverless Workflow Run Running",
            "MWAA Serverless Workflow Run Stopped",
            "MWAA Serverless Workflow Run Stopping"
        ],
        "every transition, at least once: {per_transition:?}"
    );
    assert_eq!(
        per_transition[&("MWAA Serverless Workflow Run Stopped".to_owned(), "STOPPING -> STOPPED".to_owned())],
        1,
        "one transition, one event"
    );
}

/// The committed `events/run-events-stream.json` (what `sam local invoke
/// RunEventsFunction` and `cargo lambda invoke run-events` are shown with) is
/// a real, working input: a scheduler's `RUNNING → SUCCESS` is one
/// `Run Succeeded` event on the bus, no batch item failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_stream_event_publishes_one_run_succeeded_event() {
    let world = World::new().await;
    let (sqs, queue) = subscribe(&world, "mwaa-stop").await;
    let publisher = EventBridgePublisher::from_conf(&sdk_config_for(&world.moto.url).await, "default", "mwaa-stop");
    let text = std::fs::read_to_string(project_dir().join("events/run-events-stream.json")).unwrap();
    let answer = handle_batch(&publisher, serde_json::from_str(&text).unwrap()).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let events = received(&sqs, &queue).await;
    assert_eq!(
        transitions(&events),
        [("MWAA Serverless Workflow Run Succeeded".to_owned(), "RUNNING -> SUCCESS".to_owned())]
    );
    let arn = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/nightly-etl-a1B2c3D4e5";
    assert_eq!(events[0]["resources"], serde_json::json!([arn]));
    assert_eq!(events[0]["detail"]["runId"], "scheduled-2026-11-21");
}
