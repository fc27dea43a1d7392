//! The stop guarantee at its edges, against moto through the real SDKs:
//! the reconciler finalizes runs the stream never delivered or gave up on,
//! with exactly one `STOPPING → STOPPED` however many passes run; a run at
//! DynamoDB's item size limit is stopped and finalized; the documented worker
//! registration refuses a worker that would not fit.
//!
//! moto's update is made all-or-nothing by `localdev.moto_serial`, as
//! DynamoDB's is; its item limit (405,000 bytes of its own accounting) is
//! close to DynamoDB's 400 KiB.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use mwaa_stop::lambda::http::AuthMode;
use mwaa_stop::ports::ReconcilerStore;

use crate::kit::proxy::{Action, Proxy, Rule, When};
use crate::kit::*;

fn history(item: &HashMap<String, AttributeValue>) -> Vec<HashMap<String, AttributeValue>> {
    item["History"].as_l().unwrap().iter().map(|e| e.as_m().unwrap().clone()).collect()
}

fn stopped_event(item: &HashMap<String, AttributeValue>) -> HashMap<String, AttributeValue> {
    history(item).into_iter().find(|e| e["Event"].as_s().unwrap() == "Stopped").expect("a Stopped event")
}

/// `(old, new)` status changes of one run in the stream.
async fn transitions(world: &World, run_id: &str) -> Vec<(String, String)> {
    world.stream_changes().await.into_iter().filter(|(r, _, _)| r == run_id).map(|(_, o, n)| (o, n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stopping_index_holds_exactly_the_stopping_runs() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    for run in ["a", "b"] {
        world.put_run(&arn, run, "RUNNING", &[]).await;
        let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, run), As::Iam(ACCOUNT, ALICE))).await;
        assert_eq!(reply.json["Status"], "STOPPING");
    }
    world.put_run(&arn, "c", "RUNNING", &[]).await;
    let item = world.get_item(&arn, "a").await.unwrap();
    assert_eq!(item["StoppingSince"], item["StopRequestedAt"]);
    assert!(item["StoppingShard"].as_s().unwrap().parse::<u32>().unwrap() < 8);

    let mut found: Vec<String> =
        finalizer.store().stopping_runs().await.unwrap().into_iter().map(|r| r.run_id).collect();
    found.sort();
    assert_eq!(found, vec!["a", "b"]);

    let mut tail = world.tail().await;
    drain_stream(&world, &mut tail, &finalizer).await;
    let item = world.get_item(&arn, "a").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert!(!item.contains_key("StoppingShard") && !item.contains_key("StoppingSince"), "out of the index");
    assert_eq!(stopped_event(&item)["FinalizedBy"].as_s().unwrap(), "stream");
    assert!(finalizer.store().stopping_runs().await.unwrap().is_empty());
}

/// The event source mapping disabled (nothing delivered): the reconciler
/// alone brings the run to STOPPED with every worker stopped, in one
/// transition however many passes run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_stream_delivery_the_reconciler_alone_stops_the_run_once() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let reconciler = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(3).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!(reply.json["Status"], "STOPPING");

    let young = reconciler.reconcile(Duration::from_secs(3600), None).await.unwrap();
    assert_eq!((young.found, young.stopped), (0, 0), "not yet stranded: left to the stream");
    assert_eq!(world.get_item(&arn, "run-1").await.unwrap()["Status"].as_s().unwrap(), "STOPPING");

    let mut stopped = 0;
    for _ in 0..3 {
        stopped += reconciler.reconcile(Duration::ZERO, None).await.unwrap().stopped;
    }
    assert_eq!(stopped, 1);
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(stopped_event(&item)["FinalizedBy"].as_s().unwrap(), "reconciler");
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 3]);
    assert_eq!(
        transitions(&world, "run-1").await,
        vec![("RUNNING".into(), "STOPPING".into()), ("STOPPING".into(), "STOPPED".into())]
    );
}

/// The finalizer fails on every delivery until the stream gives up (the
/// failure destination); the reconciler then finishes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_stream_gave_up_on_is_finalized_by_the_reconciler() {
    let world = World::new().await;
    let ecs =
        Proxy::with_rules(&world.moto.url, vec![Rule::new("DescribeTasks", When::Always, Action::ServerError)]).await;
    let api = world.api(AuthMode::Iam).await;
    let limits = mwaa_stop::finalize::FinalizerLimits { wait: Duration::from_millis(300), ..test_finalizer_limits() };
    let failing = world.finalizer_via(&ecs.url, limits).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;

    let mut tail = world.tail().await;
    let delivery = deliver(&world.streams, &mut tail, &failing, 2).await;
    assert_eq!(delivery.retries, 2);
    assert_eq!(delivery.failed_to_destination.len(), 1, "{delivery:?}");
    assert_eq!(world.get_item(&arn, "run-1").await.unwrap()["Status"].as_s().unwrap(), "STOPPING");

    ecs.clear_rules();
    let report = failing.reconcile(Duration::ZERO, None).await.unwrap();
    assert_eq!((report.found, report.stopped), (1, 1));
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(stopped_event(&item)["FinalizedBy"].as_s().unwrap(), "reconciler");
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_racing_the_stream_finalizer_makes_one_transition() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    // The stream side's ECS answers slowly, so both are verifying workers at
    // once and both reach the STOPPED write.
    let slow_ecs = Proxy::with_rules(
        &world.moto.url,
        vec![Rule::new("DescribeTasks", When::Always, Action::Delay(Duration::from_millis(300)))],
    )
    .await;
    let stream_side = world.finalizer_via(&slow_ecs.url, test_finalizer_limits()).await;
    let reconciler = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    let mut tail = world.tail().await;
    let (delivered, reconciled) =
        tokio::join!(deliver(&world.streams, &mut tail, &stream_side, 0), reconciler.reconcile(Duration::ZERO, None));
    assert!(delivered.failed_to_destination.is_empty() && delivered.retries == 0, "{delivered:?}");
    assert_eq!(reconciled.unwrap().found, 1);
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    let stopped: Vec<_> = history(&item).into_iter().filter(|e| e["Event"].as_s().unwrap() == "Stopped").collect();
    assert_eq!(stopped.len(), 1, "one Stopped event");
    assert_eq!(transitions(&world, "run-1").await.iter().filter(|(_, n)| n == "STOPPED").count(), 1);
}

// ------------------------------------------------------ the item size limit

/// moto's own accounting of an item (`Item.size()`): names plus values, a
/// map's keys, no overhead.
fn moto_size(item: &HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => l.iter().map(value).sum(),
            AttributeValue::M(m) => m.iter().map(|(k, v)| k.len() + value(v)).sum(),
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// Pad the run's history with 1 KB events until the item is `below` bytes
/// short of moto's 405,000-byte limit, as a long-running scheduler's
/// heartbeats would.
async fn fill_to_the_limit(world: &World, arn: &str, run_id: &str, below: usize) {
    let mut item = world.get_item(arn, run_id).await.unwrap();
    let mut events = item["History"].as_l().unwrap().clone();
    let event = |note: usize| {
        AttributeValue::M(HashMap::from([
            ("Event".to_owned(), s("Heartbeat")),
            ("At".to_owned(), s("2026-11-20T10:00:05.000Z")),
            ("Note".to_owned(), s(&"x".repeat(note))),
        ]))
    };
    let target = 405_000 - below;
    loop {
        item.insert("History".into(), AttributeValue::L(events.clone()));
        let left = target.saturating_sub(moto_size(&item));
        if left < 1_100 {
            events.push(event(left.saturating_sub(80)));
            item.insert("History".into(), AttributeValue::L(events));
            break;
        }
        events.push(event(1_000));
    }
    assert!(moto_size(&item) <= target && moto_size(&item) > target - 200, "{}", moto_size(&item));
    world.ddb.put_item().table_name(&world.table).set_item(Some(item)).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_at_the_item_size_limit_is_stopped_and_finalized_with_its_workers() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(20).await;
    world.put_run(&arn, "big", "RUNNING", &workers).await;
    fill_to_the_limit(&world, &arn, "big", 50).await;
    let before = world.get_item(&arn, "big").await.unwrap();

    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "big"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!((reply.status, reply.json["Status"].as_str()), (200, Some("STOPPING")), "{}", reply.json);
    let item = world.get_item(&arn, "big").await.unwrap();
    let dropped: usize = item["HistoryEventsDropped"].as_n().unwrap().parse().unwrap();
    assert!(dropped > 0, "the oldest events made room");
    assert_eq!(history(&item).len() + dropped, history(&before).len() + 1, "every event kept or counted");
    assert_eq!(history(&item).last().unwrap()["Event"].as_s().unwrap(), "StopRequested", "who stopped it is kept");

    let mut tail = world.tail().await;
    drain_stream(&world, &mut tail, &finalizer).await;
    let item = world.get_item(&arn, "big").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert_eq!(stopped_event(&item)["WorkersStopped"].as_n().unwrap(), "20");
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 20]);
}

/// The stop fits; the STOPPED write (CompletedOn, the Stopped event) would
/// not. It is written with the history bounded instead of failing forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_write_that_would_pass_the_limit_still_ends_the_run() {
    let world = World::new().await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    world.put_run(&arn, "big", "STOPPING", &[]).await;
    world.set(&arn, "big", "StopRequestedAt", s("2026-11-20T10:00:06.000Z")).await;
    fill_to_the_limit(&world, &arn, "big", 30).await;
    let mut tail = world.tail().await;
    drain_stream(&world, &mut tail, &finalizer).await;
    let item = world.get_item(&arn, "big").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert!(item["HistoryEventsDropped"].as_n().unwrap().parse::<usize>().unwrap() > 0);
    assert_eq!(history(&item).last().unwrap()["Event"].as_s().unwrap(), "Stopped");
}

/// The registration docs/run-table.md gives schedulers: one conditional
/// update per worker, refused (ConditionalCheckFailed) once the run holds
/// its maximum, so a scheduler learns at once that the worker does not fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_worker_past_the_documented_maximum_is_refused() {
    let world = World::new().await;
    let arn = workflow_arn("etl");
    let max_workers = 5; // the documented formula's result for a small test
    let existing: Vec<String> =
        (0..max_workers - 1).map(|i| format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/workers/{i:032}")).collect();
    world.put_run(&arn, "run-1", "RUNNING", &existing).await;
    let register = |task: String| {
        world
            .ddb
            .update_item()
            .table_name(&world.table)
            .key("WorkflowArn", s(&arn))
            .key("RunId", s("run-1"))
            .update_expression("SET #workers.#task = :cluster")
            .condition_expression("#status IN (:starting, :queued, :running) AND size(#workers) < :max_workers")
            .expression_attribute_names("#workers", "Workers")
            .expression_attribute_names("#task", task)
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":cluster", s("workers"))
            .expression_attribute_values(":starting", s("STARTING"))
            .expression_attribute_values(":queued", s("QUEUED"))
            .expression_attribute_values(":running", s("RUNNING"))
            .expression_attribute_values(":max_workers", AttributeValue::N(max_workers.to_string()))
            .send()
    };
    register(format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/workers/{:032}", 100)).await.expect("the last one fits");
    let refused = register(format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/workers/{:032}", 101)).await.unwrap_err();
    assert!(
        matches!(
            refused.as_service_error(),
            Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_))
        ),
        "{refused:?}"
    );
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Workers"].as_m().unwrap().len(), max_workers);
}

/// Issue 22 item 5: a run DynamoDB holds, with no history left to trim, was
/// refused at the stop ("does not follow the table contract: … over
/// DynamoDB's item size limit"): the fitting aimed below the real limit and
/// gave up when even no history did not fit, so the run could not be
/// stopped and its workers kept running. The transition is now written
/// without its event (logged and counted) and the run ends STOPPED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_at_the_limit_with_no_history_to_trim_is_stopped_not_refused() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "full", "RUNNING", &workers).await;
    // No history; padded so that the bare stop (its attributes, ~170 bytes
    // in moto's count) fits under moto's 405,000 bytes, its event does not.
    let mut item = world.get_item(&arn, "full").await.unwrap();
    item.remove("History");
    let pad = 405_000 - 200 - moto_size(&item) - "Pad".len();
    item.insert("Pad".into(), s(&"p".repeat(pad)));
    world.ddb.put_item().table_name(&world.table).set_item(Some(item)).send().await.unwrap();

    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "full"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!((reply.status, reply.json["Status"].as_str()), (200, Some("STOPPING")), "{}", reply.json);
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 2], "the wave went out");
    let item = world.get_item(&arn, "full").await.unwrap();
    assert_eq!(item["StopRequestedBy"].as_s().unwrap(), ALICE, "who stopped it is on the item");
    assert!(history(&item).is_empty(), "the StopRequested event did not fit");
    assert_eq!(item["HistoryEventsDropped"].as_n().unwrap(), "1", "the event left out is counted");

    let mut tail = world.tail().await;
    drain_stream(&world, &mut tail, &finalizer).await;
    let item = world.get_item(&arn, "full").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    assert!(!item.contains_key("StoppingShard"), "out of the stopping index");
}

/// Issue 22 item 4: a fitted write replaced the whole history guarded only
/// by `size(#history) = :len`. A scheduler that (following the contract at
/// the limit) dropped one event and appended one between our read and our
/// write left the length unchanged, so its event and its
/// `HistoryEventsDropped` increment were overwritten. The proxy holds our
/// first fitted write until the scheduler's write has landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_write_between_the_read_and_the_fitted_write_is_never_lost() {
    let world = World::new().await;
    let ddb = Proxy::with_rules(
        &world.moto.url,
        vec![Rule::new("UpdateItem", When::Nth(1), Action::Hold).body_contains(":guard_last")],
    )
    .await;
    let api = std::sync::Arc::new(
        world.api_with(&ddb.url, &world.moto.url, &default_sdk_settings(), Default::default(), AuthMode::Iam).await,
    );
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "big", "RUNNING", &workers).await;
    fill_to_the_limit(&world, &arn, "big", 50).await;
    let before = history(&world.get_item(&arn, "big").await.unwrap()).len();

    let stop = {
        let (api, event) = (api.clone(), http_event(Some(STOP), &stop_body(&arn, "big"), As::Iam(ACCOUNT, ALICE)));
        tokio::spawn(async move { call(&api, &event).await })
    };
    ddb.wait_for("UpdateItem:held", 1, Duration::from_secs(60)).await;
    // The scheduler, at the limit: drops its oldest event, appends one,
    // counts the drop; same length as before.
    let item = world.get_item(&arn, "big").await.unwrap();
    let mut events = item["History"].as_l().unwrap().clone();
    events.remove(0);
    events.push(AttributeValue::M(HashMap::from([
        ("Event".to_owned(), s("TaskFinished")),
        ("At".to_owned(), s("2026-11-20T10:00:07.000Z")),
    ])));
    world
        .ddb
        .update_item()
        .table_name(&world.table)
        .key("WorkflowArn", s(&arn))
        .key("RunId", s("big"))
        .update_expression("SET #h = :h, #d = :d")
        .condition_expression("#st = :running")
        .expression_attribute_names("#h", "History")
        .expression_attribute_names("#d", "HistoryEventsDropped")
        .expression_attribute_names("#st", "Status")
        .expression_attribute_values(":h", AttributeValue::L(events))
        .expression_attribute_values(":d", AttributeValue::N("1".into()))
        .expression_attribute_values(":running", s("RUNNING"))
        .send()
        .await
        .expect("the scheduler's write lands: the run is still RUNNING");
    ddb.release();

    let reply = stop.await.unwrap();
    assert_eq!((reply.status, reply.json["Status"].as_str()), (200, Some("STOPPING")), "{}", reply.json);
    let item = world.get_item(&arn, "big").await.unwrap();
    let names: Vec<String> = history(&item).iter().map(|e| e["Event"].as_s().unwrap().clone()).collect();
    assert!(names.contains(&"TaskFinished".to_owned()), "the scheduler's event survived: {names:?}");
    assert_eq!(names.last().map(String::as_str), Some("StopRequested"));
    let dropped: usize = item["HistoryEventsDropped"].as_n().unwrap().parse().unwrap();
    assert_eq!(names.len() + dropped, before + 2, "every event kept or counted: ours, the scheduler's, its drop");
    assert!(ddb.count("UpdateItem") >= 3, "plain, held (refused by the guard), fitted again: {:?}", ddb.log());
}

/// Issue 22 item 9 against moto: a run whose workers cannot be confirmed
/// (every `DescribeTasks` fails) is written `STOPPED` at the stop deadline
/// with them named, and stays in the index's watch partition, not among the
/// `STOPPING` runs; the reconciler's follow-up, once ECS answers, stops and
/// confirms them, records when, and takes the run out of the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_at_the_deadline_is_watched_until_the_reconciler_confirms_its_workers() {
    use mwaa_stop::domain::{stopping_shard, timestamp, RunKey, WorkflowArn};
    let world = World::new().await;
    let ecs =
        Proxy::with_rules(&world.moto.url, vec![Rule::new("DescribeTasks", When::Always, Action::ServerError)]).await;
    let limits = mwaa_stop::finalize::FinalizerLimits { stop_deadline: Duration::ZERO, ..test_finalizer_limits() };
    let finalizer = world.finalizer_via(&ecs.url, limits).await;
    let arn = workflow_arn("etl");
    let key = RunKey { workflow_arn: WorkflowArn::parse(&arn).unwrap(), run_id: "run-1".into() };
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "STOPPING", &workers).await;
    let now = timestamp(time::OffsetDateTime::now_utc());
    for (name, value) in [("StopRequestedAt", &now), ("StoppingSince", &now), ("StoppingShard", &stopping_shard(&key))]
    {
        world.set(&arn, "run-1", name, AttributeValue::S(value.clone())).await;
    }

    let out = finalizer.finalize_run(&key, None).await.unwrap();
    assert!(matches!(out, mwaa_stop::finalize::RunOutcome::Stopped { unconfirmed: 2, .. }), "{out:?}");
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPED");
    let unconfirmed = item["UnconfirmedWorkers"].as_m().unwrap();
    assert_eq!(unconfirmed.len(), 2);
    let message = item["ErrorMessage"].as_s().unwrap();
    assert!(workers.iter().all(|w| message.contains(w.as_str())), "{message}");
    assert_eq!(stopped_event(&item)["UnconfirmedCount"], AttributeValue::N("2".into()));
    assert_eq!(item["StoppingShard"].as_s().unwrap(), &format!("watch-{}", stopping_shard(&key)));
    assert!(finalizer.store().stopping_runs().await.unwrap().is_empty(), "not STOPPING");
    let watched = finalizer.store().watched_runs().await.unwrap();
    assert_eq!(watched.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), vec!["run-1"]);
    assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"; 2], "not confirmed: still running");

    ecs.clear_rules();
    let report = finalizer.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((report.watched, report.late_confirmed, report.watch_ended), (1, 2, 1), "{report:?}");
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 2]);
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert!(!item.contains_key("UnconfirmedWorkers"));
    assert!(!item.contains_key("StoppingShard") && !item.contains_key("StoppingSince"), "out of the index");
    let confirmed = history(&item).into_iter().find(|e| e["Event"].as_s().unwrap() == "WorkersConfirmed").unwrap();
    assert_eq!(confirmed["Count"], AttributeValue::N("2".into()));
    assert!(finalizer.store().watched_runs().await.unwrap().is_empty());
}
