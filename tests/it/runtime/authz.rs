//! `make local AUTHZ_POLICY_FILE=…` end to end: the local stack started with
//! a policy set (the three shipped examples), and API Gateway events with
//! crafted IAM identities sent to `run-api` through the Lambda Invoke API of
//! `cargo lambda watch`: each is authorized as the identity it carries
//! (docs/authorization.md). Then the file is made invalid while the stack
//! runs: within the local refresh interval every request is denied (fail
//! closed); made valid again, it is used again.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::kit::local_stack::RunningStack;
use crate::kit::*;

const OPS: &str = "arn:aws:sts::123456789012:assumed-role/ops/alice";
const BOT: &str = "arn:aws:sts::123456789012:assumed-role/etl-bot/nightly";
const CAROL: &str = "arn:aws:iam::123456789012:user/carol";

fn policy_set() -> String {
    ["ops-stop-anything", "bot-own-workflows", "no-prod-stops"]
        .iter()
        .map(|name| std::fs::read_to_string(project_dir().join(format!("policies/examples/{name}.cedar"))).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One invocation of run-api through the Invoke API: (HTTP status, error type).
async fn invoke(base: &str, event: &Value) -> (u64, Option<String>) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/2015-03-31/functions/run-api/invocations"))
        .body(event.to_string())
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "invoke: {}", resp.status());
    let out: Value = resp.json().await.unwrap();
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
    (out["statusCode"].as_u64().unwrap(), body["__type"].as_str().map(str::to_owned))
}

fn event(target: &str, arn: &str, run_id: &str, principal: Option<&str>) -> Value {
    let mut headers = serde_json::Map::new();
    headers.insert("x-amz-target".into(), json!(target));
    raw_http_event("POST", headers, &stop_body(arn, run_id), principal.map(|p| (ACCOUNT, p)))
}

fn denied() -> (u64, Option<String>) {
    (400, Some("AccessDeniedException".to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_local_with_a_policy_file_authorizes_each_invoke_as_its_identity() {
    let (aws_port, api_port) = (free_port(), free_port());
    let log_dir = log_dir().join(format!("local-authz-{api_port}"));
    std::fs::create_dir_all(&log_dir).unwrap();
    let policy_file = log_dir.join("policies.cedar");
    std::fs::write(&policy_file, policy_set()).unwrap();
    let mut cmd = Command::new(venv_bin("python"));
    as_from_a_shell(&mut cmd)
        .current_dir(project_dir())
        .env("AUTHZ_POLICY_FILE", &policy_file)
        .args(["-m", "localdev", "up", "--aws-port", &aws_port.to_string(), "--api-port", &api_port.to_string()])
        .arg("--log-dir")
        .arg(&log_dir);
    let stack = RunningStack::start(&mut cmd, log_dir.clone(), Duration::from_secs(1500));
    assert!(stack.transcript.iter().any(|l| l.contains("authorizes with the policy set in")), "{:?}", stack.transcript);
    let base = format!("http://127.0.0.1:{api_port}");
    let (demo_arn, demo_run) = stack.demo.clone();
    let prod = workflow_arn("prod-orders");
    let bots = workflow_arn("etl-bot-daily");

    // A user with no permit: default deny, before the table (GetWorkflowRun
    // of the demo run, which exists, is denied, not found or answered).
    assert_eq!(invoke(&base, &event(GET, &demo_arn, &demo_run, Some(CAROL))).await, denied());
    // The bot: its own workflows only (a run that does not exist there is
    // "not found": the decision allowed it, the table answered).
    assert_eq!(invoke(&base, &event(STOP, &demo_arn, &demo_run, Some(BOT))).await, denied());
    assert_eq!(
        invoke(&base, &event(GET, &bots, "run-1", Some(BOT))).await,
        (400, Some("ResourceNotFoundException".to_owned()))
    );
    // Ops, as an assumed-role session of the ops role: forbid wins on prod
    // (denied before the table: "not found" would have said it was allowed),
    // reading prod stays allowed.
    assert_eq!(invoke(&base, &event(STOP, &prod, "run-1", Some(OPS))).await, denied());
    assert_eq!(
        invoke(&base, &event(GET, &prod, "run-1", Some(OPS))).await,
        (400, Some("ResourceNotFoundException".to_owned()))
    );
    // No identity: the local principal, which this set does not permit.
    assert_eq!(invoke(&base, &event(GET, &demo_arn, &demo_run, None)).await, denied());
    // A Cognito guest identity of the ops role is refused, whatever the policies.
    let mut guest = event(STOP, &demo_arn, &demo_run, Some(OPS));
    guest["requestContext"]["authorizer"]["iam"]["cognitoIdentity"] =
        json!({"amr": ["unauthenticated"], "identityId": "x", "identityPoolId": "us-east-1:pool"});
    assert_eq!(invoke(&base, &guest).await, denied());
    // Ops stops the demo run.
    assert_eq!(invoke(&base, &event(STOP, &demo_arn, &demo_run, Some(OPS))).await.0, 200);

    // The log: the deciding policy in the denial's line, the StopsDenied metric.
    let log = std::fs::read_to_string(log_dir.join("functions.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("access denied by policy") && l.contains("no-prod-stops")),
        "no denial line"
    );
    assert!(log.contains("\"StopsDenied\":1.0") || log.contains("\"StopsDenied\":1"), "no StopsDenied metric");

    // An invalid set, written while the stack runs: every request denied
    // within the refresh interval; a valid one again: used again.
    std::fs::write(&policy_file, "permit (principal, action, resource) when { principal.acount == \"1\" };").unwrap();
    let wait_for = |want: (u64, Option<String>)| {
        let base = base.clone();
        let ev = event(GET, &demo_arn, &demo_run, Some(OPS));
        async move {
            let started = Instant::now();
            loop {
                let got = invoke(&base, &ev).await;
                if got == want {
                    return;
                }
                assert!(started.elapsed() < Duration::from_secs(30), "still {got:?}, waiting for {want:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    wait_for(denied()).await;
    let log = std::fs::read_to_string(log_dir.join("functions.log")).unwrap();
    assert!(log.contains("policy set invalid"), "the reason is logged");
    std::fs::write(&policy_file, policy_set()).unwrap();
    wait_for((200, None)).await;

    stack.terminate(3, Duration::from_secs(60));
}
