//! Items a scheduler can write are read as hostile (issue 22 items 6 and 8),
//! against moto through the real SDKs: a mistyped `History` no longer makes a
//! run unstoppable, a child the finalizer cannot act on never strands its
//! parent, and a child of another account is never touched.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use mwaa_stop::lambda::http::AuthMode;

use crate::kit::*;

fn events(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    history_of(item)
}

fn event(item: &HashMap<String, AttributeValue>, name: &str) -> HashMap<String, AttributeValue> {
    item["History"]
        .as_l()
        .unwrap()
        .iter()
        .map(|e| e.as_m().unwrap().clone())
        .find(|e| e["Event"].as_s().unwrap() == name)
        .unwrap_or_else(|| panic!("no {name} event"))
}

fn child_link(children: &[(&str, &str)]) -> AttributeValue {
    AttributeValue::L(
        children
            .iter()
            .map(|(arn, run)| {
                AttributeValue::M(HashMap::from([("WorkflowArn".to_owned(), s(arn)), ("RunId".to_owned(), s(run))]))
            })
            .collect(),
    )
}

/// Before: the stop's `list_append` failed with DynamoDB's
/// `ValidationException` on a `History` that is not a list: a permanent 500,
/// and the workers kept billing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_is_not_a_list_no_longer_makes_a_run_unstoppable() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    world.set(&arn, "run-1", "History", s("a scheduler wrote a string here")).await;

    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!((reply.status, reply.json["Status"].as_str()), (200, Some("STOPPING")), "{}", reply.json);
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 2]);
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(events(&item), vec!["HistoryReplaced", "StopRequested"]);
    assert_eq!(event(&item, "HistoryReplaced")["Type"].as_s().unwrap(), "S", "what was replaced is recorded");

    let mut tail = world.tail().await;
    drain_stream(&world, &mut tail, &finalizer).await;
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(events(&item), vec!["HistoryReplaced", "StopRequested", "Stopped"]);
}

/// Before: a child whose `Status` is not a string failed the parent's
/// finalize on every delivery (the child's item "does not follow the table
/// contract"), so the parent stayed STOPPING; a child whose `History` is not
/// a list failed it the same way. Now the first is skipped with its reason,
/// the second stopped, and the parent ends STOPPED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_the_finalizer_cannot_act_on_never_strands_its_parent() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let parent_workers = world.start_workers(1).await;
    world.put_run(&arn, "parent", "RUNNING", &parent_workers).await;
    world.put_run(&arn, "mistyped-status", "RUNNING", &[]).await;
    world.set(&arn, "mistyped-status", "Status", AttributeValue::N("3".into())).await;
    let child_workers = world.start_workers(1).await;
    world.put_run(&arn, "mistyped-history", "RUNNING", &child_workers).await;
    world.set(&arn, "mistyped-history", "History", AttributeValue::N("7".into())).await;
    world.set(&arn, "parent", "ChildRuns", child_link(&[(&arn, "mistyped-status"), (&arn, "mistyped-history")])).await;

    let mut tail = world.tail().await;
    call(&api, &http_event(Some(STOP), &stop_body(&arn, "parent"), As::Iam(ACCOUNT, ALICE))).await;
    drain_stream(&world, &mut tail, &finalizer).await;

    let parent = world.get_item(&arn, "parent").await.unwrap();
    assert_eq!(parent["Status"].as_s().unwrap(), "STOPPED", "the parent is never stranded");
    let applied = event(&parent, "ChildPolicyApplied");
    assert_eq!((applied["Affected"].as_n().unwrap().as_str(), applied["Skipped"].as_n().unwrap().as_str()), ("1", "1"));
    let skipped = applied["SkippedChildren"].as_l().unwrap();
    assert_eq!(skipped.len(), 1);
    let skipped = skipped[0].as_m().unwrap();
    assert_eq!(skipped["RunId"].as_s().unwrap(), "mistyped-status");
    assert!(skipped["Reason"].as_s().unwrap().contains("cannot be changed"), "{skipped:?}");
    let child = world.get_item(&arn, "mistyped-history").await.unwrap();
    assert_eq!(child["Status"].as_s().unwrap(), "STOPPED", "the repairable child is stopped, then finalized");
    assert_eq!(world.task_statuses(&child_workers).await, vec!["STOPPED"]);
    assert_eq!(
        world.get_item(&arn, "mistyped-status").await.unwrap()["Status"],
        AttributeValue::N("3".into()),
        "an item we cannot act on is left as it is"
    );
}

/// Before: a run of account A listing a run of account B among its children
/// got B's run terminated when A's run was stopped (a confused deputy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_of_another_account_is_skipped_and_never_stopped() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let theirs = format!("arn:aws:airflow-serverless:{REGION}:{OTHER_ACCOUNT}:workflow/etl-abcDEF1234");
    let other_region = format!("arn:aws:airflow-serverless:eu-west-1:{ACCOUNT}:workflow/etl-abcDEF1234");
    world.put_run(&arn, "parent", "RUNNING", &[]).await;
    let their_workers = world.start_workers(2).await;
    world.put_run(&theirs, "victim", "RUNNING", &their_workers).await;
    world.put_run(&other_region, "elsewhere", "RUNNING", &[]).await;
    world.set(&arn, "parent", "ChildRuns", child_link(&[(&theirs, "victim"), (&other_region, "elsewhere")])).await;
    for policy in ["TERMINATE", "REQUEST_CANCEL"] {
        world.set(&arn, "parent", "ChildPolicy", s(policy)).await;
        world.set(&arn, "parent", "Status", s("RUNNING")).await;
        let mut tail = world.tail().await;
        call(&api, &http_event(Some(STOP), &stop_body(&arn, "parent"), As::Iam(ACCOUNT, ALICE))).await;
        drain_stream(&world, &mut tail, &finalizer).await;

        let parent = world.get_item(&arn, "parent").await.unwrap();
        assert_eq!(parent["Status"].as_s().unwrap(), "STOPPED", "{policy}");
        let victim = world.get_item(&theirs, "victim").await.unwrap();
        assert_eq!(victim["Status"].as_s().unwrap(), "RUNNING", "{policy}: another account's run is never touched");
        assert!(!victim.contains_key("CancelRequested"), "{policy}");
        assert_eq!(events(&victim), vec!["Started"], "{policy}");
        assert_eq!(world.task_statuses(&their_workers).await, vec!["RUNNING"; 2], "{policy}");
        assert_eq!(world.get_item(&other_region, "elsewhere").await.unwrap()["Status"].as_s().unwrap(), "RUNNING");
        let applied = history_items(&parent).into_iter().rfind(|e| e["Event"].as_s().unwrap() == "ChildPolicyApplied");
        let applied = applied.expect("a ChildPolicyApplied event");
        assert_eq!(applied["Skipped"].as_n().unwrap(), "2", "{policy}");
        for child in applied["SkippedChildren"].as_l().unwrap() {
            let reason = child.as_m().unwrap()["Reason"].as_s().unwrap();
            assert!(reason.contains("outside the parent's account"), "{policy}: {reason}");
        }
    }
}

fn history_items(item: &HashMap<String, AttributeValue>) -> Vec<HashMap<String, AttributeValue>> {
    item["History"].as_l().unwrap().iter().map(|e| e.as_m().unwrap().clone()).collect()
}
