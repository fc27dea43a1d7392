//! The stop finalizer end to end against moto's server: the API writes
//! STOPPING, the table's real stream records are delivered to the finalizer as
//! Lambda would deliver them, and ECS tasks are really stopped.

use crate::kit::proxy::{Action, Proxy, Rule, When};
use crate::kit::*;
use aws_sdk_dynamodb::types::AttributeValue;
use mwaa_stop::lambda::http::AuthMode;
use mwaa_stop::lambda::stream::handle_batch;
use serde_json::json;

fn events(item: &std::collections::HashMap<String, AttributeValue>) -> Vec<String> {
    item["History"].as_l().unwrap().iter().map(|e| e.as_m().unwrap()["Event"].as_s().unwrap().clone()).collect()
}

fn event<'a>(
    item: &'a std::collections::HashMap<String, AttributeValue>,
    name: &str,
) -> &'a std::collections::HashMap<String, AttributeValue> {
    item["History"]
        .as_l()
        .unwrap()
        .iter()
        .map(|e| e.as_m().unwrap())
        .find(|e| e["Event"].as_s().unwrap() == name)
        .unwrap_or_else(|| panic!("no {name} event"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_finalize_reaches_stopped_only_after_every_worker_drained() {
    let world = World::new().await;
    let proxy =
        Proxy::with_rules(&world.moto.url, vec![Rule::new("DescribeTasks", When::Always, Action::HoldStopping(3))])
            .await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&proxy.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(4).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;

    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!(reply.json["Status"], "STOPPING");
    drain_stream(&world, &mut tail, &finalizer).await;

    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert!(item["Workers"].as_m().unwrap().is_empty(), "Workers emptied");
    assert!(item.contains_key("CompletedOn"));
    assert_eq!(events(&item), vec!["Started", "StopRequested", "Stopped"]);
    assert_eq!(event(&item, "Stopped")["WorkersStopped"].as_n().unwrap(), "4");
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 4]);

    // The finalize write came after ECS reported every task STOPPED, never
    // while the proxy still reported draining tasks.
    let log = proxy.log();
    let finalize = log.iter().position(|e| e == "UpdateItem:finalize").expect("a finalize write");
    let last_draining = log.iter().rposition(|e| e == "DescribeTasks:not-all-stopped").expect("draining answers");
    let all_stopped = log.iter().position(|e| e == "DescribeTasks:all-stopped").expect("an all-stopped answer");
    assert!(last_draining < all_stopped && all_stopped < finalize, "{log:?}");
    assert!(log.iter().filter(|e| e.starts_with("DescribeTasks")).count() >= 4, "several polls: {log:?}");
    let stopped: Vec<_> = world.status_changes().await.into_iter().filter(|(_, n)| n == "STOPPED").collect();
    assert_eq!(stopped, vec![("STOPPING".to_owned(), "STOPPED".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fan_out_is_finished_by_the_finalizer() {
    let world = World::new().await;
    // Every StopTask of the API fails, as if ECS were throttling or the API crashed.
    let proxy =
        Proxy::with_rules(&world.moto.url, vec![Rule::new("StopTask", When::Always, Action::ServerError)]).await;
    let api = world.api_via(AuthMode::Iam, &proxy.url).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(3).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;

    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"; 3], "the fan-out really failed");

    drain_stream(&world, &mut tail, &finalizer).await;
    assert_eq!(world.get_item(&arn, "run-1").await.unwrap()["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_run_written_directly_still_ends_with_no_worker_running() {
    let world = World::new().await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(3).await;
    let orphans = world.start_workers(2).await; // launched, never registered
    world.put_run(&arn, "run-1", "STOPPING", &workers).await;
    world.set(&arn, "run-1", "WorkerStartedBy", s("mwaa-scheduler")).await;
    world.set(&arn, "run-1", "WorkerClusters", AttributeValue::Ss(vec![world.cluster.clone()])).await;

    drain_stream(&world, &mut tail, &finalizer).await;
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 3]);
    assert_eq!(world.task_statuses(&orphans).await, vec!["STOPPED"; 2], "the startedBy sweep stopped the orphans");
    let stopped = event(&item, "Stopped");
    assert_eq!(stopped["WorkersStopped"].as_n().unwrap(), "5");
    assert_eq!(stopped["OrphansStopped"].as_n().unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_batches_give_one_stopped_transition() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    let (event, n) = tail.next_event(&world.streams).await;
    assert!(n >= 2);
    let event_again: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
    let (a, b) = tokio::join!(handle_batch(&finalizer, event, None), handle_batch(&finalizer, event_again, None));
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    // ...and once more after the fact.
    let mut again = world.tail().await;
    let (all, _) = again.next_event(&world.streams).await;
    assert!(handle_batch(&finalizer, all, None).await.batch_item_failures.is_empty());

    let stopped: Vec<_> = world.status_changes().await.into_iter().filter(|(_, n)| n == "STOPPED").collect();
    assert_eq!(stopped.len(), 1, "exactly one STOPPED transition");
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(events(&item), vec!["Started", "StopRequested", "Stopped"]);
}

/// parent → child → grandchild, each with workers, children linked by `ChildRuns`.
async fn tree(world: &World, policy: &str) -> (String, Vec<Vec<String>>) {
    let arn = workflow_arn("tree");
    let mut all_workers = Vec::new();
    for run in ["parent", "child", "grandchild"] {
        let w = world.start_workers(2).await;
        world.put_run(&arn, run, "RUNNING", &w).await;
        all_workers.push(w);
    }
    for (parent, child) in [("parent", "child"), ("child", "grandchild")] {
        let link = AttributeValue::L(vec![AttributeValue::M(
            [("WorkflowArn".to_owned(), s(&arn)), ("RunId".to_owned(), s(child))].into(),
        )]);
        world.set(&arn, parent, "ChildRuns", link).await;
        world.set(&arn, parent, "ChildPolicy", s(policy)).await;
    }
    (arn, all_workers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_a_whole_tree_of_depth_two() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    let (arn, workers) = tree(&world, "TERMINATE").await;

    call(&api, &http_event(Some(STOP), &stop_body(&arn, "parent"), As::Iam(ACCOUNT, ALICE))).await;
    drain_stream(&world, &mut tail, &finalizer).await;

    for (run, w) in ["parent", "child", "grandchild"].iter().zip(&workers) {
        let item = world.get_item(&arn, run).await.unwrap();
        assert_eq!(item["Status"].as_s().unwrap(), "STOPPED", "{run}");
        assert_eq!(world.task_statuses(w).await, vec!["STOPPED"; 2], "{run}");
    }
    let parent = world.get_item(&arn, "parent").await.unwrap();
    assert_eq!(events(&parent), vec!["Started", "StopRequested", "ChildPolicyApplied", "Stopped"]);
    let applied = event(&parent, "ChildPolicyApplied");
    assert_eq!(applied["Policy"].as_s().unwrap(), "TERMINATE");
    assert_eq!(applied["Affected"].as_n().unwrap(), "1");
    let child = world.get_item(&arn, "child").await.unwrap();
    assert_eq!(child["StopRequestedBy"].as_s().unwrap(), &format!("parent-run:{arn}/parent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_cancel_marks_children_and_abandon_leaves_them_running() {
    for policy in ["REQUEST_CANCEL", "ABANDON"] {
        let world = World::new().await;
        let api = world.api(AuthMode::Iam).await;
        let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
        let mut tail = world.tail().await;
        let (arn, workers) = tree(&world, policy).await;
        call(&api, &http_event(Some(STOP), &stop_body(&arn, "parent"), As::Iam(ACCOUNT, ALICE))).await;
        drain_stream(&world, &mut tail, &finalizer).await;

        assert_eq!(world.get_item(&arn, "parent").await.unwrap()["Status"].as_s().unwrap(), "STOPPED");
        assert_eq!(world.task_statuses(&workers[0]).await, vec!["STOPPED"; 2]);
        let child = world.get_item(&arn, "child").await.unwrap();
        assert_eq!(child["Status"].as_s().unwrap(), "RUNNING", "{policy}: the child keeps running");
        assert_eq!(world.task_statuses(&workers[1]).await, vec!["RUNNING"; 2], "{policy}");
        let parent = world.get_item(&arn, "parent").await.unwrap();
        assert_eq!(event(&parent, "ChildPolicyApplied")["Policy"].as_s().unwrap(), policy);
        if policy == "REQUEST_CANCEL" {
            assert_eq!(child["CancelRequested"].as_bool().unwrap(), &true);
            assert_eq!(events(&child), vec!["Started", "CancelRequested"]);
        } else {
            assert!(!child.contains_key("CancelRequested"));
            assert_eq!(events(&child), vec!["Started"]);
        }
        assert_eq!(world.get_item(&arn, "grandchild").await.unwrap()["Status"].as_s().unwrap(), "RUNNING");
    }
}

/// A scheduler that wrote some optional attributes with the wrong type must
/// not leave a run stuck in STOPPING with its workers running: the stop,
/// GetWorkflowRun and the finalizer read those attributes as absent, and a
/// malformed `ChildRuns` entry is reported as skipped, not silently lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongly_typed_optional_attributes_never_make_a_run_unstoppable() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    let arn = workflow_arn("sloppy");
    let workers = world.start_workers(3).await;
    let child_workers = world.start_workers(2).await;
    let orphans = world.launch("sloppy-scheduler", 2).await; // launched, never registered
    world.put_run(&arn, "parent", "RUNNING", &workers).await;
    world.put_run(&arn, "child", "RUNNING", &child_workers).await;
    for (name, value) in [
        ("WorkflowVersion", AttributeValue::Bool(true)),
        ("CancelRequested", s("no")),
        ("RunType", AttributeValue::N("7".into())),
        // One cluster as S instead of SS: still where the sweep looks.
        ("WorkerClusters", s(&world.cluster)),
        ("WorkerStartedBy", s("sloppy-scheduler")),
        ("ChildPolicy", s("TERMINATE")),
        (
            "ChildRuns",
            AttributeValue::L(vec![
                AttributeValue::M([("WorkflowArn".to_owned(), s(&arn)), ("RunId".to_owned(), s("child"))].into()),
                AttributeValue::M([("RunId".to_owned(), AttributeValue::N("9".into()))].into()),
            ]),
        ),
    ] {
        world.set(&arn, "parent", name, value).await;
    }

    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "parent"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 3], "the fan-out ran");
    let get = call(&api, &http_event(Some(GET), &stop_body(&arn, "parent"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!((get.status, get.json["RunDetail"]["RunState"].clone()), (200, json!("STOPPING")), "{}", get.json);
    assert!(get.json.get("WorkflowVersion").is_none(), "a BOOL version is not shown as one: {}", get.json);

    drain_stream(&world, &mut tail, &finalizer).await;
    let parent = world.get_item(&arn, "parent").await.unwrap();
    assert_eq!(parent["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(world.task_statuses(&orphans).await, vec!["STOPPED"; 2], "the startedBy sweep ran");
    assert_eq!(event(&parent, "Stopped")["OrphansStopped"].as_n().unwrap(), "2");
    let applied = event(&parent, "ChildPolicyApplied");
    let count = |name: &str| applied[name].as_n().unwrap().clone();
    assert_eq!((count("Children"), count("Affected"), count("Skipped")), ("2".into(), "1".into(), "1".into()));
    assert_eq!(world.get_item(&arn, "child").await.unwrap()["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(world.task_statuses(&child_workers).await, vec!["STOPPED"; 2]);
    // The stored attributes themselves are left as the scheduler wrote them.
    assert_eq!(parent["WorkflowVersion"], AttributeValue::Bool(true));
}
