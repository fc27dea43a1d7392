//! The finalizer's decisions with in-memory fakes and tokio's paused clock:
//! waiting for workers, re-stopping, orphan sweeps, child policies,
//! redelivery, bounds and batch item failures.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use mwaa_stop::domain::{ChildPolicy, RunKey, RunStatus, WorkflowArn};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits, RunOutcome};
use mwaa_stop::lambda::stream::{classify, handle_batch, RecordIntent};
use mwaa_stop::ports::ChildRef;
use serde_json::json;

use crate::kit::fakes::{fake_finalizer_limits, run_record, MemEcs, MemTable};
use crate::kit::stream::{stream_batch as batch, stream_record as record};
use crate::kit::workflow_arn;

fn arn(name: &str) -> String {
    workflow_arn(name)
}

fn key(name: &str, run: &str) -> RunKey {
    RunKey { workflow_arn: WorkflowArn::parse(&arn(name)).unwrap(), run_id: run.into() }
}

fn run(name: &str, run_id: &str, status: RunStatus, workers: &[&str]) -> mwaa_stop::ports::RunRecord {
    run_record(&arn(name), run_id, status, workers)
}

fn limits() -> FinalizerLimits {
    fake_finalizer_limits()
}

fn failures(resp: &aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    resp.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect()
}

#[tokio::test(start_paused = true)]
async fn waits_until_every_worker_is_really_stopped_before_writing_stopped() {
    let table = MemTable::default();
    let k = key("etl", "r1");
    table.put(run("etl", "r1", RunStatus::Stopping, &["t1", "t2", "t3"]));
    let fleet = MemEcs { stop_lag: 3, ..Default::default() };
    fleet.running(&["t1", "t2"]); // the API's StopTask never reached these two
    fleet.stopping("t3"); // this one is draining
    let f = Finalizer::new(table, fleet, limits());
    let resp = handle_batch(&f, batch(vec![record(&k, "STOPPING", "100")]), None).await;
    assert!(failures(&resp).is_empty());
    assert_eq!(f.store().status(&k), "STOPPED");
    for t in ["t1", "t2", "t3"] {
        assert_eq!(f.fleet().last_status(t), "STOPPED");
    }
    // STOPPED was written only after several polls: none before every task was STOPPED.
    assert!(f.fleet().describe_calls.load(Ordering::SeqCst) >= 4);
    assert_eq!(f.fleet().stop_calls.load(Ordering::SeqCst), 2, "StopTask again only for tasks not told to stop");
    let finalized = f.store().finalized.lock().unwrap();
    assert_eq!(finalized[0].1.workers_stopped, 3);
    assert_eq!(f.store().events_of(&k), vec!["Stopped"]);
}

/// 150 workers in one cluster and 101 in another: `DescribeTasks` is asked
/// per cluster, at most 100 tasks a call, and every task is stopped in its
/// own cluster.
#[tokio::test(start_paused = true)]
async fn describes_are_grouped_by_cluster_and_chunked_at_one_hundred() {
    let table = MemTable::default();
    let k = key("etl", "big");
    let tasks: Vec<String> =
        (0..150).map(|i| format!("blue/t{i:03}")).chain((0..101).map(|i| format!("green/t{i:03}"))).collect();
    let mut r = run("etl", "big", RunStatus::Stopping, &[]);
    r.workers = tasks.iter().map(|t| (t.clone(), t.split_once('/').unwrap().0.to_owned())).collect();
    table.put(r);
    let fleet = MemEcs::default();
    fleet.running(&tasks.iter().map(String::as_str).collect::<Vec<_>>());
    let f = Finalizer::new(table, fleet, limits());
    let out = f.finalize_run(&k, None).await.unwrap();
    assert_eq!(
        out,
        RunOutcome::Stopped { workers_stopped: 251, orphans_stopped: 0, child_policy: None, unconfirmed: 0 }
    );
    let fleet = f.fleet();
    assert_eq!(fleet.wrong_cluster.lock().unwrap().clone(), Vec::<String>::new());
    assert_eq!(fleet.stop_calls.load(Ordering::SeqCst), 251, "each worker told to stop once");
    let describes = fleet.describes.lock().unwrap().clone();
    assert!(describes.iter().all(|(_, n)| (1..=100).contains(n)), "{describes:?}");
    let first_pass: Vec<(&str, usize)> = describes.iter().take(4).map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(first_pass, vec![("blue", 100), ("blue", 50), ("green", 100), ("green", 1)]);
    for t in &tasks {
        assert_eq!(fleet.last_status(t), "STOPPED", "{t}");
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_unknown_to_ecs_count_as_stopped() {
    let table = MemTable::default();
    let k = key("etl", "r1");
    table.put(run("etl", "r1", RunStatus::Stopping, &["gone-1", "gone-2"]));
    let f = Finalizer::new(table, MemEcs::default(), limits());
    let out = f.finalize_run(&k, None).await.unwrap();
    assert_eq!(out, RunOutcome::Stopped { workers_stopped: 2, orphans_stopped: 0, child_policy: None, unconfirmed: 0 });
    assert_eq!(f.fleet().stop_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn unregistered_workers_are_found_by_started_by_and_stopped() {
    let table = MemTable::default();
    let k = key("etl", "r1");
    let mut r = run("etl", "r1", RunStatus::Stopping, &["t1"]);
    r.worker_started_by = Some("run/r1".into());
    r.worker_clusters = Some(vec!["c".into()]);
    table.put(r);
    let fleet = MemEcs::default();
    fleet.launched_by("t1", "run/r1");
    fleet.launched_by("orphan-1", "run/r1");
    fleet.launched_by("orphan-2", "run/r1");
    fleet.launched_by("other-run", "run/r2");
    let f = Finalizer::new(table, fleet, limits());
    let out = f.finalize_run(&k, None).await.unwrap();
    assert_eq!(out, RunOutcome::Stopped { workers_stopped: 3, orphans_stopped: 2, child_policy: None, unconfirmed: 0 });
    for t in ["t1", "orphan-1", "orphan-2"] {
        assert_eq!(f.fleet().last_status(t), "STOPPED", "{t}");
    }
    assert_eq!(f.fleet().last_status("other-run"), "RUNNING", "another run's worker is not touched");
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_will_not_stop_is_a_batch_item_failure_and_other_runs_do_not_wait() {
    let table = MemTable::default();
    let stuck = key("etl", "stuck");
    let quick = key("etl", "quick");
    table.put(run("etl", "stuck", RunStatus::Stopping, &["stuck-task"]));
    table.put(run("etl", "quick", RunStatus::Stopping, &["q1"]));
    let fleet = MemEcs { stuck: vec!["stuck-task"], ..Default::default() };
    fleet.running(&["stuck-task", "q1"]);
    let f = Finalizer::new(table, fleet, limits());
    let started = tokio::time::Instant::now();
    let resp =
        handle_batch(&f, batch(vec![record(&stuck, "STOPPING", "200"), record(&quick, "STOPPING", "201")]), None).await;
    assert_eq!(failures(&resp), vec!["200"]);
    assert_eq!(f.store().status(&stuck), "STOPPING", "never STOPPED while a worker runs");
    assert_eq!(f.store().status(&quick), "STOPPED");
    let at = f.store().finalize_at.lock().unwrap().clone();
    assert_eq!(at.len(), 1);
    assert!(at[0].1 - started < Duration::from_secs(2), "the quick run finished without waiting for the stuck one");
    assert!(started.elapsed() <= limits().wait + Duration::from_secs(1), "the wait is bounded");
}

#[tokio::test(start_paused = true)]
async fn the_lambda_deadline_bounds_the_wait() {
    let table = MemTable::default();
    let k = key("etl", "stuck");
    table.put(run("etl", "stuck", RunStatus::Stopping, &["stuck-task"]));
    let fleet = MemEcs { stuck: vec!["stuck-task"], ..Default::default() };
    fleet.running(&["stuck-task"]);
    let f = Finalizer::new(table, fleet, limits());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let out = f.finalize_run(&k, Some(deadline)).await.unwrap();
    assert_eq!(out, RunOutcome::Pending { still_running: 1 });
    assert!(tokio::time::Instant::now() <= deadline);
}

#[tokio::test(start_paused = true)]
async fn ecs_errors_are_retried_within_the_bound() {
    let table = MemTable::default();
    let k = key("etl", "r1");
    table.put(run("etl", "r1", RunStatus::Stopping, &["t1"]));
    let fleet = MemEcs::default();
    fleet.running(&["t1"]);
    fleet.describe_failures.store(3, Ordering::SeqCst);
    let f = Finalizer::new(table, fleet, limits());
    assert!(matches!(f.finalize_run(&k, None).await.unwrap(), RunOutcome::Stopped { .. }));
}

#[tokio::test(start_paused = true)]
async fn redelivery_and_duplicate_records_give_one_transition() {
    let table = MemTable::default();
    let k = key("etl", "r1");
    table.put(run("etl", "r1", RunStatus::Stopping, &["t1"]));
    let fleet = MemEcs::default();
    fleet.stopping("t1");
    let f = Finalizer::new(table, fleet, limits());
    let records = vec![record(&k, "STOPPING", "300"), record(&k, "STOPPING", "301")];
    let first = handle_batch(&f, batch(records.clone()), None).await;
    let again = handle_batch(&f, batch(records), None).await;
    assert!(failures(&first).is_empty() && failures(&again).is_empty());
    assert_eq!(f.store().finalized.lock().unwrap().len(), 1);
    assert_eq!(f.store().events_of(&k), vec!["Stopped"]);
}

#[tokio::test(start_paused = true)]
async fn runs_not_stopping_are_ignored_cheaply() {
    let table = MemTable::default();
    let done = key("etl", "done");
    table.put(run("etl", "done", RunStatus::Stopped, &[]));
    let f = Finalizer::new(table, MemEcs::default(), limits());
    let other = key("etl", "running");
    let mut remove = record(&other, "STOPPING", "402");
    remove["eventName"] = json!("REMOVE");
    let resp =
        handle_batch(&f, batch(vec![record(&other, "RUNNING", "400"), record(&done, "STOPPING", "401"), remove]), None)
            .await;
    assert!(failures(&resp).is_empty());
    assert!(f.store().finalized.lock().unwrap().is_empty());
    assert_eq!(f.fleet().describe_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn poison_records_are_reported_not_dropped() {
    let f = Finalizer::new(MemTable::default(), MemEcs::default(), limits());
    let k = key("etl", "r1");
    let mut bad_key = record(&k, "STOPPING", "500");
    bad_key["dynamodb"]["Keys"] = json!({"WorkflowArn": {"S": "not-an-arn"}, "RunId": {"S": "r1"}});
    let mut no_key = record(&k, "STOPPING", "501");
    no_key["dynamodb"]["Keys"] = json!({"Other": {"N": "1"}});
    let resp = handle_batch(&f, batch(vec![bad_key, no_key]), None).await;
    assert_eq!(failures(&resp), vec!["500", "501"]);
}

/// A `Status` that is not a string is not `STOPPING`: its record is ignored,
/// as the deployed stream filter (`NewImage.Status = STOPPING`) would drop it,
/// rather than reported as poison, which would hold up the records after it
/// in its shard (issue 22 item 6: a scheduler's type slip on one run never
/// delays another run's stop).
#[tokio::test(start_paused = true)]
async fn a_record_whose_status_is_not_a_string_is_ignored_not_poison() {
    let f = Finalizer::new(MemTable::default(), MemEcs::default(), limits());
    let k = key("etl", "r1");
    let mut number = record(&k, "STOPPING", "502");
    number["dynamodb"]["NewImage"]["Status"] = json!({"N": "7"});
    let mut map = record(&k, "STOPPING", "503");
    map["dynamodb"]["NewImage"]["Status"] = json!({"M": {"S": {"S": "STOPPING"}}});
    assert_eq!(classify(&batch(vec![number.clone()]).records[0]), RecordIntent::Ignore);
    let resp = handle_batch(&f, batch(vec![number, map]), None).await;
    assert!(failures(&resp).is_empty());
}

#[test]
fn classify_reads_only_the_new_image_status_and_keys() {
    let k = key("etl", "r1");
    let ev = batch(vec![record(&k, "STOPPING", "1"), record(&k, "RUNNING", "2")]);
    assert_eq!(classify(&ev.records[0]), RecordIntent::Finalize(k));
    assert_eq!(classify(&ev.records[1]), RecordIntent::Ignore);
}

fn parent_with_children(table: &MemTable, policy: Option<&str>) -> RunKey {
    let mut parent = run("parent", "p1", RunStatus::Stopping, &[]);
    parent.child_runs = Some(vec![
        ChildRef { workflow_arn: arn("child"), run_id: "c-running".into() },
        ChildRef { workflow_arn: arn("child"), run_id: "c-done".into() },
        ChildRef { workflow_arn: arn("child"), run_id: "c-missing".into() },
        ChildRef { workflow_arn: "bogus".into(), run_id: "c-bad".into() },
    ]);
    parent.child_policy = policy.map(str::to_owned);
    table.put(parent);
    table.put(run("child", "c-running", RunStatus::Running, &[]));
    table.put(run("child", "c-done", RunStatus::Success, &[]));
    key("parent", "p1")
}

#[tokio::test(start_paused = true)]
async fn terminate_moves_active_children_to_stopping() {
    let table = MemTable::default();
    let p = parent_with_children(&table, None);
    let f = Finalizer::new(table, MemEcs::default(), limits());
    let RunOutcome::Stopped { child_policy: Some(applied), .. } = f.finalize_run(&p, None).await.unwrap() else {
        panic!("expected STOPPED with a child policy")
    };
    assert_eq!(
        (applied.policy, applied.children, applied.affected, applied.skipped),
        (ChildPolicy::Terminate, 4, 1, 3)
    );
    assert_eq!(f.store().status(&key("child", "c-running")), "STOPPING");
    assert_eq!(f.store().status(&key("child", "c-done")), "SUCCESS");
    assert_eq!(f.store().events_of(&p), vec!["ChildPolicyApplied", "Stopped"]);
    let child = f.store().run(&key("child", "c-running"));
    assert_eq!(child.stop_requested_by.unwrap(), format!("parent-run:{}/p1", arn("parent")));
}

#[tokio::test(start_paused = true)]
async fn request_cancel_marks_active_children_once_and_abandon_leaves_them() {
    let table = MemTable::default();
    let p = parent_with_children(&table, Some("REQUEST_CANCEL"));
    let f = Finalizer::new(table, MemEcs::default(), limits());
    let RunOutcome::Stopped { child_policy: Some(applied), .. } = f.finalize_run(&p, None).await.unwrap() else {
        panic!()
    };
    assert_eq!((applied.policy, applied.affected), (ChildPolicy::RequestCancel, 1));
    let c = key("child", "c-running");
    assert_eq!(f.store().status(&c), "RUNNING");
    assert_eq!(f.store().events_of(&c), vec!["CancelRequested"]);

    let table = MemTable::default();
    let p = parent_with_children(&table, Some("ABANDON"));
    let f = Finalizer::new(table, MemEcs::default(), limits());
    let RunOutcome::Stopped { child_policy: Some(applied), .. } = f.finalize_run(&p, None).await.unwrap() else {
        panic!()
    };
    assert_eq!((applied.policy, applied.affected), (ChildPolicy::Abandon, 0));
    assert_eq!(f.store().status(&key("child", "c-running")), "RUNNING");
    assert!(f.store().events_of(&key("child", "c-running")).is_empty());
}

/// The committed sample event is a real stream event the finalizer acts on.
#[tokio::test(start_paused = true)]
async fn the_sample_stream_event_finalizes_its_run() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events/stop-finalizer-stream.json");
    let event: Event = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let RecordIntent::Finalize(k) = classify(&event.records[0]) else { panic!("the sample must ask for finalizing") };
    assert_eq!(k.run_id, "manual-2026-11-21");
    let table = MemTable::default();
    let mut r = run("nightly-etl", "x", RunStatus::Stopping, &[]);
    r.workflow_arn = k.workflow_arn.to_string();
    r.run_id = k.run_id.clone();
    table.put(r);
    let f = Finalizer::new(table, MemEcs::default(), limits());
    assert!(failures(&handle_batch(&f, event, None).await).is_empty());
    assert_eq!(f.store().status(&k), "STOPPED");
}
