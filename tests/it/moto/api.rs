//! The API handler with real SDK clients against moto's server: real
//! conditional writes, real DynamoDB stream records, real ECS tasks.

use crate::kit::*;
use mwaa_stop::lambda::http::AuthMode;
use serde_json::{json, Value};

fn assert_protocol_headers(reply: &Reply) {
    assert_eq!(reply.headers["content-type"], "application/x-amz-json-1.0");
    assert!(!reply.headers["x-amzn-requestid"].is_empty());
}

fn assert_error(reply: &Reply, status: u16, type_name: &str) {
    assert_eq!(reply.status, status, "{}", reply.json);
    assert_eq!(reply.json["__type"], type_name, "{}", reply.json);
    assert_eq!(reply.headers["x-amzn-errortype"], type_name);
    assert!(reply.json["Message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_protocol_headers(reply);
}

fn history_events(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> Vec<String> {
    item["History"].as_l().unwrap().iter().map(|e| e.as_m().unwrap()["Event"].as_s().unwrap().clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_of_an_active_run_stops_every_worker_and_records_who() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(5).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    assert!(world.task_statuses(&workers).await.iter().all(|s| s == "RUNNING"));

    let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE))).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_protocol_headers(&reply);
    assert_eq!(
        reply.json,
        json!({"WorkflowArn": arn, "RunId": "run-1", "Status": "STOPPING", "WorkflowVersion": "v3"})
    );

    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 5], "every worker task is stopped in ECS");
    let described =
        world.ecs.describe_tasks().cluster(&world.cluster).set_tasks(Some(workers.clone())).send().await.unwrap();
    for t in described.tasks() {
        let reason = t.stopped_reason().unwrap();
        assert!(reason.contains("run-1") && reason.contains(ALICE), "reason names run and caller: {reason}");
        assert!(reason.len() <= 255);
    }

    let item = world.get_item(&arn, "run-1").await.unwrap();
    assert_eq!(item["Status"].as_s().unwrap(), "STOPPING");
    assert_eq!(item["StopRequestedBy"].as_s().unwrap(), ALICE);
    let at = item["StopRequestedAt"].as_s().unwrap();
    assert!(time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(), "{at}");
    assert_eq!(item["ModifiedAt"].as_s().unwrap(), at);
    assert_eq!(history_events(&item), vec!["Started", "StopRequested"]);
    let event = item["History"].as_l().unwrap()[1].as_m().unwrap();
    assert_eq!(event["By"].as_s().unwrap(), ALICE);
    assert_eq!(event["At"].as_s().unwrap(), at);
    assert_eq!(event["SourceIp"].as_s().unwrap(), "203.0.113.7");
    assert_eq!(event["RequestId"].as_s().unwrap(), reply.headers["x-amzn-requestid"].to_str().unwrap());
    // The worker set stays for the finalizer, which verifies and then empties it.
    assert_eq!(item["Workers"].as_m().unwrap().len(), 5);

    assert_eq!(world.status_changes().await, vec![("RUNNING".to_owned(), "STOPPING".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_and_queued_runs_are_stoppable_and_a_run_without_workers_needs_no_ecs() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    for (run, status) in [("r-starting", "STARTING"), ("r-queued", "QUEUED")] {
        world.put_run(&arn, run, status, &[]).await;
        let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, run), As::Iam(ACCOUNT, ALICE))).await;
        assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{status}");
    }
    let changes = world.status_changes().await;
    assert_eq!(
        changes,
        vec![("STARTING".to_owned(), "STOPPING".to_owned()), ("QUEUED".to_owned(), "STOPPING".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_stop_is_idempotent() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    let event = http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Iam(ACCOUNT, ALICE));
    let first = call(&api, &event).await;
    let after_first = world.get_item(&arn, "run-1").await.unwrap();
    let second = call(&api, &event).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(first.json, second.json, "same answer both times");
    assert_eq!(world.get_item(&arn, "run-1").await.unwrap(), after_first, "the second stop changes nothing");

    // A run the finalizer already finished answers STOPPED.
    world
        .ddb
        .update_item()
        .table_name(&world.table)
        .key("WorkflowArn", s(&arn))
        .key("RunId", s("run-1"))
        .update_expression("SET #s = :s")
        .expression_attribute_names("#s", "Status")
        .expression_attribute_values(":s", s("STOPPED"))
        .send()
        .await
        .unwrap();
    let third = call(&api, &event).await;
    assert_eq!((third.status, third.json["Status"].clone()), (200, json!("STOPPED")));
    let transitions = world.status_changes().await.into_iter().filter(|(_, new)| new == "STOPPING").count();
    assert_eq!(transitions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Issue 19 part 1: the real service answers a stop of a run that finished
/// on its own with `ValidationException` (apache/airflow#67578 works around
/// it); a run already `STOPPING`/`STOPPED` answers 200 with its status, so a
/// client retrying a stop whose answer it lost never gets an error. Either
/// way nothing is written and no worker is touched.
async fn finished_runs_are_refused_stopped_runs_report_their_status_and_nothing_changes() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    // A worker the item still lists: a late stop must not touch it either.
    let workers = world.start_workers(1).await;
    for status in ["SUCCESS", "FAILED", "TIMEOUT", "STOPPED"] {
        let run = format!("run-{}", status.to_lowercase());
        world.put_run(&arn, &run, status, &workers).await;
    }
    let before = world.scan().await;
    for status in ["SUCCESS", "FAILED", "TIMEOUT", "STOPPED"] {
        let run = format!("run-{}", status.to_lowercase());
        let reply = call(&api, &http_event(Some(STOP), &stop_body(&arn, &run), As::Iam(ACCOUNT, ALICE))).await;
        if status == "STOPPED" {
            assert_eq!(reply.status, 200, "{}", reply.json);
            assert_eq!(
                reply.json,
                json!({"WorkflowArn": arn, "RunId": run, "Status": status, "WorkflowVersion": "v3"})
            );
        } else {
            assert_eq!(
                (reply.status, reply.json["__type"].as_str()),
                (400, Some("ValidationException")),
                "{}",
                reply.json
            );
            assert_eq!(reply.json["Reason"], "other");
            assert_eq!(
                reply.json["Message"],
                format!("The workflow run is already {status}; only STARTING, QUEUED or RUNNING runs can be stopped.")
            );
        }
    }
    assert_eq!(world.scan().await, before, "a late stop never overwrites a finished run");
    assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"]);
    assert!(world.status_changes().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_run_is_resource_not_found() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    for target in [STOP, GET] {
        let reply = call(&api, &http_event(Some(target), &stop_body(&arn, "nope"), As::Iam(ACCOUNT, ALICE))).await;
        assert_error(&reply, 400, "ResourceNotFoundException");
        assert_eq!(reply.json["ResourceId"], "nope");
        assert_eq!(reply.json["ResourceType"], "WorkflowRun");
    }
    assert!(world.scan().await.is_empty(), "a stop of a missing run creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_accounts_can_neither_stop_nor_read_nor_learn_of_a_run() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    let before = world.scan().await;

    let mut replies = Vec::new();
    for target in [STOP, GET] {
        // The same answer for an existing and a missing run: existence does not leak.
        for run in ["run-1", "no-such-run"] {
            let reply =
                call(&api, &http_event(Some(target), &stop_body(&arn, run), As::Iam(OTHER_ACCOUNT, MALLORY))).await;
            assert_error(&reply, 400, "AccessDeniedException");
            let text = reply.json.to_string();
            assert!(!text.contains(ACCOUNT) && !text.contains("etl") && !text.contains(run), "leak: {text}");
            replies.push(reply.json);
        }
        // Deployed mode: no identity, no access.
        let reply = call(&api, &http_event(Some(target), &stop_body(&arn, "run-1"), As::Nobody)).await;
        assert_error(&reply, 400, "AccessDeniedException");
    }
    assert!(replies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(world.scan().await, before);
    assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_workflow_run_shows_the_model_shape_and_who_stopped_it() {
    let world = World::new().await;
    let api = world.api(AuthMode::AllowLocalUnauthenticated).await;
    let arn = workflow_arn("etl");
    world.put_run(&arn, "run-1", "RUNNING", &[]).await;
    let get = http_event(Some(GET), &stop_body(&arn, "run-1"), As::Nobody);
    let reply = call(&api, &get).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(
        reply.json,
        json!({
            "WorkflowArn": arn, "RunId": "run-1", "WorkflowVersion": "v3", "RunType": "ON_DEMAND",
            "RunDetail": {
                "WorkflowArn": arn, "RunId": "run-1", "WorkflowVersion": "v3", "RunType": "ON_DEMAND",
                "CreatedAt": "2026-11-20T10:00:00Z", "StartedOn": "2026-11-20T10:00:05Z",
                "ModifiedAt": "2026-11-20T10:00:05Z", "RunState": "RUNNING"
            }
        })
    );
    // A local caller with no identity stops as `local:unauthenticated`.
    call(&api, &http_event(Some(STOP), &stop_body(&arn, "run-1"), As::Nobody)).await;
    let reply = call(&api, &get).await;
    assert_eq!(reply.json["RunDetail"]["RunState"], "STOPPING");
    let msg = reply.json["RunDetail"]["ErrorMessage"].as_str().unwrap();
    assert!(msg.starts_with("Stop requested by local:unauthenticated at "), "{msg}");
}

/// Every class of malformed input: a modeled ValidationException, and the
/// table and the workers untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_a_validation_exception_and_touches_nothing() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(1).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    let before = world.scan().await;
    let good = stop_body(&arn, "run-1");
    let long_arn = format!("arn:aws:airflow-serverless:us-east-1:{ACCOUNT}:workflow/{}-abcDEF1234", "a".repeat(2100));

    // (case, X-Amz-Target, body, expected Reason, expected FieldList names)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, &'a str, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        ("missing target", None, good.clone(), "unknownOperation", vec![]),
        ("unknown operation", Some("AmazonMWAAServerless.DeleteWorkflow"), good.clone(), "unknownOperation", vec![]),
        ("other service", Some("DynamoDB_20120810.UpdateItem"), good.clone(), "unknownOperation", vec![]),
        ("prefix only", Some("AmazonMWAAServerless"), good.clone(), "unknownOperation", vec![]),
        ("malformed JSON", Some(STOP), b"{\"WorkflowArn\": ".to_vec(), "cannotParse", vec![]),
        ("not an object", Some(STOP), b"[1,2,3]".to_vec(), "cannotParse", vec![]),
        ("empty body", Some(STOP), Vec::new(), "cannotParse", vec![]),
        ("non-UTF-8", Some(STOP), vec![0x7b, 0xff, 0xfe, 0x7d], "cannotParse", vec![]),
        ("deep nesting", Some(STOP), "[".repeat(5000).into_bytes(), "cannotParse", vec![]),
        ("huge body", Some(STOP), format!("{{\"RunId\":\"{}\"}}", "a".repeat(200_000)).into_bytes(), "other", vec![]),
        ("no fields", Some(STOP), b"{}".to_vec(), "fieldValidationFailed", vec!["WorkflowArn", "RunId"]),
        (
            "null fields",
            Some(STOP),
            br#"{"WorkflowArn":null,"RunId":null}"#.to_vec(),
            "fieldValidationFailed",
            vec!["WorkflowArn", "RunId"],
        ),
        (
            "wrong types",
            Some(STOP),
            br#"{"WorkflowArn":42,"RunId":["run-1"]}"#.to_vec(),
            "fieldValidationFailed",
            vec!["WorkflowArn", "RunId"],
        ),
        (
            "bad patterns",
            Some(STOP),
            json!({"WorkflowArn": format!("{arn} "), "RunId": "-run"}).to_string().into_bytes(),
            "fieldValidationFailed",
            vec!["WorkflowArn", "RunId"],
        ),
        (
            "too long",
            Some(STOP),
            json!({"WorkflowArn": long_arn, "RunId": "a".repeat(256)}).to_string().into_bytes(),
            "fieldValidationFailed",
            vec!["WorkflowArn", "RunId"],
        ),
        (
            "run id only bad",
            Some(STOP),
            json!({"WorkflowArn": arn, "RunId": ""}).to_string().into_bytes(),
            "fieldValidationFailed",
            vec!["RunId"],
        ),
        (
            "get with bad fields",
            Some(GET),
            json!({"WorkflowArn": "arn:aws:s3:::bucket", "RunId": "run-1"}).to_string().into_bytes(),
            "fieldValidationFailed",
            vec!["WorkflowArn"],
        ),
    ];
    for (name, target, body, reason, fields) in cases {
        let reply = call(&api, &http_event(target, &body, As::Iam(ACCOUNT, ALICE))).await;
        assert_error(&reply, 400, "ValidationException");
        assert_eq!(reply.json["Reason"], reason, "{name}: {}", reply.json);
        let named: Vec<&str> = reply.json["FieldList"]
            .as_array()
            .map(|l| l.iter().map(|f| f["Name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(named, fields, "{name}: {}", reply.json);
        for f in reply.json["FieldList"].as_array().into_iter().flatten() {
            assert!(f["Message"].as_str().is_some_and(|m| !m.is_empty() && m.len() <= 2048), "{name}");
        }
        assert!(reply.json.to_string().len() < 4096, "{name}: the error does not echo a huge input back");
    }

    // A GET (not POST) is refused too.
    let mut event = http_event(Some(STOP), &good, As::Iam(ACCOUNT, ALICE));
    event["requestContext"]["http"]["method"] = json!("GET");
    let reply = call(&api, &event).await;
    assert_error(&reply, 400, "ValidationException");

    assert_eq!(world.scan().await, before, "no malformed request touched the table");
    assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"]);
    assert!(world.status_changes().await.is_empty());
}

/// The committed `events/` samples are real, working inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_events_do_what_their_names_say() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let load = |name: &str| -> Value {
        let path = project_dir().join("events").join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let stop = load("stop-workflow-run.json");
    let body: Value = serde_json::from_str(stop["body"].as_str().unwrap()).unwrap();
    let (arn, run) = (body["WorkflowArn"].as_str().unwrap(), body["RunId"].as_str().unwrap());
    world.put_run(arn, run, "RUNNING", &[]).await;

    let reply = call(&api, &stop).await;
    assert_eq!((reply.status, reply.json["Status"].clone()), (200, json!("STOPPING")), "{}", reply.json);
    let reply = call(&api, &load("get-workflow-run.json")).await;
    assert_eq!(reply.json["RunDetail"]["RunState"], "STOPPING", "{}", reply.json);
    let reply = call(&api, &load("stop-workflow-run-malformed.json")).await;
    assert_error(&reply, 400, "ValidationException");
}
