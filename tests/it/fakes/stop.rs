//! The decision logic and the handler with in-memory fakes: concurrency and
//! time bounds of the fan-out, upstream failures, panics and deadlines. Time is
//! paused (tokio's test clock), so nothing here depends on machine speed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::kit::fakes::{run_record, MemEcs, MemTable, Mode};
use crate::kit::{http_event, request, stop_body, workflow_arn, As, ACCOUNT, ALICE, STOP};
use lambda_http::RequestExt;
use mwaa_stop::authz::Authz;
use mwaa_stop::domain::{Caller, RunKey, RunStatus, WorkflowArn};
use mwaa_stop::lambda::http::{Api, ApiSettings, AuthMode};
use mwaa_stop::ports::{StopRequest, UpstreamKind};
use mwaa_stop::stop::{stop_reason, FanOutLimits, FanOutReport, Service};
use serde_json::Value;

/// The `n` worker task ARNs of a run (all in cluster `c`).
fn tasks(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("arn:aws:ecs:us-east-1:1:task/c/{i:04}")).collect()
}

/// A run with `workers` running worker tasks, in the table and in ECS.
fn put(store: &MemTable, ecs: &MemEcs, arn: &str, run_id: &str, status: RunStatus, workers: usize) {
    let tasks = tasks(workers);
    let refs: Vec<&str> = tasks.iter().map(String::as_str).collect();
    store.put(run_record(arn, run_id, status, &refs));
    ecs.running(&refs);
}

fn key(arn: &str, run: &str) -> RunKey {
    RunKey { workflow_arn: WorkflowArn::parse(arn).unwrap(), run_id: run.into() }
}

fn alice() -> Caller {
    Caller::Iam { account: ACCOUNT.into(), principal: ALICE.into() }
}

fn stop() -> StopRequest {
    StopRequest { at: "2026-11-21T10:00:00.000Z".into(), by: ALICE.into(), request_id: "r".into(), source_ip: None }
}

#[tokio::test(start_paused = true)]
async fn fan_out_stops_each_worker_once_within_the_concurrency_bound() {
    let arn = workflow_arn("etl");
    let (store, ecs) = (MemTable::default(), MemEcs::default());
    put(&store, &ecs, &arn, "run-1", RunStatus::Running, 100);
    let ecs = MemEcs { latency: Duration::from_millis(10), ..ecs };
    let svc = Service::new(store, ecs, FanOutLimits { concurrency: 8, budget: Duration::from_secs(5) });
    let started = tokio::time::Instant::now();
    let out = svc.stop_workflow_run(&alice(), &key(&arn, "run-1"), &stop(), None).await.unwrap();
    assert_eq!(out.status, RunStatus::Stopping);
    assert_eq!(out.fan_out, Some(FanOutReport { accepted: 100, gone: 0, failed: 0, deferred: 0, unfinished: 0 }));
    // ceil(100 / 8) = 13 waves of 10 ms: the bound is both used and respected.
    assert_eq!(started.elapsed(), Duration::from_millis(130));
    let ecs = svc.workers();
    assert_eq!(ecs.max_in_flight.load(Ordering::SeqCst), 8);
    let calls = ecs.calls.lock().unwrap();
    let mut tasks: Vec<&String> = calls.iter().map(|(_, t, _)| t).collect();
    tasks.sort();
    tasks.dedup();
    assert_eq!(tasks.len(), 100, "every worker exactly once");
    let reason = stop_reason(&key(&arn, "run-1"), ALICE);
    assert!(calls.iter().all(|(c, _, r)| c == "c" && r == &reason));
}

#[tokio::test(start_paused = true)]
async fn failed_gone_and_slow_workers_are_left_to_the_finalizer_and_the_answer_is_still_stopping() {
    let arn = workflow_arn("etl");
    let (store, ecs) = (MemTable::default(), MemEcs::default());
    put(&store, &ecs, &arn, "run-1", RunStatus::Running, 10);
    let ecs = MemEcs { fail: vec!["0001", "0002"], gone: vec!["0003"], hang: vec!["0004"], ..ecs };
    let svc = Service::new(store, ecs, FanOutLimits { concurrency: 4, budget: Duration::from_secs(3) });
    let started = tokio::time::Instant::now();
    let out = svc.stop_workflow_run(&alice(), &key(&arn, "run-1"), &stop(), None).await.unwrap();
    assert_eq!(out.status, RunStatus::Stopping);
    assert_eq!(out.fan_out, Some(FanOutReport { accepted: 6, gone: 1, failed: 2, deferred: 0, unfinished: 1 }));
    assert_eq!(started.elapsed(), Duration::from_secs(3), "the budget bounds the wait");
}

#[tokio::test(start_paused = true)]
async fn the_lambda_deadline_cuts_the_fan_out_short() {
    let arn = workflow_arn("etl");
    let (store, ecs) = (MemTable::default(), MemEcs::default());
    put(&store, &ecs, &arn, "run-1", RunStatus::Running, 3);
    let ecs = MemEcs { hang: vec!["0000", "0001", "0002"], ..ecs };
    let svc = Service::new(store, ecs, FanOutLimits { concurrency: 4, budget: Duration::from_secs(60) });
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    let out = svc.stop_workflow_run(&alice(), &key(&arn, "run-1"), &stop(), Some(deadline)).await.unwrap();
    assert_eq!(out.fan_out.unwrap().unfinished, 3);
    assert_eq!(tokio::time::Instant::now(), deadline);
}

#[tokio::test(start_paused = true)]
async fn only_the_transition_stops_workers() {
    let arn = workflow_arn("etl");
    let (store, ecs) = (MemTable::default(), MemEcs::default());
    put(&store, &ecs, &arn, "run-1", RunStatus::Running, 2);
    for (run, status) in [("done", RunStatus::Success), ("gone", RunStatus::Stopped), ("busy", RunStatus::Stopping)] {
        put(&store, &ecs, &arn, run, status, 2);
    }
    let svc = Service::new(store, ecs, FanOutLimits::default());
    for (run, status) in [("gone", RunStatus::Stopped), ("busy", RunStatus::Stopping)] {
        let out = svc.stop_workflow_run(&alice(), &key(&arn, run), &stop(), None).await.unwrap();
        assert_eq!((out.status, out.fan_out), (status, None));
    }
    // A run that finished on its own: the real service's ValidationException.
    let refused = svc.stop_workflow_run(&alice(), &key(&arn, "done"), &stop(), None).await.unwrap_err();
    assert_eq!(refused.type_name(), "ValidationException");
    assert!(svc.workers().calls.lock().unwrap().is_empty());
    let first = svc.stop_workflow_run(&alice(), &key(&arn, "run-1"), &stop(), None).await.unwrap();
    let again = svc.stop_workflow_run(&alice(), &key(&arn, "run-1"), &stop(), None).await.unwrap();
    assert!(first.fan_out.is_some() && again.fan_out.is_none());
    assert_eq!(svc.workers().calls.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn access_is_checked_before_the_table_is_touched() {
    let arn = workflow_arn("etl");
    let (store, ecs) = (MemTable::default(), MemEcs::default());
    put(&store, &ecs, &arn, "run-1", RunStatus::Running, 1);
    let svc = Service::new(store, ecs, FanOutLimits::default());
    let mallory = Caller::Iam { account: "210987654321".into(), principal: "m".into() };
    let err = svc.stop_workflow_run(&mallory, &key(&arn, "run-1"), &stop(), None).await.unwrap_err();
    assert_eq!(err.type_name(), "AccessDeniedException");
    assert_eq!(svc.store().write_count("stop"), 0);
}

/// A configured policy set decides before the table is touched: a forbid
/// (and a caller no permit names) neither reads nor writes, and their ECS
/// workers are never told anything; a permitted stop goes through. An
/// unusable set denies everyone, the same account included.
#[tokio::test(start_paused = true)]
async fn a_policy_denial_reads_and_writes_nothing() {
    let (prod, etl) = (workflow_arn("prod-orders"), workflow_arn("etl"));
    let (store, ecs) = (MemTable::default(), MemEcs::default());
    put(&store, &ecs, &prod, "run-1", RunStatus::Running, 2);
    put(&store, &ecs, &etl, "run-1", RunStatus::Running, 2);
    let policies = [
        include_str!("../../../policies/examples/ops-stop-anything.cedar"),
        include_str!("../../../policies/examples/no-prod-stops.cedar"),
    ]
    .join("\n");
    let (authz, loaded) = Authz::configured(&policies);
    loaded.unwrap();
    let svc = Service::new(store, ecs, FanOutLimits::default()).with_authz(authz.clone());
    let ops =
        Caller::Iam { account: ACCOUNT.into(), principal: "arn:aws:sts::123456789012:assumed-role/ops/bob".into() };
    for (caller, arn) in [(&ops, &prod), (&alice(), &etl)] {
        let err = svc.stop_workflow_run(caller, &key(arn, "run-1"), &stop(), None).await.unwrap_err();
        assert_eq!(err.type_name(), "AccessDeniedException");
        let err = svc.get_workflow_run(&alice(), &key(arn, "run-1")).await.unwrap_err();
        assert_eq!(err.type_name(), "AccessDeniedException");
    }
    assert_eq!((svc.store().write_count("stop"), svc.store().reads.load(Ordering::SeqCst)), (0, 0));
    assert!(svc.workers().calls.lock().unwrap().is_empty());
    // Ops may read prod and stop anything else.
    svc.get_workflow_run(&ops, &key(&prod, "run-1")).await.unwrap();
    let out = svc.stop_workflow_run(&ops, &key(&etl, "run-1"), &stop(), None).await.unwrap();
    assert_eq!(out.status, RunStatus::Stopping);
    // The set made unusable (a refresh that read an invalid text): everyone denied.
    assert!(authz.install("permit (principal, action, resource) when { principal.acount == \"1\" };").is_err());
    let err = svc.get_workflow_run(&ops, &key(&prod, "run-1")).await.unwrap_err();
    assert_eq!(err.type_name(), "AccessDeniedException");
}

/// The handler end to end over a fake, with a Lambda context (deadline).
async fn handle(store: MemTable, deadline_in: Duration) -> (u16, Value) {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    handle_with_deadline(store, now_ms + deadline_in.as_millis() as u64).await
}

async fn handle_with_deadline(store: MemTable, deadline_ms: u64) -> (u16, Value) {
    let api = Api::new(
        Service::new(store, MemEcs::default(), FanOutLimits::default()),
        ApiSettings { auth: AuthMode::Iam, deadline_margin: Duration::from_millis(500) },
    );
    let arn = workflow_arn("etl");
    let mut ctx = lambda_http::lambda_runtime::Context::default();
    ctx.request_id = "lambda-req-7".into();
    ctx.deadline = deadline_ms;
    let req =
        request(&http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).with_lambda_context(ctx);
    let resp = api.handle(req).await;
    assert_eq!(resp.headers()["x-amzn-requestid"], "lambda-req-7", "the Lambda request id is the AWS request id");
    assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.0");
    (resp.status().as_u16(), serde_json::from_slice(resp.body().as_ref()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn upstream_failures_become_modeled_errors() {
    let (status, body) =
        handle(MemTable::with_mode(Mode::Fail(UpstreamKind::Throttled)), Duration::from_secs(30)).await;
    assert_eq!((status, body["__type"].as_str().unwrap()), (400, "ThrottlingException"));
    assert!(body["RetryAfterSeconds"].as_i64().unwrap() >= 1);
    assert_eq!(body["ServiceCode"], "airflow-serverless");
    assert!(!body.to_string().contains("injected"), "no upstream text reaches the caller");

    let (status, body) = handle(MemTable::with_mode(Mode::Fail(UpstreamKind::Fault)), Duration::from_secs(30)).await;
    assert_eq!((status, body["__type"].as_str().unwrap()), (500, "InternalServerException"));
    assert!(body["RetryAfterSeconds"].as_i64().unwrap() >= 1);

    let (status, body) = handle(MemTable::with_mode(Mode::Fail(UpstreamKind::Timeout)), Duration::from_secs(30)).await;
    assert_eq!((status, body["__type"].as_str().unwrap()), (500, "OperationTimeoutException"));
}

#[tokio::test(start_paused = true)]
async fn a_hung_upstream_meets_the_deadline_with_operation_timeout() {
    let started = tokio::time::Instant::now();
    let (status, body) = handle(MemTable::with_mode(Mode::Hang), Duration::from_secs(3)).await;
    assert_eq!((status, body["__type"].as_str().unwrap()), (500, "OperationTimeoutException"));
    let waited = started.elapsed();
    assert!(waited <= Duration::from_millis(2500) && waited >= Duration::from_millis(2000), "answered {waited:?} in");
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_an_internal_server_exception_not_a_dead_invocation() {
    let (status, body) = handle(MemTable::with_mode(Mode::Panic), Duration::from_secs(30)).await;
    assert_eq!((status, body["__type"].as_str().unwrap()), (500, "InternalServerException"));
    assert!(!body.to_string().contains("injected"));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_is_not_in_the_future_is_ignored_not_fatal() {
    // `cargo lambda watch` sends the timeout (600000) where Lambda sends an epoch time.
    let store = MemTable::default();
    store.put(run_record(&workflow_arn("etl"), "run-1", RunStatus::Running, &[]));
    let (status, body) = handle_with_deadline(store, 600_000).await;
    assert_eq!((status, body["Status"].as_str().unwrap()), (200, "STOPPING"), "{body}");
}
