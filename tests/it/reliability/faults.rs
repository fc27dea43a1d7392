//! Fault injection against moto through the fault-injecting proxy
//! (`kit::proxy`): DynamoDB throttling, 500s, dropped connections
//! and slowness in the stop write; ECS throttling, errors, drops and slowness in
//! the `StopTask` fan-out. After each, the invariants: the caller gets a
//! modeled answer that tells the truth, the run is unchanged or consistently
//! `STOPPING` (never half-written), and the finalizer still brings a stopped
//! run to `STOPPED` with every worker stopped.

use std::collections::HashMap;
use std::time::Duration;

use crate::kit::proxy::{Action, Proxy, Rule, When, INJECTED_DETAIL};
use crate::kit::*;
use aws_sdk_dynamodb::types::AttributeValue;
use mwaa_stop::aws::DynamoRunStore;
use mwaa_stop::aws::EcsWorkers;
use mwaa_stop::aws::SdkSettings;
use mwaa_stop::finalize::Finalizer;
use mwaa_stop::lambda::http::AuthMode;
use mwaa_stop::stop::FanOutLimits;
use serde_json::json;

fn fan_out() -> FanOutLimits {
    FanOutLimits { concurrency: 8, budget: Duration::from_secs(20) }
}

/// Deliver the stream to the finalizer until it is quiet, redelivering a
/// batch that reported failures (as the event source mapping does), and
/// never giving up on one.
async fn drain(world: &World, tail: &mut StreamTail, finalizer: &Finalizer<DynamoRunStore, EcsWorkers>) {
    let delivery = deliver(&world.streams, tail, finalizer, 5).await;
    assert!(delivery.failed_to_destination.is_empty(), "still failing after 5 redeliveries: {delivery:?}");
}

fn assert_modeled_error(reply: &Reply, status: u16, type_name: &str) {
    assert_eq!(reply.status, status, "{}", reply.json);
    assert_eq!(reply.json["__type"], type_name, "{}", reply.json);
    assert_eq!(reply.headers["x-amzn-errortype"], type_name);
    let text = reply.json.to_string();
    for leak in [INJECTED_DETAIL, "999999999999", "dynamodb", "DynamoDB", "127.0.0.1", "WorkflowRuns", "ecs"] {
        assert!(!text.contains(leak), "the answer leaks {leak:?}: {text}");
    }
}

struct Setup {
    world: World,
    ddb: Proxy,
    ecs: Proxy,
    arn: String,
    workers: Vec<String>,
    before: HashMap<String, AttributeValue>,
}

async fn setup(ddb_rules: Vec<Rule>, ecs_rules: Vec<Rule>, n_workers: usize) -> Setup {
    let world = World::new().await;
    let ddb = Proxy::with_rules(&world.moto.url, ddb_rules).await;
    let ecs = Proxy::with_rules(&world.moto.url, ecs_rules).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(n_workers).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    let before = world.get_item(&arn, "run-1").await.unwrap();
    Setup { world, ddb, ecs, arn, workers, before }
}

impl Setup {
    fn stop_event(&self) -> serde_json::Value {
        http_event(Some(STOP), &stop_body(&self.arn, "run-1"), As::Iam(ACCOUNT, ALICE))
    }

    async fn item(&self) -> HashMap<String, AttributeValue> {
        self.world.get_item(&self.arn, "run-1").await.unwrap()
    }

    /// The finalizer (direct to moto) over the whole stream; then STOPPED and
    /// every worker stopped, with one STOPPED transition.
    async fn finalize_and_check(&self) {
        let finalizer = self.world.finalizer_via(&self.world.moto.url, test_finalizer_limits()).await;
        let mut tail = self.world.tail().await;
        drain(&self.world, &mut tail, &finalizer).await;
        self.check_stopped().await;
    }

    async fn check_stopped(&self) {
        let item = self.item().await;
        assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
        assert!(item["Workers"].as_m().unwrap().is_empty());
        assert_eq!(self.world.task_statuses(&self.workers).await, vec!["STOPPED"; self.workers.len()]);
        let changes = self.world.status_changes().await;
        assert_eq!(
            changes,
            vec![("RUNNING".to_owned(), "STOPPING".to_owned()), ("STOPPING".to_owned(), "STOPPED".to_owned())]
        );
    }
}

// ---------------------------------------------------------------------------
// DynamoDB faults in the stop write
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling_past_the_sdk_retries_is_throttling_exception_and_the_run_is_unchanged() {
    let t = setup(vec![Rule::new("UpdateItem", When::Always, Action::Throttle)], vec![], 2).await;
    let sdk = default_sdk_settings();
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &sdk, fan_out(), AuthMode::Iam).await;

    let reply = call(&api, &t.stop_event()).await;
    assert_modeled_error(&reply, 400, "ThrottlingException");
    assert!(reply.json["RetryAfterSeconds"].as_i64().is_some_and(|s| s >= 1), "{}", reply.json);
    assert_eq!(reply.json["ServiceCode"], "airflow-serverless");
    assert_eq!(
        t.ddb.count("UpdateItem:injected-throttle"),
        sdk.max_attempts as usize,
        "the SDK retried up to SDK_MAX_ATTEMPTS: {:?}",
        t.ddb.log()
    );
    assert_eq!(t.item().await, t.before, "the table is unchanged");
    assert!(t.ecs.log().is_empty(), "no StopTask without the transition");
    assert_eq!(t.world.task_statuses(&t.workers).await, vec!["RUNNING"; 2]);

    // The throttling clears: the caller's retry (it was told to) stops the run.
    t.ddb.clear_rules();
    let reply = call(&api, &t.stop_event()).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    t.finalize_and_check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling_within_the_sdk_retries_is_absorbed() {
    let t = setup(vec![Rule::new("UpdateItem", When::FirstN(2), Action::Throttle)], vec![], 2).await;
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &default_sdk_settings(), fan_out(), AuthMode::Iam).await;
    let reply = call(&api, &t.stop_event()).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    assert_eq!(t.ddb.count("UpdateItem:injected-throttle"), 2);
    assert_eq!(t.ecs.count("StopTask"), 2, "the one transition fans out once per worker");
    assert_eq!(unchanged_or_consistently_stopping(&t.before, &t.item().await), Ok("stopping"));
    t.finalize_and_check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_500s_are_internal_server_exception_and_the_run_is_unchanged() {
    let t = setup(vec![Rule::new("UpdateItem", When::Always, Action::ServerError)], vec![], 2).await;
    let sdk = default_sdk_settings();
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &sdk, fan_out(), AuthMode::Iam).await;
    let reply = call(&api, &t.stop_event()).await;
    assert_modeled_error(&reply, 500, "InternalServerException");
    assert!(reply.json["RetryAfterSeconds"].as_i64().is_some_and(|s| s >= 1), "{}", reply.json);
    assert_eq!(t.ddb.count("UpdateItem:injected-500"), sdk.max_attempts as usize, "{:?}", t.ddb.log());
    assert_eq!(t.item().await, t.before);
    assert!(t.ecs.log().is_empty());

    // GetWorkflowRun through the same faulty table: GetItem 500s are modeled too.
    t.ddb.add_rule(Rule::new("GetItem", When::Always, Action::ServerError));
    let get = call(&api, &http_event(Some(GET), &stop_body(&t.arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    assert_modeled_error(&get, 500, "InternalServerException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_before_the_write_leave_the_run_unchanged() {
    let t = setup(vec![Rule::new("UpdateItem", When::Always, Action::Drop)], vec![], 2).await;
    let sdk = default_sdk_settings();
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &sdk, fan_out(), AuthMode::Iam).await;
    let reply = call(&api, &t.stop_event()).await;
    assert_modeled_error(&reply, 500, "InternalServerException");
    assert_eq!(t.ddb.count("UpdateItem:dropped"), sdk.max_attempts as usize, "{:?}", t.ddb.log());
    assert_eq!(t.item().await, t.before);
    assert!(t.ecs.log().is_empty());
}

/// The write reaches the table but its answer is lost: the SDK retries, the
/// retry's condition fails on the run it moved itself, and the answer is still
/// the truth (`STOPPING`). No request knows it made the transition, so none
/// fans out: the finalizer alone stops every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_stop_write_is_still_stopping_and_the_finalizer_stops_every_worker() {
    let t = setup(vec![Rule::new("UpdateItem", When::Nth(1), Action::DropAfterForward)], vec![], 3).await;
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &default_sdk_settings(), fan_out(), AuthMode::Iam).await;
    let reply = call(&api, &t.stop_event()).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    assert_eq!(t.ddb.count("UpdateItem:forwarded-then-dropped"), 1, "{:?}", t.ddb.log());
    assert_eq!(unchanged_or_consistently_stopping(&t.before, &t.item().await), Ok("stopping"));
    assert_eq!(history_of(&t.item().await), vec!["Started", "StopRequested"], "one StopRequested, not two");
    t.finalize_and_check().await;
}

/// A seeded fraction of DynamoDB calls fail (throttled, 500, dropped before or
/// after reaching the table) across many runs: every answer is modeled and true,
/// every run unchanged or consistently STOPPING, and every STOPPING run ends
/// STOPPED with its workers stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fraction_of_failing_dynamodb_calls_never_half_writes_a_run() {
    let world = World::new().await;
    let ddb = Proxy::with_rules(
        &world.moto.url,
        vec![
            Rule::new("UpdateItem", When::Fraction { per_mille: 250, seed: 7 }, Action::Throttle),
            Rule::new("UpdateItem", When::Fraction { per_mille: 200, seed: 11 }, Action::ServerError),
            Rule::new("UpdateItem", When::Fraction { per_mille: 150, seed: 13 }, Action::Drop),
            Rule::new("UpdateItem", When::Fraction { per_mille: 150, seed: 17 }, Action::DropAfterForward),
        ],
    )
    .await;
    // One attempt per call, so the fraction reaches the caller often.
    let sdk = SdkSettings { max_attempts: 1, ..default_sdk_settings() };
    let api = world.api_with(&ddb.url, &world.moto.url, &sdk, fan_out(), AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let runs = 16;
    let mut workers = Vec::new();
    let mut before = Vec::new();
    for i in 0..runs {
        let w = world.start_workers(1).await;
        world.put_run(&arn, &format!("run-{i}"), "RUNNING", &w).await;
        before.push(world.get_item(&arn, &format!("run-{i}")).await.unwrap());
        workers.push(w);
    }
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for (i, old) in before.iter().enumerate() {
        let run = format!("run-{i}");
        let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, &run), As::Iam(ACCOUNT, ALICE))).await;
        let after = world.get_item(&arn, &run).await.unwrap();
        let state = unchanged_or_consistently_stopping(old, &after).unwrap_or_else(|e| panic!("{run}: {e}"));
        if reply.status == 200 {
            assert_eq!(reply.json["Status"], "STOPPING", "{run}: {}", reply.json);
            assert_eq!(state, "stopping", "{run}: a 200 STOPPING is true");
        } else {
            let t = reply.json["__type"].as_str().unwrap();
            assert!(
                ["ThrottlingException", "InternalServerException", "OperationTimeoutException"].contains(&t),
                "{run}: {}",
                reply.json
            );
            assert!(!reply.json.to_string().contains(INJECTED_DETAIL));
        }
        *outcomes.entry(format!("{}:{state}", reply.status)).or_default() += 1;
    }
    // The injected faults really reached callers, and some stops got through.
    assert!(outcomes.keys().any(|k| !k.starts_with("200")), "{outcomes:?} {:?}", ddb.log());
    assert!(outcomes.contains_key("200:stopping"), "{outcomes:?}");

    // Callers retry what failed (the message says it is safe); faults clear.
    ddb.clear_rules();
    for i in 0..runs {
        let reply =
            call(&api, &http_event(Some(STOP), &stop_body(&arn, &format!("run-{i}")), As::Iam(ACCOUNT, ALICE))).await;
        assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    }
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    drain(&world, &mut tail, &finalizer).await;
    for (i, w) in workers.iter().enumerate() {
        let item = world.get_item(&arn, &format!("run-{i}")).await.unwrap();
        assert_eq!(item["Status"].as_s().unwrap(), "STOPPED", "run-{i}");
        assert_eq!(history_of(&item), vec!["Started", "StopRequested", "Stopped"], "run-{i}");
        assert_eq!(world.task_statuses(w).await, vec!["STOPPED"], "run-{i}");
    }
    let changes = world.stream_changes().await;
    for i in 0..runs {
        let run = format!("run-{i}");
        let mine: Vec<_> = changes.iter().filter(|c| c.0 == run).map(|c| (c.1.as_str(), c.2.as_str())).collect();
        assert_eq!(mine, vec![("RUNNING", "STOPPING"), ("STOPPING", "STOPPED")], "{run}");
    }
    eprintln!("outcomes of the first pass: {outcomes:?}");
}

// ---------------------------------------------------------------------------
// An upstream slower than the deadline
// ---------------------------------------------------------------------------

/// Far beyond the 1.5 s deadline, so "answered before the write finished"
/// holds however slow and shared the machine running the test is.
const SLOW_WRITE: Duration = Duration::from_secs(8);

/// The stop write takes longer than the Lambda invocation has left: the caller
/// gets `OperationTimeoutException` in time, and the write either never lands
/// or lands whole. Either way a retry (or the finalizer) finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_slower_than_the_lambda_deadline_is_operation_timeout_and_never_half_written() {
    let t = setup(vec![Rule::new("UpdateItem", When::Nth(1), Action::Delay(SLOW_WRITE))], vec![], 2).await;
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &default_sdk_settings(), fan_out(), AuthMode::Iam).await;
    let started = std::time::Instant::now();
    let reply = call_request(&api, with_deadline(request(&t.stop_event()), 1_500)).await;
    assert_modeled_error(&reply, 500, "OperationTimeoutException");
    assert!(started.elapsed() < SLOW_WRITE, "answered before the slow write finished");
    assert!(t.ecs.log().is_empty(), "no fan-out from a timed-out request");

    // Let the delayed write land (or not), then check the table.
    tokio::time::sleep(SLOW_WRITE).await;
    let state = unchanged_or_consistently_stopping(&t.before, &t.item().await).unwrap();
    eprintln!("after the timeout the run is {state}; proxy: {:?}", t.ddb.log());

    // The caller retries, as the message says it safely can.
    let reply = call(&api, &t.stop_event()).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    t.finalize_and_check().await;
}

/// Same with the SDK's own operation timeout (`SDK_ATTEMPT_TIMEOUT_MS` /
/// `SDK_OPERATION_TIMEOUT_MS`) shorter than the table's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_slower_than_the_sdk_timeout_is_operation_timeout_and_never_half_written() {
    let t = setup(vec![Rule::new("UpdateItem", When::Always, Action::Delay(Duration::from_secs(3)))], vec![], 2).await;
    let sdk = SdkSettings {
        max_attempts: 2,
        attempt_timeout: Duration::from_millis(400),
        operation_timeout: Duration::from_millis(1_500),
        ..default_sdk_settings()
    };
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &sdk, fan_out(), AuthMode::Iam).await;
    let reply = call(&api, &t.stop_event()).await;
    assert_modeled_error(&reply, 500, "OperationTimeoutException");
    assert!(t.ecs.log().is_empty());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let state = unchanged_or_consistently_stopping(&t.before, &t.item().await).unwrap();
    eprintln!("after the SDK timeout the run is {state}; proxy: {:?}", t.ddb.log());
    t.ddb.clear_rules();
    let reply = call(&api, &t.stop_event()).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    t.finalize_and_check().await;
}

// ---------------------------------------------------------------------------
// ECS faults in the fan-out
// ---------------------------------------------------------------------------

/// Returns how long the API took to answer the stop.
async fn fan_out_fault(ecs_rules: Vec<Rule>, finalizer_ecs_rules: Vec<Rule>, limits: FanOutLimits) -> Duration {
    let t = setup(vec![], ecs_rules, 4).await;
    let api = t.world.api_with(&t.ddb.url, &t.ecs.url, &default_sdk_settings(), limits, AuthMode::Iam).await;
    let asked = std::time::Instant::now();
    let reply = call(&api, &t.stop_event()).await;
    let answered_in = asked.elapsed();
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    assert_eq!(unchanged_or_consistently_stopping(&t.before, &t.item().await), Ok("stopping"));
    assert!(t.ecs.log().iter().any(|e| e.starts_with("StopTask")), "the fan-out ran: {:?}", t.ecs.log());

    // The finalizer, itself seeing a faulty ECS, still finishes.
    let fin_proxy = Proxy::with_rules(&t.world.moto.url, finalizer_ecs_rules).await;
    let finalizer = t.world.finalizer_via(&fin_proxy.url, test_finalizer_limits()).await;
    let mut tail = t.world.tail().await;
    drain(&t.world, &mut tail, &finalizer).await;
    t.check_stopped().await;
    answered_in
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_throttling_during_the_fan_out_still_answers_stopping_and_ends_stopped() {
    fan_out_fault(
        vec![Rule::new("StopTask", When::Always, Action::Throttle)],
        vec![
            Rule::new("StopTask", When::Fraction { per_mille: 500, seed: 3 }, Action::Throttle),
            Rule::new("DescribeTasks", When::EveryKth(3), Action::Throttle),
            Rule::new("ListTasks", When::EveryKth(2), Action::Throttle),
        ],
        fan_out(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_errors_and_drops_during_the_fan_out_still_answer_stopping_and_end_stopped() {
    fan_out_fault(
        vec![
            Rule::new("StopTask", When::Fraction { per_mille: 500, seed: 5 }, Action::ServerError),
            Rule::new("StopTask", When::EveryKth(2), Action::Drop),
        ],
        vec![
            Rule::new("StopTask", When::FirstN(3), Action::ServerError),
            Rule::new("DescribeTasks", When::Nth(1), Action::Drop),
        ],
        fan_out(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_slower_than_the_fan_out_budget_still_answers_stopping_in_time() {
    // Every StopTask takes 30 s; the fan-out's budget is 1 s. The API's own
    // answer (not the whole test) is timed: it must come once the budget is
    // spent, long before ECS answers. The margin is for a slow shared
    // machine; an API that waited for ECS would take at least 30 s.
    let answered_in = fan_out_fault(
        vec![Rule::new("StopTask", When::Always, Action::Delay(Duration::from_secs(30)))],
        vec![],
        FanOutLimits { concurrency: 8, budget: Duration::from_secs(1) },
    )
    .await;
    assert!(answered_in < Duration::from_secs(15), "answered after the 1 s budget, not after ECS: {answered_in:?}");
}
