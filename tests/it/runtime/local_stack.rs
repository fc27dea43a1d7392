//! `make local` end to end: start the local stack on free ports, stop its
//! seeded demo run with the real `aws-sdk-mwaaserverless` client, see STOPPED
//! through GetWorkflowRun within a bound with every ECS task stopped (the
//! stream mapping delivered the record to the finalizer; with
//! `LOCAL_STREAM_MAPPING=off`, the reconciler alone), then SIGTERM the stack
//! and check it exits 0 leaving no process behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::kit::local_stack::{alive, descendants, exit_after_sigterm, stop_and_wait_stopped, RunningStack};
use crate::kit::*;

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
    as_from_a_shell(&mut cmd)
        .current_dir(project_dir())
        .args(["-m", "localdev", "up", "--aws-port", &aws_port.to_string(), "--api-port", &api_port.to_string()])
        .arg("--log-dir")
        .arg(&log_dir);
    let stack = RunningStack::start(&mut cmd, log_dir, Duration::from_secs(1500));
    assert_eq!(stack.api, format!("http://127.0.0.1:{api_port}/lambda-url/run-api"));
    assert!(stack.transcript.iter().any(|l| l.contains("aws mwaa-serverless stop-workflow-run --endpoint-url")));
    let (arn, run_id) = stack.demo.clone();
    let finalized_by = stop_and_wait_stopped(&stack.api, &stack.aws, &arn, &run_id, 3, Duration::from_secs(60)).await;

    // SIGTERM: everything it started (moto, cargo lambda watch and the
    // functions under it) goes, and it exits 0.
    stack.terminate(3, Duration::from_secs(60));
    finalized_by
}

#[test]
fn a_port_in_use_is_one_clear_sentence() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = as_from_a_shell(&mut Command::new(venv_bin("python")))
        .current_dir(project_dir())
        .args(["-m", "localdev", "up", "--aws-port", &port.to_string(), "--api-port", &free_port().to_string()])
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
        .args(["-m", "localdev", "demo", "--aws-port", &aws_port.to_string(), "--api-port", &api_port.to_string()])
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
        // The stop's run events, published by run-events to moto's
        // EventBridge and read back through the queue a rule feeds.
        "MWAA Serverless Workflow Run Stopping     RUNNING → STOPPING",
        "MWAA Serverless Workflow Run Stopped     STOPPING → STOPPED",
        "OK: the run is STOPPED, every worker task is STOPPED, and its Stopping and Stopped events were published",
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
            .args(["-m", "localdev", command, "--aws-port", &aws_port.to_string()])
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
        let exit = exit_after_sigterm(&mut stack, command, Duration::from_secs(60));
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
