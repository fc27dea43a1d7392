//! Races against moto (serialized per request, so conditional writes are atomic
//! as in DynamoDB): 50 concurrent stops of one run; stops racing a scheduler's
//! `RUNNING → SUCCESS`; stops racing worker registration and a launch that never
//! registers. Invariants are checked after every round.

use std::sync::Arc;
use std::time::Duration;

use crate::kit::proxy::Proxy;
use crate::kit::*;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use mwaa_stop::lambda::http::AuthMode;
use mwaa_stop::stop::FanOutLimits;
use serde_json::json;

fn fan_out() -> FanOutLimits {
    FanOutLimits { concurrency: 8, budget: Duration::from_secs(20) }
}

async fn finalize_all(world: &World) {
    let finalizer = world.finalizer_via(&world.moto.url, test_finalizer_limits()).await;
    let mut tail = world.tail().await;
    drain_stream(world, &mut tail, &finalizer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_stops_make_exactly_one_transition_and_one_fan_out() {
    let world = World::new().await;
    let ecs = Proxy::with_rules(&world.moto.url, vec![]).await;
    let api =
        Arc::new(world.api_with(&world.moto.url, &ecs.url, &default_sdk_settings(), fan_out(), AuthMode::Iam).await);
    let arn = workflow_arn("etl");
    let workers = world.start_workers(4).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    let event = http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE));
    for reply in call_concurrently(&api, &event, 50).await {
        assert_eq!(reply.status, 200, "{}", reply.json);
        assert_eq!(
            reply.json,
            json!({"WorkflowArn": arn, "RunId": "run-1", "Status": "STOPPING", "WorkflowVersion": "v3"})
        );
    }
    assert_eq!(world.status_changes().await, vec![("RUNNING".to_owned(), "STOPPING".to_owned())]);
    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(history_of(&item), vec!["Started", "StopRequested"]);
    assert_eq!(ecs.count("StopTask"), 4, "only the one transition fans out, once per worker: {:?}", ecs.log());
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 4], "that one wave stopped every worker");
    finalize_all(&world).await;
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 4]);
    let stopped = world.status_changes().await.into_iter().filter(|(_, n)| n == "STOPPED").count();
    assert_eq!(stopped, 1);
}

/// A scheduler's write, conditioned on the run being active (the table
/// contract): true if it landed, false if the condition refused it.
async fn scheduler_write(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    arn: &str,
    run: &str,
    what: &str,
    write: impl FnOnce(
        aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
) -> bool {
    let request = ddb
        .update_item()
        .table_name(table)
        .key("WorkflowArn", s(arn))
        .key("RunId", s(run))
        .condition_expression("#status IN (:starting, :queued, :running)")
        .expression_attribute_names("#status", "Status")
        .expression_attribute_values(":starting", s("STARTING"))
        .expression_attribute_values(":queued", s("QUEUED"))
        .expression_attribute_values(":running", s("RUNNING"));
    match write(request).send().await {
        Ok(_) => true,
        Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => false,
        Err(e) => panic!("scheduler {what} failed: {e:?}"),
    }
}

/// The scheduler's "finish" write, per the table contract.
async fn scheduler_finish(ddb: &aws_sdk_dynamodb::Client, table: &str, arn: &str, run: &str) -> bool {
    scheduler_write(ddb, table, arn, run, "finish", |w| {
        w.update_expression("SET #status = :success, #completed = :now")
            .expression_attribute_names("#completed", "CompletedOn")
            .expression_attribute_values(":success", s("SUCCESS"))
            .expression_attribute_values(":now", s("2026-11-21T10:00:00.000Z"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_racing_the_schedulers_success_never_overwrites_it_and_tells_the_truth() {
    let world = World::new().await;
    let api = Arc::new(world.api(AuthMode::Iam).await);
    let arn = workflow_arn("etl");
    let rounds = 24;
    let mut winners = (0, 0);
    let mut stop_won = Vec::new();
    for round in 0..rounds {
        let run = format!("race-{round}");
        let workers = world.start_workers(1).await;
        world.put_run(&arn, &run, "RUNNING", &workers).await;
        let event = http_event(Some(STOP), &stop_body(&arn, &run), As::Iam(ACCOUNT, ALICE));
        // Vary who starts first; rounds 0 and 1 are not races but the two orders.
        let stops: Vec<_> = (0..4)
            .map(|i| {
                let (api, event) = (api.clone(), event.clone());
                tokio::spawn(async move {
                    if round == 0 || (round % 3 == 1 && i == 0) {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    call(&api, &event).await
                })
            })
            .collect();
        let (ddb, table, a, r) = (world.ddb.clone(), world.table.clone(), arn.clone(), run.clone());
        let scheduler = tokio::spawn(async move {
            if round == 1 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            scheduler_finish(&ddb, &table, &a, &r).await
        });
        let replies: Vec<Reply> = futures::future::join_all(stops).await.into_iter().map(Result::unwrap).collect();
        let scheduler_won = scheduler.await.unwrap();
        let item = world.get_item(&arn, &run).await.unwrap();
        let status = item["Status"].as_s().unwrap().clone();
        // A stop that lost to the success is refused as the real service
        // refuses it (ValidationException naming the status); one that won
        // (or came after another stop) answers its status.
        let answered: Vec<&str> = replies
            .iter()
            .map(|r| match r.status {
                200 => r.json["Status"].as_str().unwrap(),
                400 if r.json["__type"] == "ValidationException" => {
                    assert!(r.json["Message"].as_str().unwrap().contains("already SUCCESS"), "{run}: {}", r.json);
                    "SUCCESS"
                }
                _ => panic!("{run}: {}", r.json),
            })
            .collect();
        if scheduler_won {
            winners.0 += 1;
            assert_eq!(status, "SUCCESS", "{run}: the stop did not overwrite the success");
            assert!(answered.iter().all(|s| *s == "SUCCESS"), "{run}: every stop tells the truth: {answered:?}");
            assert_eq!(history_of(&item), vec!["Started"], "{run}: no StopRequested on a finished run");
            assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"], "{run}: the API stopped nothing");
        } else {
            winners.1 += 1;
            assert_eq!(status, "STOPPING", "{run}: the success did not overwrite the stop");
            assert!(answered.iter().all(|s| *s == "STOPPING"), "{run}: {answered:?}");
            assert_eq!(history_of(&item), vec!["Started", "StopRequested"], "{run}");
            stop_won.push((run.clone(), workers));
        }
        if round == 0 {
            assert!(scheduler_won, "the scheduler alone first wins");
        }
        if round == 1 {
            assert!(!scheduler_won, "the stops alone first win");
        }
    }
    eprintln!("scheduler won {} rounds, a stop won {}", winners.0, winners.1);

    // Stopped runs end STOPPED (terminal); finished runs stay SUCCESS.
    finalize_all(&world).await;
    let changes = world.stream_changes().await;
    for round in 0..rounds {
        let run = format!("race-{round}");
        let item = world.get_item(&arn, &run).await.unwrap();
        let status = item["Status"].as_s().unwrap().as_str().to_owned();
        assert!(status == "SUCCESS" || status == "STOPPED", "{run}: terminal, not {status}");
        let mine: Vec<_> = changes.iter().filter(|c| c.0 == run).map(|c| (c.1.as_str(), c.2.as_str())).collect();
        let out_of_running = mine.iter().filter(|c| c.0 == "RUNNING").count();
        assert_eq!(out_of_running, 1, "{run}: exactly one transition out of RUNNING: {mine:?}");
        // GetWorkflowRun agrees with the table.
        let get = call(&api, &http_event(Some(GET), &stop_body(&arn, &run), As::Iam(ACCOUNT, ALICE))).await;
        assert_eq!(get.json["RunDetail"]["RunState"], status.as_str());
    }
    for (run, workers) in stop_won {
        assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"], "{run}");
    }
}

/// The scheduler's registration write, per the table contract.
async fn register(world: &World, arn: &str, run: &str, task: &str) -> bool {
    scheduler_write(&world.ddb, &world.table, arn, run, "registration", |w| {
        w.update_expression("SET Workers.#t = :cluster")
            .expression_attribute_names("#t", task)
            .expression_attribute_values(":cluster", s(&world.cluster))
    })
    .await
}

/// Each round: a stop, a scheduler launching a worker and registering it
/// (conditioned on an active status; on failure it "crashes" and does not stop
/// its task), and a launch that never registers. After the finalizer: no task
/// of the run is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_racing_worker_registration_and_an_unregistered_launch_leaves_no_worker_running() {
    let world = Arc::new(World::new().await);
    let api = Arc::new(world.api(AuthMode::Iam).await);
    let arn = workflow_arn("etl");
    let rounds = 10;
    let mut registered_late = 0;
    let mut all_tasks = Vec::new();
    for round in 0..rounds {
        let run = format!("reg-{round}");
        let started_by = format!("run/{round}");
        let first = world.launch(&started_by, 1).await;
        world.put_run(&arn, &run, "RUNNING", &first).await;
        world.set(&arn, &run, "WorkerStartedBy", s(&started_by)).await;
        world
            .set(&arn, &run, "WorkerClusters", aws_sdk_dynamodb::types::AttributeValue::Ss(vec![world.cluster.clone()]))
            .await;
        let event = http_event(Some(STOP), &stop_body(&arn, &run), As::Iam(ACCOUNT, ALICE));
        let stop = {
            let api = api.clone();
            tokio::spawn(async move {
                if round % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(50 * (round as u64 % 4))).await;
                }
                call(&api, &event).await
            })
        };
        let scheduler = {
            let (world, arn, run, started_by) = (world.clone(), arn.clone(), run.clone(), started_by.clone());
            tokio::spawn(async move {
                let task = world.launch(&started_by, 1).await.remove(0);
                let ok = register(&world, &arn, &run, &task).await;
                (task, ok)
            })
        };
        let stray = {
            let (world, started_by) = (world.clone(), started_by.clone());
            tokio::spawn(async move { world.launch(&started_by, 1).await })
        };
        let reply = stop.await.unwrap();
        assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
        let (task, ok) = scheduler.await.unwrap();
        if ok {
            registered_late += 1;
        }
        let mut tasks = first;
        tasks.push(task);
        tasks.extend(stray.await.unwrap());
        all_tasks.push((run, started_by, tasks));
    }
    eprintln!("registrations that won the race: {registered_late}/{rounds}");
    finalize_all(&world).await;
    for (run, started_by, tasks) in all_tasks {
        let item = world.get_item(&arn, &run).await.unwrap();
        assert_eq!(item["Status"].as_s().unwrap(), "STOPPED", "{run}");
        assert_eq!(world.task_statuses(&tasks).await, vec!["STOPPED"; 3], "{run}: every task launched for it stopped");
        assert!(world.running_started_by(&started_by).await.is_empty(), "{run}: nothing left running");
    }
}
