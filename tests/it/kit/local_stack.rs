//! Driving `python -m localdev` (`make local`, `make sam-local`) from a
//! test: start it on free ports and read its READY and DEMO lines
//! ([`RunningStack::start`]), stop a run and see it STOPPED with every worker
//! stopped ([`stop_and_wait_stopped`]), then SIGTERM it and check that it
//! exits 0 leaving none of its processes behind ([`RunningStack::terminate`]).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_mwaaserverless::types::WorkflowRunStatus;

use super::{get_run, sdk_config_for, StreamTail};

/// `(pid, start time)` of every descendant of `root`, read from /proc.
pub fn descendants(root: u32) -> HashSet<(u32, u64)> {
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

pub fn alive(pid: u32, start: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        rest[19].parse::<u64>().ok() == Some(start) && rest[0] != "Z"
    })
}

/// The start time of `pid` (field 22 of /proc/PID/stat), if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(19)?.parse().ok()
}

/// The exit status of a stack just sent SIGTERM; it has `within` to go.
pub fn exit_after_sigterm(stack: &mut Child, what: &str, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = stack.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} did not exit within {within:?} of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERMs the stack when dropped (an assertion failed), so it cleans up
/// after itself: `(pid, start time)` of the stack.
struct Term(u32, Option<u64>);

/// How long a dropped stack gets to stop its processes and exit after SIGTERM
/// (as [`RunningStack::terminate`] gives it in the tests), on a slow machine.
const TERM_WITHIN: Duration = Duration::from_secs(60);

impl Drop for Term {
    fn drop(&mut self) {
        let Term(pid, Some(start)) = *self else { return };
        if !alive(pid, start) {
            return; // exited already (a zombie until reaped) or reaped
        }
        // What to wait for: the stack and every process under it now (it
        // stops them on SIGTERM, then exits), gone or a zombie; polled,
        // not a fixed sleep, and bounded (a drop must not hang or panic).
        let mut running = descendants(pid);
        running.insert((pid, start));
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + TERM_WITHIN;
        while running.iter().any(|&(p, s)| alive(p, s)) {
            if Instant::now() >= deadline {
                eprintln!("the stack (pid {pid}) or a process under it still runs {TERM_WITHIN:?} after SIGTERM");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A local stack serving: what its READY and DEMO lines said.
pub struct RunningStack {
    pub child: Child,
    pub pid: u32,
    /// READY api=...
    pub api: String,
    /// READY aws=...
    pub aws: String,
    /// DEMO workflow_arn=... run_id=...
    pub demo: (String, String),
    pub transcript: Vec<String>,
    pub log_dir: PathBuf,
    _term: Term,
}

impl RunningStack {
    /// Spawn `cmd` (a `python -m localdev up`-like command, stdout piped by
    /// this function) and read its output until "Serving.", within `ready_within`.
    pub fn start(cmd: &mut Command, log_dir: PathBuf, ready_within: Duration) -> RunningStack {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the local stack");
        let pid = child.id();
        let term = Term(pid, start_time(pid));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
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
                    if let Ok(Some(status)) = child.try_wait() {
                        let mut err = String::new();
                        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
                        panic!("the stack exited with {status} before READY:\n{}\n{err}", transcript.join("\n"));
                    }
                    assert!(
                        started.elapsed() < ready_within,
                        "no READY within {ready_within:?}:\n{}",
                        transcript.join("\n")
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("stdout closed:\n{}", transcript.join("\n")),
            }
        }
        eprintln!("the stack was ready {:?} after its start", started.elapsed());
        RunningStack {
            child,
            pid,
            api: api.expect("READY names the API"),
            aws: aws.expect("READY names moto"),
            demo: demo.expect("a DEMO line"),
            transcript,
            log_dir,
            _term: term,
        }
    }

    /// SIGTERM: it exits 0 within `within` and every process it started
    /// (at least `min_children` of them) is gone.
    pub fn terminate(mut self, min_children: usize, within: Duration) {
        let children = descendants(self.pid);
        assert!(children.len() >= min_children, "fewer processes than expected under the stack: {children:?}");
        let status = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().unwrap();
        assert!(status.success());
        let exit = exit_after_sigterm(&mut self.child, "the stack", within);
        assert!(exit.success(), "exit status {exit}");
        let left: Vec<_> = children.iter().filter(|(p, s)| alive(*p, *s)).collect();
        assert!(left.is_empty(), "processes left behind: {left:?}");
    }
}

/// Stop `(arn, run_id)` with the real `aws-sdk-mwaaserverless` client at
/// `api`, see STOPPED through GetWorkflowRun within `within`, every worker
/// task of moto's ECS at `aws` STOPPED (`workers` of them) and exactly one
/// `STOPPING → STOPPED` in the table's stream; the `Stopped` event's `FinalizedBy`.
pub async fn stop_and_wait_stopped(
    api: &str,
    aws: &str,
    arn: &str,
    run_id: &str,
    workers: usize,
    within: Duration,
) -> String {
    let client = aws_sdk_mwaaserverless::Client::new(&sdk_config_for(api).await);
    let out = client.stop_workflow_run().workflow_arn(arn).run_id(run_id).send().await.expect("stop");
    assert_eq!(out.status(), Some(&WorkflowRunStatus::Stopping));
    wait_stopped(api, arn, run_id, within).await;
    all_workers_stopped(aws, workers).await;
    finalized_once(aws, arn, run_id).await
}

/// moto's ECS at `aws` holds `workers` worker tasks, every one STOPPED.
pub async fn all_workers_stopped(aws: &str, workers: usize) {
    let ecs = aws_sdk_ecs::Client::new(&sdk_config_for(aws).await);
    let listed = ecs.list_tasks().cluster("mwaa-workers").send().await.unwrap();
    let tasks = listed.task_arns().to_vec();
    assert_eq!(tasks.len(), workers, "the stack's ECS holds {workers} worker tasks");
    let described = ecs.describe_tasks().cluster("mwaa-workers").set_tasks(Some(tasks)).send().await.unwrap();
    for t in described.tasks() {
        assert_eq!(t.last_status(), Some("STOPPED"), "{:?}", t.task_arn());
    }
}

/// Poll GetWorkflowRun at `api` until the run is STOPPED, within `within`.
pub async fn wait_stopped(api: &str, arn: &str, run_id: &str, within: Duration) {
    let client = aws_sdk_mwaaserverless::Client::new(&sdk_config_for(api).await);
    let stopped_by = Instant::now() + within;
    loop {
        let got = client.get_workflow_run().workflow_arn(arn).run_id(run_id).send().await.unwrap();
        if got.run_detail().unwrap().run_state() == Some(&WorkflowRunStatus::Stopped) {
            return;
        }
        assert!(Instant::now() < stopped_by, "the run did not reach STOPPED within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Exactly one `STOPPING → STOPPED` of the run in the table's stream; the
/// `Stopped` history event's `FinalizedBy` (which path made it).
pub async fn finalized_once(aws: &str, arn: &str, run_id: &str) -> String {
    let conf = sdk_config_for(aws).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let streams = aws_sdk_dynamodbstreams::Client::new(&conf);
    let desc = ddb.describe_table().table_name("WorkflowRuns").send().await.unwrap();
    let mut tail = StreamTail::new(desc.table().unwrap().latest_stream_arn().unwrap().to_owned());
    let event = tail.rest(&streams).await;
    let to_stopped = event
        .records
        .iter()
        .filter(|r| {
            r.change.keys.get("RunId") == Some(&serde_dynamo::AttributeValue::S(run_id.to_owned()))
                && r.change.new_image.get("Status") == Some(&serde_dynamo::AttributeValue::S("STOPPED".into()))
                && r.change.old_image.get("Status") == Some(&serde_dynamo::AttributeValue::S("STOPPING".into()))
        })
        .count();
    assert_eq!(to_stopped, 1, "exactly one STOPPING → STOPPED");
    let item = get_run(&ddb, "WorkflowRuns", arn, run_id).await.expect("the run's item");
    let stopped = item["History"]
        .as_l()
        .unwrap()
        .iter()
        .map(|e| e.as_m().unwrap())
        .find(|e| e["Event"].as_s().unwrap() == "Stopped")
        .expect("a Stopped event")
        .clone();
    stopped["FinalizedBy"].as_s().unwrap().clone()
}

/// The detail-types of the run events of `run_id` that reached the local
/// stack's `run-events` queue (fed by a rule on moto's `default` bus, as
/// `make events` reads it), oldest first, polled until `want` are all there
/// or `within` passes. Read messages are deleted.
pub async fn run_events_of(aws: &str, run_id: &str, want: &[&str], within: Duration) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(&sdk_config_for(aws).await);
    let url = sqs.get_queue_url().queue_name("run-events").send().await.unwrap().queue_url.unwrap();
    let mut seen = Vec::new();
    let give_up = Instant::now() + within;
    while !want.iter().all(|w| seen.iter().any(|s| s == w)) && Instant::now() < give_up {
        let out = sqs.receive_message().queue_url(&url).max_number_of_messages(10).wait_time_seconds(1).send().await;
        for m in out.unwrap().messages.unwrap_or_default() {
            let event: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap();
            if event["detail"]["runId"] == run_id {
                seen.push(event["detail-type"].as_str().unwrap_or_default().to_owned());
            }
            sqs.delete_message().queue_url(&url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }
    seen
}
