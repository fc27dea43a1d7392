//! `make sam-local` and `sam local invoke` end to end, with the functions in
//! SAM's arm64 Lambda containers (Docker; arm64 emulation on x86-64 hosts).
//!
//! Ignored by a plain `cargo test`: they need a Docker engine, the arm64 `sam
//! build` and the Lambda base image. `make sam-local-test` (part of `make
//! test`) checks those first and runs them with `--ignored`, or prints one
//! SKIPPED line naming what is missing (a failure in CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::kit::local_stack::{
    all_workers_stopped, finalized_once, run_events_of, stop_and_wait_stopped, RunningStack,
};
use crate::kit::*;
use serde_json::Value;

/// The ids of the Lambda containers of the stack whose moto is on `aws_port`
/// (they carry its endpoint in their environment), running or not.
fn containers_of(aws_port: u16) -> Vec<String> {
    let marker = format!("AWS_ENDPOINT_URL=http://host.docker.internal:{aws_port}");
    let ps = Command::new("docker").args(["ps", "-aq", "--no-trunc"]).output().expect("docker ps");
    assert!(ps.status.success(), "docker ps: {}", String::from_utf8_lossy(&ps.stderr));
    let ids: Vec<String> = String::from_utf8_lossy(&ps.stdout).split_whitespace().map(str::to_owned).collect();
    if ids.is_empty() {
        return ids;
    }
    let inspect = Command::new("docker")
        .args(["inspect", "--format", "{{.Id}} {{json .Config.Env}}"])
        .args(&ids)
        .output()
        .unwrap();
    String::from_utf8_lossy(&inspect.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, env)| serde_json::from_str::<Vec<String>>(env).is_ok_and(|e| e.contains(&marker)))
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// The SAM CLI of `.venv-sam`, offline, with the local stack's fake
/// credentials (which SAM hands to the function's container).
fn sam() -> Command {
    let mut cmd = Command::new(project_dir().join(".venv-sam/bin/sam"));
    as_from_a_shell(&mut cmd).current_dir(project_dir()).env_remove("AWS_PROFILE").envs([
        ("SAM_CLI_TELEMETRY", "0"),
        ("SAM_CLI_DISABLE_VERSION_CHECK", "1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);
    cmd
}

/// The function's answer: the last line of `sam local invoke`'s output that is JSON.
fn invoke_answer(out: &Output, what: &str) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok().filter(Value::is_object))
        .unwrap_or_else(|| panic!("{what}: no JSON answer in:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// events/sam-local-env.json for the stack whose moto is on `aws_port` (the
/// shipped file names the default port, 5000), plus `extra` (function,
/// variable, value) entries; written into `dir`.
fn env_file(aws_port: u16, dir: &Path, name: &str, extra: &[(&str, &str, &str)]) -> PathBuf {
    let shipped = std::fs::read_to_string(project_dir().join("events/sam-local-env.json")).unwrap();
    let mut env: Value = serde_json::from_str(&shipped).unwrap();
    for (_, vars) in env.as_object_mut().unwrap() {
        assert_eq!(vars["AWS_ENDPOINT_URL"], "http://host.docker.internal:5000");
        vars["AWS_ENDPOINT_URL"] = format!("http://host.docker.internal:{aws_port}").into();
    }
    for (function, var, value) in extra {
        env[*function][*var] = (*value).into();
    }
    let path = dir.join(name);
    std::fs::write(&path, env.to_string()).unwrap();
    path
}

/// `sam local invoke --config-env local FUNCTION --event FILE`, the command
/// docs/deploy.md gives, with `env` in place of the shipped env file (for
/// the stack's port) and the same port in the parameter overrides.
fn invoke(function: &str, event: &str, env: &Path, aws_port: u16) -> Value {
    let started = Instant::now();
    let out = sam()
        .args(["local", "invoke", "--config-env", "local", function, "--event", event, "--env-vars"])
        .arg(env)
        .arg("--parameter-overrides")
        .arg(format!("LocalEndpointUrl=http://host.docker.internal:{aws_port}"))
        .output()
        .expect("run sam local invoke");
    eprintln!("sam local invoke {function} --event {event}: {:?}", started.elapsed());
    invoke_answer(&out, &format!("sam local invoke {function} --event {event}"))
}

fn header<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    answer["headers"].as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?.1.as_str()
}

/// Stop `(arn, run_id)` with botocore (boto3's `mwaa-serverless` client, as
/// a Python user would) at `api` and poll GetWorkflowRun until STOPPED; the
/// states it saw, e.g. "STOPPING STOPPED".
fn stop_with_botocore(api: &str, arn: &str, run_id: &str) -> String {
    let script = r#"
import sys, time
import boto3
api, arn, run_id = sys.argv[1:]
c = boto3.client("mwaa-serverless", endpoint_url=api, region_name="us-east-1",
                 aws_access_key_id="local", aws_secret_access_key="local")
first = c.stop_workflow_run(WorkflowArn=arn, RunId=run_id)["Status"]
deadline = time.monotonic() + 180
state = None
while time.monotonic() < deadline:
    state = c.get_workflow_run(WorkflowArn=arn, RunId=run_id)["RunDetail"]["RunState"]
    if state == "STOPPED":
        break
    time.sleep(0.5)
print(first, state)
"#;
    let out = as_from_a_shell(&mut Command::new(venv_bin("python")))
        .args(["-c", script, api, arn, run_id])
        .output()
        .expect("run boto3");
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `make sam-local` (its `sam-up` command) on free ports, end to end: READY
/// names start-api's root as the API; the demo run stopped with
/// aws-sdk-mwaaserverless reaches STOPPED with its three workers stopped,
/// finalized by the stream mapping through `sam local start-lambda`, its
/// Stopping and Stopped events published by run-events in its container; a second
/// run seeded with `make seed`'s command is stopped with botocore; then,
/// against the same stack, `sam local invoke` of every events/ file gives its
/// documented answer and a request without an IAM identity is served only
/// with the template's local switch; and SIGTERM leaves no process and no
/// Lambda container behind. (One stack for all: each start costs minutes of
/// emulated cold starts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker, the arm64 sam build and the Lambda image: make sam-local-test"]
async fn sam_local_stops_runs_in_lambda_containers_and_shuts_down_cleanly() {
    let (aws_port, api_port, lambda_port) = (free_port(), free_port(), free_port());
    let log_dir = log_dir().join(format!("sam-local-{api_port}"));
    let mut cmd = Command::new(venv_bin("python"));
    as_from_a_shell(&mut cmd)
        .current_dir(project_dir())
        .env_remove("LOCAL_STREAM_MAPPING")
        .args(["-m", "localdev", "sam-up", "--aws-port", &aws_port.to_string()])
        .args(["--api-port", &api_port.to_string(), "--lambda-port", &lambda_port.to_string()])
        .arg("--log-dir")
        .arg(&log_dir);
    let stack = RunningStack::start(&mut cmd, log_dir.clone(), Duration::from_secs(1200));
    assert_eq!(stack.api, format!("http://127.0.0.1:{api_port}"));
    assert!(stack.transcript.iter().any(|l| l.contains("sam local start-api")), "{:?}", stack.transcript);
    let (arn, run_id) = stack.demo.clone();
    let finalized_by = stop_and_wait_stopped(&stack.api, &stack.aws, &arn, &run_id, 3, Duration::from_secs(180)).await;
    assert_eq!(finalized_by, "stream", "the stream mapping delivered the record to the finalizer through start-lambda");
    // The second mapping delivered the same stream to run-events, in its own
    // container, which published to moto's bus: the seeded insert, then the stop.
    let run_events = [
        "MWAA Serverless Workflow Run Running",
        "MWAA Serverless Workflow Run Stopping",
        "MWAA Serverless Workflow Run Stopped",
    ];
    let published = run_events_of(&stack.aws, &run_id, &run_events, Duration::from_secs(120)).await;
    assert_eq!(published, run_events, "one event per transition of the demo run, in order");

    // Another run, seeded as `make seed SAM_LOCAL=1` does, stopped with botocore.
    let seeded = as_from_a_shell(&mut Command::new(venv_bin("python")))
        .current_dir(project_dir())
        .args(["-m", "localdev", "seed", "--sam", "--workers", "2", "--aws-port", &aws_port.to_string()])
        .args(["--api-port", &api_port.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&seeded.stdout);
    assert!(seeded.status.success(), "seed: {text}{}", String::from_utf8_lossy(&seeded.stderr));
    assert!(
        text.contains(&format!("--endpoint-url http://127.0.0.1:{api_port} ")),
        "seed names start-api's URL: {text}"
    );
    let run_line = text.lines().find_map(|l| l.strip_prefix("RUN ")).expect("a RUN line");
    let mut it = run_line.split(' ').map(|p| p.split_once('=').unwrap().1.to_owned());
    let (arn2, run2) = (it.next().unwrap(), it.next().unwrap());
    assert_eq!(stop_with_botocore(&stack.api, &arn2, &run2), "STOPPING STOPPED");
    all_workers_stopped(&stack.aws, 5).await;
    assert_eq!(finalized_once(&stack.aws, &arn2, &run2).await, "stream");

    invoke_every_event(aws_port, &log_dir);
    let succeeded = ["MWAA Serverless Workflow Run Succeeded"];
    let published = run_events_of(&stack.aws, "scheduled-2026-11-21", &succeeded, Duration::from_secs(60)).await;
    assert_eq!(published, succeeded, "sam local invoke of events/run-events-stream.json published its event");
    unauthenticated_only_with_the_local_switch(aws_port, &log_dir);

    // The warm containers of start-api and start-lambda, one per function.
    let containers = containers_of(aws_port);
    assert!(
        containers.len() >= 4,
        "run-api, stop-finalizer, stop-reconciler and run-events containers: {containers:?}"
    );
    stack.terminate(3, Duration::from_secs(120));
    let left = containers_of(aws_port);
    assert!(left.is_empty(), "containers left behind: {left:?}; logs in {}", log_dir.display());
}

/// `sam local invoke` of each events/ file with the documented command
/// (`--config-env local`, samconfig.toml), against the stack on `aws_port`:
/// the documented answers (docs/deploy.md). The events name a run the stack
/// does not have.
fn invoke_every_event(aws_port: u16, dir: &Path) {
    let env = env_file(aws_port, dir, "invoke-env.json", &[]);
    let mut events: Vec<String> = std::fs::read_dir(project_dir().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "sam-local-env.json")
        .collect();
    let mut checked = Vec::new();
    for (name, error) in [
        ("get-workflow-run.json", "ResourceNotFoundException"),
        ("stop-workflow-run.json", "ResourceNotFoundException"),
        ("stop-workflow-run-malformed.json", "ValidationException"),
    ] {
        let answer = invoke("RunApiFunction", &format!("events/{name}"), &env, aws_port);
        assert_eq!(answer["statusCode"], 400, "{name}: {answer}");
        assert_eq!(header(&answer, "x-amzn-errortype"), Some(error), "{name}: {answer}");
        checked.push(name.to_owned());
    }
    for (function, name, why) in [
        ("StopFinalizerFunction", "stop-finalizer-stream.json", "a STOPPING record of an unknown run: nothing to do"),
        ("RunEventsFunction", "run-events-stream.json", "a scheduler's RUNNING → SUCCESS: one event published"),
    ] {
        let answer = invoke(function, &format!("events/{name}"), &env, aws_port);
        assert_eq!(answer, serde_json::json!({"batchItemFailures": []}), "{name}: {why}");
        checked.push(name.to_owned());
    }
    events.sort();
    checked.sort();
    assert_eq!(events, checked, "every file in events/ is invoked");
}

/// What `sam local start-api` sends: an HTTP API event without
/// `requestContext.authorizer`. run-api refuses it (AccessDeniedException)
/// unless ALLOW_UNAUTHENTICATED_LOCAL is set, which the template lets an
/// env file set only because it declares the variable (under its
/// LocalUnauthenticated condition); with it, the request is served (no
/// such run).
fn unauthenticated_only_with_the_local_switch(aws_port: u16, dir: &Path) {
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(project_dir().join("events/get-workflow-run.json")).unwrap())
            .unwrap();
    event["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let file = dir.join("get-workflow-run-without-identity.json");
    std::fs::write(&file, event.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let refused = invoke("RunApiFunction", file, &env_file(aws_port, dir, "iam-env.json", &[]), aws_port);
    assert_eq!(header(&refused, "x-amzn-errortype"), Some("AccessDeniedException"), "{refused}");
    let local = env_file(
        aws_port,
        dir,
        "unauthenticated-env.json",
        &[("RunApiFunction", "ALLOW_UNAUTHENTICATED_LOCAL", "true")],
    );
    let served = invoke("RunApiFunction", file, &local, aws_port);
    assert_eq!(header(&served, "x-amzn-errortype"), Some("ResourceNotFoundException"), "{served}");
}
