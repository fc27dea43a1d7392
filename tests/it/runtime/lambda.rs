//! The API function in the real Lambda runtime loop (`cargo lambda watch`,
//! which builds `run-api` and fronts it with a function URL), called by the
//! real `aws-sdk-mwaaserverless` client and by botocore, talking to moto
//! through `AWS_ENDPOINT_URL`. This is the path a user takes locally.

use std::process::Command;
use std::time::Duration;

use crate::kit::*;
use aws_sdk_mwaaserverless::operation::get_workflow_run::GetWorkflowRunError;
use aws_sdk_mwaaserverless::operation::stop_workflow_run::StopWorkflowRunError;
use aws_sdk_mwaaserverless::types::{ValidationExceptionReason, WorkflowRunStatus};

/// `cargo lambda watch` on a free port, serving both functions for local use:
/// `run-api` behind a function URL, `stop-finalizer` through the Invoke API.
async fn start_watch(moto_url: &str) -> (Guard, String) {
    let port = free_port();
    let mut cmd = Command::new(venv_bin("cargo-lambda"));
    as_from_a_shell(&mut cmd)
        .current_dir(project_dir())
        .args(["lambda", "watch", "--ignore-changes", "--quiet", "-A", "127.0.0.1", "-P", &port.to_string()])
        .arg("--env-var")
        .arg(format!(
            "RUNS_TABLE=WorkflowRuns,ALLOW_UNAUTHENTICATED_LOCAL=true,AWS_ENDPOINT_URL={moto_url},AWS_REGION={REGION},\
             AWS_ACCESS_KEY_ID=testing,AWS_SECRET_ACCESS_KEY=testing,RUST_LOG=info"
        ))
        // The function must not pick up the developer's own AWS profile.
        .env_remove("AWS_PROFILE")
        .env("PATH", format!("{}:{}", venv().join("bin").display(), std::env::var("PATH").unwrap_or_default()));
    let mut guard = Guard::spawn(cmd, &format!("cargo-lambda-watch-{port}.log"));
    let base = format!("http://127.0.0.1:{port}");
    // The first invoke waits for the build; allow a cold machine's compile.
    let endpoint = format!("{base}/lambda-url/run-api");
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!("cargo lambda watch exited with {status}:\n{}", guard.log_tail());
        }
        let probe = http
            .post(format!("{endpoint}/"))
            .header("x-amz-target", GET)
            .header("content-type", "application/x-amz-json-1.0")
            .body(String::from_utf8(stop_body(&workflow_arn("probe"), "probe")).unwrap())
            .send()
            .await;
        if let Ok(resp) = probe {
            if resp.headers().get("x-amzn-errortype").is_some_and(|v| v == "ResourceNotFoundException") {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1200), "run-api never answered:\n{}", guard.log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (guard, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_and_botocore_clients_work_unchanged_through_the_lambda_runtime() {
    let world = World::new().await;
    let mut tail = world.tail().await;
    let (_watch, base) = start_watch(&world.moto.url).await;
    let endpoint = format!("{base}/lambda-url/run-api");
    let arn = workflow_arn("nightly");
    let workers = world.start_workers(3).await;
    world.put_run(&arn, "run-1", "RUNNING", &workers).await;

    let client = aws_sdk_mwaaserverless::Client::new(&sdk_config_for(&endpoint).await);

    // Stop: the typed response.
    let out = client.stop_workflow_run().workflow_arn(&arn).run_id("run-1").send().await.expect("stop succeeds");
    assert_eq!(out.status(), Some(&WorkflowRunStatus::Stopping));
    assert_eq!(out.run_id(), Some("run-1"));
    assert_eq!(out.workflow_arn(), Some(arn.as_str()));
    assert_eq!(out.workflow_version(), Some("v3"));
    assert_eq!(world.task_statuses(&workers).await, vec!["STOPPED"; 3]);

    // Get: the model's shape, timestamps parsed by the SDK.
    let got = client.get_workflow_run().workflow_arn(&arn).run_id("run-1").send().await.expect("get succeeds");
    let detail = got.run_detail().unwrap();
    assert_eq!(detail.run_state(), Some(&WorkflowRunStatus::Stopping));
    assert_eq!(detail.started_on().unwrap().secs(), time::macros::datetime!(2026-11-20 10:00:05 UTC).unix_timestamp());
    assert!(detail.error_message().unwrap().contains("local:unauthenticated"));
    assert_eq!(got.run_type().map(|t| t.as_str()), Some("ON_DEMAND"));

    // Idempotent.
    let again = client.stop_workflow_run().workflow_arn(&arn).run_id("run-1").send().await.unwrap();
    assert_eq!(again.status(), Some(&WorkflowRunStatus::Stopping));

    // Errors arrive as the SDK's typed, modeled errors with their fields.
    let err = client.stop_workflow_run().workflow_arn("arn:nope").run_id("-x").send().await.unwrap_err();
    match err.into_service_error() {
        StopWorkflowRunError::ValidationException(e) => {
            assert_eq!(e.reason(), &ValidationExceptionReason::FieldValidationFailed);
            let names: Vec<&str> = e.field_list().iter().map(|f| f.name()).collect();
            assert_eq!(names, vec!["WorkflowArn", "RunId"]);
        }
        other => panic!("expected ValidationException, got {other:?}"),
    }
    let err = client.get_workflow_run().workflow_arn(&arn).run_id("missing").send().await.unwrap_err();
    match err.into_service_error() {
        GetWorkflowRunError::ResourceNotFoundException(e) => {
            assert_eq!(e.resource_id(), "missing");
            assert_eq!(e.resource_type(), "WorkflowRun");
        }
        other => panic!("expected ResourceNotFoundException, got {other:?}"),
    }

    // botocore (boto3, the AWS CLI) parses the same responses from the body.
    let script = project_dir().join("tests/botocore_client.py");
    let out = Command::new(venv_bin("python"))
        .arg(&script)
        .args([&endpoint, &arn, "run-1"])
        .output()
        .expect("run the botocore client check");
    assert!(
        out.status.success(),
        "botocore check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let changes = world.status_changes().await;
    assert_eq!(changes, vec![("RUNNING".to_owned(), "STOPPING".to_owned())]);

    // The stream's records, delivered to the finalizer through the Lambda Invoke API.
    let (event, n) = tail.next_event(&world.streams).await;
    assert!(n >= 2);
    let resp = reqwest::Client::new()
        .post(format!("{base}/2015-03-31/functions/stop-finalizer/invocations"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "invoke: {}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["batchItemFailures"], serde_json::json!([]), "{body}");
    let got = client.get_workflow_run().workflow_arn(&arn).run_id("run-1").send().await.unwrap();
    assert_eq!(got.run_detail().unwrap().run_state(), Some(&WorkflowRunStatus::Stopped));
    assert!(got.run_detail().unwrap().completed_on().is_some());
}
