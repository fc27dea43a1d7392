//! The Airflow provider as a client: `apache-airflow-providers-amazon`'s
//! `MwaaServerlessStopWorkflowRunOperator` and `MwaaServerlessWorkflowRunSensor`,
//! unchanged, in their own virtualenv (`make airflow-venv`), pointed at the
//! local stack the way an Airflow user points them at a deployed one
//! (`AWS_ENDPOINT_URL_MWAA_SERVERLESS`, `aws_conn_id=None`). The client
//! (airflow_client.py) prints what it observed; these tests assert on it.
//! Deployed, API Gateway needs a signature for `execute-api`: the subclasses
//! of clients/airflow/mwaa_stop_airflow.py add it, checked here against the
//! kit's SigV4 verifier.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use mwaa_stop::domain::Caller;
use serde_json::Value;

use crate::kit::local_stack::{all_workers_stopped, finalized_once, RunningStack};
use crate::kit::sigv4::{start_verifier, ACCESS_KEY, SECRET_KEY};
use crate::kit::*;

/// How long the run is held in STOPPING: the stream mapping is off and the
/// reconciler finalizes only runs STOPPING longer than this. The sensor's
/// first poke, a fraction of a second after the operator returns, falls
/// inside it on any machine; the stream's fast path (a 1 s settle locally)
/// would make that a race.
const HOLD_STOPPING_MS: u64 = 20_000;

/// Stop → `STOPPING`; the sensor pokes `False` while the run is STOPPING, then
/// fails on STOPPED with a message that names who stopped it; the operator
/// again on the STOPPED run gets `STOPPED` (a retry of a lost answer is no
/// error); the operator on a SUCCESS run gets the `ValidationException` of a
/// finished run, not retried by botocore, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_airflow_operator_and_sensor_stop_a_run_and_see_who_stopped_it() {
    let (aws_port, api_port) = (free_port(), free_port());
    let log_dir = log_dir().join(format!("airflow-{api_port}"));
    let mut cmd = Command::new(venv_bin("python"));
    as_from_a_shell(&mut cmd)
        .current_dir(project_dir())
        .env("LOCAL_STREAM_MAPPING", "off")
        .env("LOCAL_RECONCILE_AFTER_MS", HOLD_STOPPING_MS.to_string())
        .env("LOCAL_RECONCILE_PERIOD", "2")
        .env_remove("AUTHZ_POLICY_FILE")
        .args(["-m", "localdev", "up", "--aws-port", &aws_port.to_string(), "--api-port", &api_port.to_string()])
        .arg("--log-dir")
        .arg(&log_dir);
    let stack = RunningStack::start(&mut cmd, log_dir.clone(), Duration::from_secs(1500));
    let (arn, run_id) = stack.demo.clone();

    // A finished run of the same workflow, as its scheduler left it.
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config_for(&stack.aws).await);
    let finished_run = "run-finished-before-the-stop";
    let mut item = run_item(&arn, finished_run, "SUCCESS", &[], "mwaa-workers");
    item.insert("CompletedOn".to_owned(), s("2026-11-20T10:30:00.000Z"));
    ddb.put_item().table_name("WorkflowRuns").set_item(Some(item)).send().await.unwrap();
    let finished_before = get_run(&ddb, "WorkflowRuns", &arn, finished_run).await;

    let seen = airflow_client(
        &["local", &arn, &run_id, &arn, finished_run],
        &stack.api,
        ("local", "local"),
        &log_dir.join("airflow-home"),
    );

    // The operator returns the StopWorkflowRun answer's Status.
    assert_eq!(seen["stop"]["returned"], "STOPPING", "{seen:#}");

    // The sensor: False while STOPPING (at least the first poke), then its
    // failure on STOPPED, whose message says who requested the stop.
    let pokes = seen["sense"]["pokes"].as_array().unwrap();
    let (last, waiting) = pokes.split_last().expect("the sensor poked");
    assert!(!waiting.is_empty(), "the first poke falls inside the STOPPING hold: {seen:#}");
    for poke in waiting {
        assert_eq!(poke["returned"], false, "{poke}");
        assert_eq!(poke["state"], "STOPPING", "{poke}");
    }
    assert_eq!(last["raised"], "RuntimeError", "the sensor fails on STOPPED: {last}");
    assert_eq!(last["state"], "STOPPED");
    let message = last["message"].as_str().unwrap();
    assert!(message.contains(&format!("Workflow run {run_id} failed with state STOPPED")), "{message}");
    // The local stack's callers carry no identity: the recorded caller is
    // the local one (deployed, the caller's IAM principal ARN).
    let who = Caller::LocalUnauthenticated;
    assert!(message.contains(&format!("Stop requested by {} at 20", who.principal())), "who and when: {message}");

    // A stop repeated after the answer was lost: the run's status, no error.
    assert_eq!(seen["stop_again"]["returned"], "STOPPED", "{seen:#}");

    // A finished run: the modeled ValidationException (botocore raises the
    // class it generated from the service model's error shape), HTTP 400,
    // naming the run's status; botocore does not retry it.
    let refused = &seen["stop_finished"];
    assert_eq!(refused["error"], "ValidationException", "{refused}");
    assert_eq!(refused["code"], "ValidationException");
    assert_eq!(refused["http_status"], 400);
    assert_eq!(refused["retry_attempts"], 0);
    let why = refused["message"].as_str().unwrap();
    assert!(why.contains("already SUCCESS"), "{why}");
    // ... and the sensor succeeds on it at once.
    assert_eq!(seen["sense_finished"]["pokes"], serde_json::json!([{"returned": true, "state": "SUCCESS"}]));

    // What the clients saw is what happened: every worker stopped, one
    // STOPPING → STOPPED (by the reconciler: the stream mapping is off), and
    // the finished run untouched.
    all_workers_stopped(&stack.aws, 3).await;
    assert_eq!(finalized_once(&stack.aws, &arn, &run_id).await, "reconciler");
    let finished_after = get_run(&ddb, "WorkflowRuns", &arn, finished_run).await;
    assert_eq!(finished_after, finished_before, "a refused stop writes nothing");
    assert_eq!(
        finished_after.as_ref().and_then(|i: &HashMap<String, AttributeValue>| i.get("Status")),
        Some(&s("SUCCESS"))
    );
    stack.terminate(3, Duration::from_secs(60));
}

/// Pointed at a deployed stack: API Gateway checks a SigV4 signature for
/// `execute-api`. clients/airflow/mwaa_stop_airflow.py's subclasses (what
/// docs/airflow.md tells Airflow users to copy into their dags folder) are
/// accepted by the test kit's verifier, for the operator and the sensor; the
/// provider's own operator, unchanged, gets API Gateway's 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_airflow_tasks_pass_api_gateways_signature_check() {
    let (verifier, verdicts) = start_verifier().await;
    let home = log_dir().join(format!("airflow-deployed-{}", free_port())).join("airflow-home");
    let arn = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/nightly-etl-a1B2c3D4e5";
    let url = verifier.url.clone();
    let seen = tokio::task::spawn_blocking(move || {
        airflow_client(&["deployed", arn, "run-1"], &url, (ACCESS_KEY, SECRET_KEY), &home)
    })
    .await
    .unwrap();
    assert_eq!(seen["signed_stop"]["returned"], "STOPPING", "{seen:#}");
    assert_eq!(
        seen["signed_sense"]["pokes"],
        serde_json::json!([{"returned": false, "state": "STOPPING"}, {"returned": false, "state": "STOPPING"}]),
        "{seen:#}"
    );
    let refused = &seen["unsigned_stop"];
    assert_eq!(refused["http_status"], 403, "{seen:#}");
    let why = refused["message"].as_str().unwrap();
    assert!(why.contains("scoped to correct service: 'execute-api'"), "API Gateway's reason: {why}");
    let verdicts = verdicts.lock().unwrap().clone();
    let signed = vec![Ok("execute-api".to_owned()); 3];
    assert_eq!(verdicts[..3], signed[..], "the stop and both pokes signed for execute-api: {verdicts:?}");
    assert_eq!(verdicts.len(), 4, "{verdicts:?}");
    assert!(verdicts[3].as_ref().unwrap_err().contains("got 'airflow-serverless'"), "{verdicts:?}");
}

/// Run tests/it/runtime/airflow_client.py with `args` in `.venv-airflow`,
/// its `mwaa-serverless` endpoint at `endpoint` (`AWS_ENDPOINT_URL_MWAA_SERVERLESS`,
/// as an Airflow user sets it, or the connection's `endpoint_url`), the
/// credentials `(key id, secret)` and region us-east-1; `AIRFLOW_HOME` at
/// `home` (Airflow writes its config and logs there) and clients/airflow on
/// `PYTHONPATH` (where Airflow puts its dags folder). What it observed.
fn airflow_client(args: &[&str], endpoint: &str, (key_id, secret): (&str, &str), home: &Path) -> Value {
    std::fs::create_dir_all(home).unwrap();
    let out = Command::new(airflow_python())
        .arg(project_dir().join("tests/it/runtime/airflow_client.py"))
        .args(args)
        .env("AWS_ENDPOINT_URL_MWAA_SERVERLESS", endpoint)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AIRFLOW_HOME", home)
        .env("PYTHONPATH", project_dir().join("clients/airflow"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run the Airflow client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Airflow client failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the client's last line is its JSON ({e}):\n{stdout}\n{stderr}"));
    eprintln!("the Airflow client observed: {seen:#}");
    seen
}
