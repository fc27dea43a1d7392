//! Tenant isolation against the real table (moto): another account, and ARN
//! tricks (other partition, other region, trailing characters, case, unicode
//! look-alikes, oversized fields), can never stop, read or learn of a run; no
//! answer echoes another tenant's data or internals. (The same properties run
//! at high case counts with fakes in `reliability::fuzz`.)

use crate::kit::*;
use mwaa_stop::lambda::http::AuthMode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arn_tricks_never_reach_another_tenants_run() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let workers = world.start_workers(2).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;
    world.set(&arn, "run-1", "ErrorMessage", s("alice-private-note")).await;
    let before = world.scan().await;

    let other = |from: &str, to: &str| arn.replacen(from, to, 1);
    let tricks: Vec<(&str, String, String)> = vec![
        ("plain", arn.clone(), "run-1".into()),
        ("missing run", arn.clone(), "no-such-run".into()),
        ("other partition", other("arn:aws:", "arn:aws-cn:"), "run-1".into()),
        ("gov partition", other("arn:aws:", "arn:aws-us-gov:"), "run-1".into()),
        ("other region", other("us-east-1", "eu-west-1"), "run-1".into()),
        ("trailing space", format!("{arn} "), "run-1".into()),
        ("trailing newline", format!("{arn}\n"), "run-1".into()),
        ("trailing NUL", format!("{arn}\u{0}"), "run-1".into()),
        ("trailing zero-width space", format!("{arn}\u{200b}"), "run-1".into()),
        ("trailing path", format!("{arn}/run-1"), "run-1".into()),
        ("upper-case prefix", other("arn:aws:", "ARN:AWS:"), "run-1".into()),
        ("upper-case workflow", other("etl-", "ETL-"), "run-1".into()),
        ("upper-case run id", arn.clone(), "RUN-1".into()),
        ("cyrillic a", format!("\u{430}{}", &arn[1..]), "run-1".into()),
        ("fullwidth account digit", other(ACCOUNT, "１23456789012"), "run-1".into()),
        ("cyrillic in run id", arn.clone(), "run\u{2010}1".into()),
        ("run id with trailing newline", arn.clone(), "run-1\n".into()),
        ("oversized run id", arn.clone(), "r".repeat(5000)),
        ("oversized arn", format!("{arn}{}", "a".repeat(5000)), "run-1".into()),
        ("mallory's own account, alice's names", other(ACCOUNT, OTHER_ACCOUNT), "run-1".into()),
    ];
    for target in [STOP, GET] {
        for (name, trick_arn, run) in &tricks {
            let body = json!({"WorkflowArn": trick_arn, "RunId": run}).to_string().into_bytes();
            let reply = call(&api, &http_event(Some(target), &body, As::Iam(OTHER_ACCOUNT, MALLORY))).await;
            let t = reply.json["__type"].as_str().unwrap_or("200").to_owned();
            let allowed: &[&str] = if name.starts_with("mallory's own") {
                &["ResourceNotFoundException"] // her own (empty) namespace
            } else {
                &["AccessDeniedException", "ValidationException"]
            };
            assert!(allowed.contains(&t.as_str()), "{target} {name}: {}", reply.json);
            let text = reply.json.to_string();
            for secret in [ACCOUNT, ALICE, "alice-private-note", "WorkflowRuns", "v3", workers[0].as_str()] {
                assert!(!text.contains(secret), "{target} {name}: echoes {secret:?}: {text}");
            }
            assert!(text.len() < 4096, "{name}: an oversized field is not echoed back");
        }
    }
    // Access denied looks the same whether the run exists or not.
    let denied = |run: &str| {
        let body = json!({"WorkflowArn": arn, "RunId": run}).to_string().into_bytes();
        http_event(Some(GET), &body, As::Iam(OTHER_ACCOUNT, MALLORY))
    };
    let (a, b) = (call(&api, &denied("run-1")).await, call(&api, &denied("no-such-run")).await);
    assert_eq!((a.status, &a.json), (b.status, &b.json));

    // Alice herself, through the tricks: never a different run, never a new item.
    for (name, trick_arn, run) in &tricks[1..] {
        let body = json!({"WorkflowArn": trick_arn, "RunId": run}).to_string().into_bytes();
        let reply = call(&api, &http_event(Some(STOP), &body, As::Iam(ACCOUNT, ALICE))).await;
        assert_ne!(reply.status, 200, "{name}: only the exact key is Alice's run: {}", reply.json);
        let t = reply.json["__type"].as_str().unwrap();
        assert!(
            ["ResourceNotFoundException", "ValidationException", "AccessDeniedException"].contains(&t),
            "{name}: {}",
            reply.json
        );
    }

    assert_eq!(world.scan().await, before, "no trick changed or created any item");
    assert_eq!(world.task_statuses(&workers).await, vec!["RUNNING"; 2]);
    assert!(world.status_changes().await.iter().all(|(old, new)| old == new), "no status transition");
}

/// A finished or stopped run of another tenant: the denial does not reveal
/// its status either (no `Status`, no `RunDetail`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_do_not_reveal_status() {
    let world = World::new().await;
    let api = world.api(AuthMode::Iam).await;
    let arn = workflow_arn("etl");
    let mut bodies: Vec<Value> = Vec::new();
    for (run, status) in [("a", "SUCCESS"), ("b", "STOPPED"), ("c", "STOPPING"), ("d", "RUNNING")] {
        world.put_run(&arn, run, status, &[]).await;
        for target in [STOP, GET] {
            let reply =
                call(&api, &http_event(Some(target), &stop_body(&arn, run), As::Iam(OTHER_ACCOUNT, MALLORY))).await;
            assert_eq!(reply.json["__type"], "AccessDeniedException");
            assert!(reply.json.get("Status").is_none() && reply.json.get("RunDetail").is_none());
            bodies.push(reply.json);
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "every denial is the same answer");
}
