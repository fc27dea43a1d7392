//! Crashes: the real `run-api` binary SIGKILLed after its stop write and before
//! any `StopTask` reached ECS; the finalizer killed mid-batch (a real
//! `stop-finalizer` process SIGKILLed, and an in-process invocation aborted),
//! then its batch redelivered. Invariants: every worker ends stopped, every run
//! ends `STOPPED`, with exactly one `STOPPED` transition per run and no error.

use std::process::Command;
use std::time::Duration;

use crate::kit::proxy::{Action, Proxy, Rule, When};
use crate::kit::runtime_api::RuntimeApi;
use crate::kit::*;
use aws_lambda_events::event::dynamodb::Event;
use hyper::body::Bytes;
use mwaa_stop::lambda::http::AuthMode;
use mwaa_stop::lambda::stream::handle_batch;
use serde_json::json;

/// A function binary under the minimal Runtime API, every AWS call sent to `aws_url`.
fn spawn_function(binary: &str, name: &str, runtime: &RuntimeApi, aws_url: &str) -> Guard {
    let mut cmd = Command::new(binary);
    cmd.env("AWS_LAMBDA_RUNTIME_API", &runtime.addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "tests")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "tests")
        .env("AWS_ENDPOINT_URL", aws_url)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUNS_TABLE", "WorkflowRuns")
        .env("FINALIZER_POLL_MS", "50")
        .env("FINALIZER_POLL_MAX_MS", "400")
        .env("RUST_LOG", "info")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .env_remove(mwaa_stop::config::LOCAL_AUTH_VAR);
    Guard::spawn(cmd, &format!("{name}-{}.log", free_port()))
}

/// SIGKILL and reap; the process must really have died by the signal.
fn sigkill(guard: &mut Guard) {
    use std::os::unix::process::ExitStatusExt;
    guard.child.kill().unwrap();
    let status = guard.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_killed_after_its_write_and_before_any_stop_task_is_finished_by_the_finalizer_alone() {
    let world = World::new().await;
    // Every StopTask is held at the proxy: it never reaches ECS while the API lives.
    let proxy = Proxy::with_rules(&world.moto.url, vec![Rule::new("StopTask", When::Always, Action::Hold)]).await;
    let runtime = RuntimeApi::start().await;
    let mut api = spawn_function(env!("CARGO_BIN_EXE_run-api"), "run-api", &runtime, &proxy.url);
    let arn = workflow_arn("etl");
    let workers = world.start_workers(4).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;

    let event = http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE));
    let _answer = runtime.invoke("kill-me".into(), Bytes::from(event.to_string()));
    // The process has written STOPPING and is waiting on its first StopTask.
    proxy.wait_for("StopTask:held", 1, Duration::from_secs(120)).await;
    assert_eq!(world.get_item(&arn, "run-1").await.unwrap()["Status"].as_s().unwrap(), "STOPPING");
    sigkill(&mut api);
    drop(proxy); // what was in flight dies with the process
    assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"; 4], "no StopTask reached ECS");

    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    drain_stream(&world, &mut tail, &finalizer).await;
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(history_of(&item), vec!["Started", "StopRequested", "Stopped"]);
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 4]);
    assert_eq!(
        world.status_changes().await,
        vec![("RUNNING".to_owned(), "STOPPING".to_owned()), ("STOPPING".to_owned(), "STOPPED".to_owned())]
    );
}

/// Three STOPPING runs whose API fan-out failed, in one stream batch.
async fn three_stopping_runs(world: &World) -> (String, Vec<Vec<String>>, Event) {
    let ecs = Proxy::with_rules(&world.moto.url, vec![Rule::new("StopTask", When::Always, Action::ServerError)]).await;
    let api = world.api_via(AuthMode::Iam, &ecs.url).await;
    let mut tail = world.tail().await;
    let arn = workflow_arn("etl");
    let mut workers = Vec::new();
    for i in 0..3 {
        let w = world.start_workers(2).await;
        world.put_run(&arn, &format!("run-{i}"), "RUNNING", &w).await;
        let reply =
            call(&api, &http_event(Some(STOP), &stop_body(&arn, &format!("run-{i}")), As::Iam(ACCOUNT, ALICE))).await;
        assert_eq!(reply.json["Status"], "STOPPING");
        workers.push(w);
    }
    let (event, n) = tail.next_event(&world.streams).await;
    assert!(n >= 6, "3 inserts and 3 stops in one batch");
    (arn, workers, event)
}

async fn check_one_stopped_transition_per_run(world: &World, arn: &str, workers: &[Vec<String>]) {
    let changes = world.stream_changes().await;
    for (i, w) in workers.iter().enumerate() {
        let run = format!("run-{i}");
        let item = world.get_item(arn, &run).await.unwrap();
        assert_eq!(item["Status"].as_s().unwrap(), "STOPPED", "{run}");
        assert_eq!(history_of(&item), vec!["Started", "StopRequested", "Stopped"], "{run}");
        assert_eq!(world.task_statuses(w).await, vec!["STOPPED"; 2], "{run}");
        let stopped = changes.iter().filter(|c| c.0 == run && c.2 == "STOPPED").count();
        assert_eq!(stopped, 1, "{run}: exactly one STOPPED transition: {changes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finalizer_process_killed_mid_batch_and_the_batch_redelivered_gives_one_stopped_per_run() {
    let world = World::new().await;
    let (arn, workers, event) = three_stopping_runs(&world).await;
    // The second STOPPED write is held: the process dies with one run finalized
    // and the others somewhere between StopTask and their final write.
    let proxy = Proxy::with_rules(
        &world.moto.url,
        vec![Rule::new("UpdateItem", When::Nth(2), Action::Hold).body_contains(":stopped")],
    )
    .await;
    let runtime = RuntimeApi::start().await;
    let mut fin = spawn_function(env!("CARGO_BIN_EXE_stop-finalizer"), "stop-finalizer", &runtime, &proxy.url);
    let _answer = runtime.invoke("batch-1".into(), Bytes::from(serde_json::to_vec(&event).unwrap()));
    proxy.wait_for("UpdateItem:held", 1, Duration::from_secs(120)).await;
    sigkill(&mut fin);
    // The held write may still land after its writer died (it was on the
    // wire), or die with the connection: both happen in real life.
    proxy.release();
    let landed = proxy.seen("UpdateItem:finalize", 2, Duration::from_secs(3)).await;
    eprintln!("held write landed: {landed}; proxy before redelivery: {:?}", proxy.log());

    // Lambda redelivers the batch to a new instance; twice, once concurrently.
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let first = handle_batch(&finalizer, copy(&event), None).await;
    assert!(first.batch_item_failures.is_empty(), "{:?}", first.batch_item_failures);
    let (a, b) =
        tokio::join!(handle_batch(&finalizer, copy(&event), None), handle_batch(&finalizer, copy(&event), None));
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    check_one_stopped_transition_per_run(&world, &arn, &workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finalizer_aborted_mid_batch_and_the_batch_redelivered_gives_one_stopped_per_run() {
    let world = World::new().await;
    let (arn, workers, event) = three_stopping_runs(&world).await;
    // Abort as soon as the first StopTask is on the wire (it is held there).
    let proxy = Proxy::with_rules(&world.moto.url, vec![Rule::new("StopTask", When::Nth(1), Action::Hold)]).await;
    let finalizer = std::sync::Arc::new(world.finalizer_via(&proxy.url, test_finalizer_limits()).await);
    let f = finalizer.clone();
    let batch = copy(&event);
    let task = tokio::spawn(async move { handle_batch(&f, batch, None).await });
    proxy.wait_for("StopTask:held", 1, Duration::from_secs(60)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    drop(proxy); // the held StopTask never reaches ECS

    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    for _ in 0..2 {
        let resp = handle_batch(&finalizer, copy(&event), None).await;
        assert!(resp.batch_item_failures.is_empty(), "{:?}", resp.batch_item_failures);
    }
    check_one_stopped_transition_per_run(&world, &arn, &workers).await;
    let again = handle_batch(&finalizer, copy(&event), None).await;
    assert_eq!(serde_json::to_value(&again).unwrap()["batchItemFailures"], json!([]));
}
