//! `make local` end to end: start the local stack on free ports, stop its
//! seeded demo run with the real `aws-sdk-mwaaserverless` client, see STOPPED
//! through GetWorkflowRun within a bound with every ECS task stopped (the
//! stream mapping delivered the record to the finalizer; with
//! `LOCAL_STREAM_MAPPING=off`, the reconciler alone), then SIGTERM the stack
//! and check it exits 0 leaving no process behind.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::kit::*;
use aws_sdk_mwaaserverless::types::WorkflowRunStatus;

/// `(pid, start time)` of every descendant of `root`, read from /proc.
fn descendants(root: u32) -> HashSet<(u32, u64)> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // fields after the command name (which may contain spaces) start at ')'
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ppid: u32 = rest[1].parse().unwrap();
        let start: u64 = rest[19].parse().unwrap();
        parent_of.push((pid, ppid, start));
    }
    let mut found = HashSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid, start) in &parent_of {
            if ppid == p && found.insert((pid, start)) {
                frontier.push(pid);
            }
        }
    }
    found
}

fn alive(pid: u32, start: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        rest[19].parse::<u64>().ok() == Some(start) && rest[0] != "Z"
    })
}

/// The exit status of a stack just sent SIGTERM; it has a minute to go.
fn exit_after_sigterm(stack: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = stack.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} did not exit within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stack_stops_a_run_end_to_end_and_shuts_down_cleanly() {
    let finalized_by = stop_the_demo_run_end_to_end(None).await;
    assert_eq!(finalized_by, "stream", "the stream mapping is the fast path");
}

/// The event source mapping off, as if disabled in AWS: the reconciler alone
/// brings the run to STOPPED within 60 s, in one transition however many
/// passes ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stream_mapping_off_the_reconciler_alone_stops_the_run() {
    let finalized_by = stop_the_demo_run_end_to_end(Some("off")).await;
    assert_eq!(finalized_by, "reconciler");
}

/// Start the stack (`LOCAL_STREAM_MAPPING` as given), stop its demo run,
/// check STOPPED within 60 s with every worker stopped and exactly one
/// `STOPPING → STOPPED` in the table's stream, shut it down; the `Stopped`
/// event's `FinalizedBy`.
async fn stop_the_demo_run_end_to_end(stream_mapping: Option<&str>) -> String {
    let (aws_port, api_port) = (free_port(), free_port());
    let log_dir = log_dir().join(format!("local-stack-{api_port}"));
    let mut cmd = Command::new(venv_bin("python"));
    match stream_mapping {
        Some(v) => cmd.env("LOCAL_STREAM_MAPPING", v),
        None => cmd.env_remove("LOCAL_STREAM_MAPPING"),
    };
    let mut stack = as_from_a_shell(&mut cmd)
        .current_dir(project_dir())
        .args(["tools/local_stack.py", "up", "--aws-port", &aws_port.to_string(), "--api-port", &api_port.to_string()])
        .arg("--log-dir")
        .arg(&log_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the local stack");
    let pid = stack.id();
    // If an assertion fails, SIGTERM the stack so it cleans up after itself.
    struct Term(u32);
    impl Drop for Term {
        fn drop(&mut self) {
            if std::path::Path::new(&format!("/proc/{}", self.0)).exists() {
                let _ = Command::new("kill").args(["-TERM", &self.0.to_string()]).stderr(Stdio::null()).status();
                std::thread::sleep(Duration::from_secs(3));
            }
        }
    }
    let _term = Term(pid);

    // Read its output on a thread; wait for READY and the demo run.
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = stack.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut api, mut aws, mut demo) = (None, None, None);
    let mut transcript: Vec<String> = Vec::new();
    let started = Instant::now();
    while !transcript.last().is_some_and(|l| l.starts_with("Serving.")) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("READY ") {
                    for part in rest.split(' ') {
                        if let Some(v) = part.strip_prefix("api=") {
                            api = Some(v.to_owned());
                        }
                        if let Some(v) = part.strip_prefix("aws=") {
                            aws = Some(v.to_owned());
                        }
                    }
                }
                if let Some(rest) = line.strip_prefix("DEMO ") {
                    let mut it = rest.split(' ').map(|p| p.split_once('=').unwrap().1.to_owned());
                    demo = Some((it.next().unwrap(), it.next().unwrap()));
                }
                transcript.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = stack.try_wait() {
                    panic!("the stack exited with {status} before READY:\n{}", transcript.join("\n"));
                }
                assert!(started.elapsed() < Duration::from_secs(1500), "no READY:\n{}", transcript.join("\n"));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("stdout closed:\n{}", transcript.join("\n")),
        }
    }
    let (api, aws) = (api.expect("READY names the API"), aws.expect("READY names moto"));
    let (arn, run_id) = demo.unwrap();
    assert_eq!(api, format!("http://127.0.0.1:{api_port}/lambda-url/run-api"));
    assert!(transcript.iter().any(|l| l.contains("aws mwaa-serverless stop-workflow-run --endpoint-url")));

    let client = aws_sdk_mwaaserverless::Client::new(&sdk_config_for(&api).await);
    let out = client.stop_workflow_run().workflow_arn(&arn).run_id(&run_id).send().await.expect("stop");
    assert_eq!(out.status(), Some(&WorkflowRunStatus::Stopping));
    let stopped_by = Instant::now() + Duration::from_secs(60);
    loop {
        let got = client.get_workflow_run().workflow_arn(&arn).run_id(&run_id).send().await.unwrap();
        if got.run_detail().unwrap().run_state() == Some(&WorkflowRunStatus::Stopped) {
            break;
        }
        assert!(
            Instant::now() < stopped_by,
            "the run did not reach STOPPED within 60 s; logs in {}",
            log_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every worker task of the stack's ECS is stopped.
    let ecs = aws_sdk_ecs::Client::new(&sdk_config_for(&aws).await);
    let listed = ecs.list_tasks().cluster("mwaa-workers").send().await.unwrap();
    let tasks = listed.task_arns().to_vec();
    assert_eq!(tasks.len(), 3, "the demo run has three workers");
    let described = ecs.describe_tasks().cluster("mwaa-workers").set_tasks(Some(tasks)).send().await.unwrap();
    for t in described.tasks() {
        assert_eq!(t.last_status(), Some("STOPPED"), "{:?}", t.task_arn());
    }

    // One transition, and which path made it.
    let conf = sdk_config_for(&aws).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let streams = aws_sdk_dynamodbstreams::Client::new(&conf);
    let desc = ddb.describe_table().table_name("WorkflowRuns").send().await.unwrap();
    let mut tail = StreamTail::new(desc.table().unwrap().latest_stream_arn().unwrap().to_owned());
    let event = tail.rest(&streams).await;
    let to_stopped = event
        .records
        .iter()
        .filter(|r| {
            r.change.keys.get("RunId") == Some(&serde_dynamo::AttributeValue::S(run_id.clone()))
                && r.change.new_image.get("Status") == Some(&serde_dynamo::AttributeValue::S("STOPPED".into()))
                && r.change.old_image.get("Status") == Some(&serde_dynamo::AttributeValue::S("STOPPING".into()))
        })
        .count();
    assert_eq!(to_stopped, 1, "exactly one STOPPING → STOPPED");
    let item = ddb
        .get_item()
        .table_name("WorkflowRuns")
        .key("WorkflowArn", s(&arn))
        .key("RunId", s(&run_id))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let stopped = item["History"]
        .as_l()
        .unwrap()
        .iter()
        .map(|e| e.as_m().unwrap())
        .find(|e| e["Event"].as_s().unwrap() == "Stopped")
        .expect("a Stopped event")
        .clone();
    let finalized_by = stopped["FinalizedBy"].as_s().unwrap().clone();

    // SIGTERM: everything it started goes, and it exits 0.
    let children = descendants(pid);
    assert!(children.len() >= 3, "moto, cargo lambda watch and the functions run under it: {children:?}");
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let exit = exit_after_sigterm(&mut stack, "the stack");
    assert!(exit.success(), "exit status {exit}");
    let left: Vec<_> = children.iter().filter(|(p, s)| alive(*p, *s)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    finalized_by
}

#[test]
fn a_port_in_use_is_one_clear_sentence() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = as_from_a_shell(&mut Command::new(venv_bin("python")))
        .current_dir(project_dir())
        .args(["tools/local_stack.py", "up", "--aws-port", &port.to_string(), "--api-port", &free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one sentence, no trace: {err}");
    assert!(err.contains(&format!("Port {port} (LOCAL_AWS_PORT) is already in use")), "{err}");
}

/// `make demo`, as CI and a newcomer run it: the real AWS CLI stops a run,
/// the tour shows it reach STOPPED with every worker stopped, and exits 0.
#[test]
fn the_demo_tour_passes_with_the_real_aws_cli() {
    let (aws_port, api_port) = (free_port(), free_port());
    let out = as_from_a_shell(&mut Command::new(venv_bin("python")))
        .current_dir(project_dir())
        .args([
            "tools/local_stack.py",
            "demo",
            "--aws-port",
            &aws_port.to_string(),
            "--api-port",
            &api_port.to_string(),
        ])
        .arg("--log-dir")
        .arg(log_dir().join(format!("demo-{api_port}")))
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "$ aws mwaa-serverless stop-workflow-run --endpoint-url",
        "→ Status STOPPING",
        "RUNNING → STOPPED",
        "StopRequested",
        "Stopped        WorkersStopped=4, OrphansStopped=0",
        "== Stop request to STOPPED:",
        "OK: the run is STOPPED and every worker task is STOPPED",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("RUNNING → RUNNING"));
}

/// Ctrl-C / SIGTERM while the stack is still starting (the first request to
/// `cargo lambda watch` blocks for the whole first build) stops it at once:
/// `up` exits 0, `demo` 130, and no process it started is left running.
#[test]
fn a_stop_signal_during_start_up_leaves_nothing_running() {
    for (command, expected) in [("up", 0), ("demo", 130)] {
        let (aws_port, api_port) = (free_port(), free_port());
        let mut stack = as_from_a_shell(&mut Command::new(venv_bin("python")))
            .current_dir(project_dir())
            .args(["tools/local_stack.py", command, "--aws-port", &aws_port.to_string()])
            .args(["--api-port", &api_port.to_string()])
            .arg("--log-dir")
            .arg(log_dir().join(format!("interrupted-{command}-{api_port}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the local stack");
        let pid = stack.id();
        let mut transcript = Vec::new();
        let mut lines = BufReader::new(stack.stdout.take().unwrap()).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            let starting_functions = line.contains("under cargo lambda watch");
            transcript.push(line);
            if starting_functions {
                break;
            }
        }
        assert!(
            transcript.last().is_some_and(|l| l.contains("cargo lambda watch")),
            "{command} never started the functions:\n{}",
            transcript.join("\n")
        );
        // Give `cargo lambda watch` a moment to spawn its build, then signal.
        std::thread::sleep(Duration::from_millis(500));
        let children = descendants(pid);
        assert!(children.len() >= 2, "{command}: moto and cargo lambda watch are running: {children:?}");
        assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
        let signalled = Instant::now();
        let exit = exit_after_sigterm(&mut stack, command);
        // Its processes obey SIGTERM: the stack does not wait out the 15 s
        // grace period before SIGKILL (as it would if they ignored it).
        let took = signalled.elapsed();
        eprintln!("{command} exited {took:?} after SIGTERM");
        assert!(took < Duration::from_secs(14), "{command} took {took:?} to stop");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut stack.stderr.take().unwrap(), &mut err).unwrap();
        transcript.extend(lines.map_while(Result::ok));
        assert_eq!(exit.code(), Some(expected), "{command}: {err}\n{}", transcript.join("\n"));
        assert!(!err.contains("Traceback"), "{command} printed a traceback: {err}");
        let left: Vec<_> = children.iter().filter(|(p, s)| alive(*p, *s)).collect();
        assert!(left.is_empty(), "{command} left processes behind: {left:?}");
    }
}
