//! Issue 22: `STOPPED` must never be written while a worker can still run,
//! and no run stays `STOPPING` forever for a worker that never dies. The
//! kit's fakes on tokio's paused clock produce each interleaving exactly:
//! ECS's eventual consistency (`MemEcs::list_lag`, `MemEcs::unknown_for`),
//! a worker recorded under the wrong cluster, a worker that never stops.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mwaa_stop::domain::{timestamp, RunKey, RunStatus, WorkflowArn};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits, RunOutcome};
use mwaa_stop::ports::RunRecord;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::kit::fakes::{fake_finalizer_limits, run_record, MemEcs, MemTable};
use crate::kit::workflow_arn;

fn key(run: &str) -> RunKey {
    RunKey { workflow_arn: WorkflowArn::parse(&workflow_arn("etl")).unwrap(), run_id: run.into() }
}

/// A `STOPPING` run whose stop was accepted `ago` before now.
fn stopping(run: &str, ago: Duration, workers: &[&str]) -> RunRecord {
    let mut r = run_record(&workflow_arn("etl"), run, RunStatus::Stopping, workers);
    r.stop_requested_at = Some(timestamp(OffsetDateTime::now_utc() - ago));
    r
}

/// The same, with the scheduler's `WorkerStartedBy` and `WorkerClusters`.
fn sweepable(run: &str, ago: Duration, workers: &[&str]) -> RunRecord {
    let mut r = stopping(run, ago, workers);
    r.worker_started_by = Some(format!("run/{run}"));
    r.worker_clusters = Some(vec!["c".into()]);
    r
}

fn limits() -> FinalizerLimits {
    fake_finalizer_limits()
}

/// The wall clock does not follow tokio's paused clock; the finalizer reads
/// a run's age from `StopRequestedAt` against the wall clock at each read.
/// Sleep `d` on the paused clock and make the stored stop `d` older, as if
/// the wall clock had moved with it.
async fn pass_time(table: &MemTable, k: &RunKey, d: Duration) {
    tokio::time::sleep(d).await;
    let mut runs = table.runs.lock().unwrap();
    let r = runs.get_mut(&(k.workflow_arn.to_string(), k.run_id.clone())).unwrap();
    let at = OffsetDateTime::parse(r.stop_requested_at.as_deref().unwrap(), &Rfc3339).unwrap();
    r.stop_requested_at = Some(timestamp(at - d));
}

// ---------------------------------------------------------------------------
// Item 9: a worker that never dies
// ---------------------------------------------------------------------------

/// A worker stuck in `DEPROVISIONING` (never `STOPPED`): before, the run
/// stayed `STOPPING` (a batch item failure on every delivery, then the
/// reconciler's pending, forever). Now, at `StopRequestedAt` + the stop
/// deadline it is written `STOPPED`, the worker named on the run
/// (`UnconfirmedWorkers`, `ErrorMessage`, the `Stopped` event) and the run
/// kept in the index's watch partition.
#[tokio::test(start_paused = true)]
async fn a_worker_stuck_deprovisioning_past_the_stop_deadline_is_named_and_the_run_stopped() {
    let table = MemTable::default();
    // The stop was accepted 595 s ago: the 600 s deadline comes in 5 s.
    table.put(stopping("stuck", Duration::from_secs(595), &["stuck-task", "ok-task"]));
    let ecs = MemEcs { stuck: vec!["stuck-task"], ..Default::default() };
    ecs.running(&["stuck-task", "ok-task"]);
    let f = Finalizer::new(table, ecs, limits());
    let started = Instant::now();
    let out = f.finalize_run(&key("stuck"), None).await.unwrap();
    assert_eq!(out, RunOutcome::Stopped { workers_stopped: 1, orphans_stopped: 0, child_policy: None, unconfirmed: 1 });
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(7), "at the deadline: {waited:?}");
    let run = f.store().run(&key("stuck"));
    assert_eq!(run.status, "STOPPED");
    assert_eq!(run.unconfirmed_workers.keys().collect::<Vec<_>>(), vec!["stuck-task"]);
    assert!(run.error_message.as_deref().unwrap().contains("stuck-task"), "{:?}", run.error_message);
    assert!(!run.error_message.as_deref().unwrap().contains("ok-task"), "only the unconfirmed are named");
    let written = f.store().finalized.lock().unwrap()[0].1.clone();
    assert_eq!(written.unconfirmed.keys().collect::<Vec<_>>(), vec!["stuck-task"]);
    assert!(written.watch);
    assert!(f.store().stopping.lock().unwrap().is_empty(), "no longer STOPPING");
    assert_eq!(f.store().watched.lock().unwrap().len(), 1, "watched by the reconciler");
    assert_eq!(f.fleet().last_status("ok-task"), "STOPPED");
}

/// A worker whose `StopTask` fails on every attempt (a 5xx) and which keeps
/// running: past the deadline it is named like a stuck one; the retried
/// `StopTask` does not hold the run `STOPPING`.
#[tokio::test(start_paused = true)]
async fn a_worker_whose_stop_task_always_fails_is_named_at_the_stop_deadline() {
    let table = MemTable::default();
    table.put(stopping("failing", Duration::from_secs(598), &["bad-task"]));
    let ecs = MemEcs { fail: vec!["bad-task"], ..Default::default() };
    ecs.running(&["bad-task"]);
    let f = Finalizer::new(table, ecs, limits());
    let out = f.finalize_run(&key("failing"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { unconfirmed: 1, .. }), "{out:?}");
    assert!(f.fleet().stop_calls.load(Ordering::SeqCst) > 1, "StopTask was retried meanwhile");
    assert_eq!(f.store().run(&key("failing")).unconfirmed_workers.len(), 1);
}

/// A `STOPPING` run with no `StopRequestedAt` (written by something other
/// than this control plane) is timed from its `ModifiedAt`: the deadline
/// still comes, instead of restarting at every read.
#[tokio::test(start_paused = true)]
async fn a_stopping_run_without_stop_requested_at_meets_its_deadline_from_modified_at() {
    let table = MemTable::default();
    let mut r = stopping("old", Duration::ZERO, &["stuck-task"]);
    r.stop_requested_at = None;
    r.modified_at = Some(timestamp(OffsetDateTime::now_utc() - Duration::from_secs(3_600)));
    table.put(r);
    let ecs = MemEcs { stuck: vec!["stuck-task"], ..Default::default() };
    ecs.running(&["stuck-task"]);
    let f = Finalizer::new(table, ecs, limits());
    let out = f.finalize_run(&key("old"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { unconfirmed: 1, .. }), "{out:?}");
}

/// `ListTasks` fails on every call until the deadline: the run is written
/// `STOPPED` (its registered worker is confirmed), but, never swept, it stays
/// watched, post-stop window or not, until a follow-up's sweep comes back
/// clean; that sweep finds the orphan, which is stopped.
#[tokio::test(start_paused = true)]
async fn a_run_whose_sweep_never_came_back_clean_by_the_deadline_stays_watched_until_one_does() {
    let table = MemTable::default();
    table.put(sweepable("r1", Duration::from_secs(598), &["t1"]));
    let ecs = MemEcs { list_failures: std::sync::atomic::AtomicUsize::new(usize::MAX), ..Default::default() };
    ecs.running(&["t1"]);
    ecs.launched_by("orphan-1", "run/r1");
    let f = Finalizer::new(table, ecs, limits()); // post_stop_sweep 0: no window
    let out = f.finalize_run(&key("r1"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { unconfirmed: 0, .. }), "{out:?}");
    assert_eq!(f.store().watched.lock().unwrap().len(), 1, "never swept: watched");
    assert_eq!(f.fleet().last_status("orphan-1"), "RUNNING");

    f.fleet().list_failures.store(0, Ordering::SeqCst);
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    // Found, stopped, confirmed and, the sweep clean at last, out of the
    // watch: one follow-up, one write.
    assert_eq!((report.late_found, report.late_confirmed, report.watch_ended), (1, 1, 1), "{report:?}");
    assert_eq!(f.fleet().last_status("orphan-1"), "STOPPED");
    assert!(f.store().watched.lock().unwrap().is_empty());
    assert_eq!(f.store().events_of(&key("r1")), vec!["Stopped", "LateWorkersFound", "WorkersConfirmed"]);
}

/// Before the deadline, the same stuck worker keeps the run `STOPPING`
/// (handed back for a retry): the deadline is the only way past it.
#[tokio::test(start_paused = true)]
async fn before_the_stop_deadline_a_stuck_worker_still_keeps_the_run_stopping() {
    let table = MemTable::default();
    table.put(stopping("young", Duration::from_secs(10), &["stuck-task"]));
    let ecs = MemEcs { stuck: vec!["stuck-task"], ..Default::default() };
    ecs.running(&["stuck-task"]);
    let f = Finalizer::new(table, ecs, limits());
    let out = f.finalize_run(&key("young"), None).await.unwrap();
    assert_eq!(out, RunOutcome::Pending { still_running: 1 });
    assert_eq!(f.store().status(&key("young")), "STOPPING");
}

/// After `STOPPED` at the deadline, the reconciler keeps describing the
/// unconfirmed worker; once ECS reports it `STOPPED` it records when
/// (`WorkersConfirmed`), empties `UnconfirmedWorkers` and ends the watch.
#[tokio::test(start_paused = true)]
async fn the_reconciler_keeps_after_an_unconfirmed_worker_and_records_when_it_dies() {
    let table = MemTable::default();
    table.put(stopping("stuck", Duration::from_secs(600), &["stuck-task"]));
    let ecs = MemEcs { stuck: vec!["stuck-task"], ..Default::default() };
    ecs.running(&["stuck-task"]);
    let f = Finalizer::new(table, ecs, limits());
    let out = f.finalize_run(&key("stuck"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { unconfirmed: 1, .. }), "{out:?}");
    assert_eq!(f.fleet().stop_calls.load(Ordering::SeqCst), 1);

    // Still stuck: the reconciler describes it, confirms nothing, keeps watching.
    let describes = f.fleet().describe_calls.load(Ordering::SeqCst);
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((report.watched, report.late_confirmed, report.watch_ended), (1, 0, 0));
    assert!(f.fleet().describe_calls.load(Ordering::SeqCst) > describes, "described after STOPPED");
    assert_eq!(f.store().watched.lock().unwrap().len(), 1);
    assert_eq!(f.store().run(&key("stuck")).unconfirmed_workers.len(), 1);

    // It dies at last.
    f.fleet().tasks.lock().unwrap().get_mut("stuck-task").unwrap().0 = "STOPPED".into();
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((report.watched, report.late_confirmed, report.watch_ended), (1, 1, 1));
    assert!(f.store().run(&key("stuck")).unconfirmed_workers.is_empty());
    assert!(f.store().watched.lock().unwrap().is_empty(), "out of the index");
    assert_eq!(f.store().events_of(&key("stuck")), vec!["Stopped", "WorkersConfirmed"]);
    let writes = f.store().watch_writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 1, "one write, when something changed");
    assert_eq!(writes[0].1.confirmed, vec!["stuck-task".to_owned()]);
    assert!(!writes[0].1.at.is_empty(), "when it was confirmed");

    // Nothing left: the next pass does nothing.
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!(report.watched, 0);
    assert_eq!(f.store().status(&key("stuck")), "STOPPED");
}

// ---------------------------------------------------------------------------
// Item 2: "not found" is not "dead"
// ---------------------------------------------------------------------------

const BLUE_TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/blue/0123456789abcdef0123456789abcdef";

/// The scheduler recorded the worker under `green`, but it runs in `blue`
/// (its ARN says so). ECS answers `MISSING` / "not found" for a task asked
/// about in another cluster: before, that counted as stopped at once and the
/// run was `STOPPED` with its worker running. Now the ARN's cluster is used.
#[tokio::test(start_paused = true)]
async fn a_worker_recorded_under_the_wrong_cluster_is_stopped_in_the_cluster_its_arn_names() {
    let table = MemTable::default();
    let mut r = stopping("wrong", Duration::ZERO, &[]);
    r.workers.insert(BLUE_TASK.into(), "arn:aws:ecs:us-east-1:123456789012:cluster/green".into());
    table.put(r);
    let ecs = MemEcs::default();
    ecs.running(&[BLUE_TASK]);
    let f = Finalizer::new(table, ecs, limits());
    let out = f.finalize_run(&key("wrong"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { workers_stopped: 1, unconfirmed: 0, .. }), "{out:?}");
    assert_eq!(f.fleet().last_status(BLUE_TASK), "STOPPED", "never STOPPED while it runs");
    assert_eq!(f.fleet().wrong_cluster.lock().unwrap().clone(), Vec::<String>::new());
    assert!(f.fleet().calls.lock().unwrap().iter().all(|(cluster, _, _)| cluster == "blue"));
}

/// A worker launched a moment ago is not yet known to ECS's reads
/// (`DescribeTasks` answers `MISSING`, `StopTask` "not found") for 3 s.
/// Before, the first `MISSING` counted as dead. Now only a second sighting
/// at least `missing_confirm` (5 s) later does; by then ECS knows the task,
/// which is stopped and seen `STOPPED`.
#[tokio::test(start_paused = true)]
async fn a_worker_launched_a_moment_ago_and_not_yet_known_to_ecs_is_not_counted_dead() {
    let table = MemTable::default();
    table.put(stopping("fresh", Duration::ZERO, &["young-1"]));
    let ecs = MemEcs { young: vec!["young-1"], unknown_for: Duration::from_secs(3), ..Default::default() };
    ecs.launched_now("young-1");
    let f = Finalizer::new(table, ecs, limits());
    let out = f.finalize_run(&key("fresh"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { workers_stopped: 1, .. }), "{out:?}");
    assert_eq!(f.fleet().last_status("young-1"), "STOPPED", "stopped, not taken for gone");
    assert_eq!(f.fleet().stop_calls.load(Ordering::SeqCst), 1);
}

/// A task ECS really no longer knows is confirmed, but only on a second
/// sighting at least `missing_confirm` after the first.
#[tokio::test(start_paused = true)]
async fn a_task_unknown_to_ecs_is_confirmed_only_on_a_second_sighting_some_seconds_later() {
    let table = MemTable::default();
    table.put(stopping("gone", Duration::ZERO, &["gone-1"]));
    let f = Finalizer::new(table, MemEcs::default(), limits());
    let started = Instant::now();
    let out = f.finalize_run(&key("gone"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { workers_stopped: 1, unconfirmed: 0, .. }), "{out:?}");
    assert!(started.elapsed() >= limits().missing_confirm, "not on the first sighting: {:?}", started.elapsed());
    assert!(f.fleet().describe_calls.load(Ordering::SeqCst) >= 2);
}

// ---------------------------------------------------------------------------
// Item 1: a worker launched just before the stop and never registered
// ---------------------------------------------------------------------------

/// The scheduler's `RunTask` was in flight when the stop landed: the task
/// exists, but `ListTasks` lists it only 4 s later. Before, the first sweep
/// found nothing and the run was `STOPPED` at once with the task running.
/// Now the verdict needs a clean sweep started `sweep_settle` (10 s) after
/// `StopRequestedAt`, which finds and stops it.
#[tokio::test(start_paused = true)]
async fn a_worker_launched_just_before_the_stop_and_not_yet_listed_is_found_by_a_settled_sweep() {
    let table = MemTable::default();
    table.put(sweepable("r1", Duration::ZERO, &[]));
    let ecs = MemEcs { list_lag: Duration::from_secs(4), ..Default::default() };
    ecs.launched_by("late-1", "run/r1");
    let f = Finalizer::new(table, ecs, limits());
    let started = Instant::now();
    let out = f.finalize_run(&key("r1"), None).await.unwrap();
    assert_eq!(out, RunOutcome::Stopped { workers_stopped: 1, orphans_stopped: 1, child_policy: None, unconfirmed: 0 });
    assert_eq!(f.fleet().last_status("late-1"), "STOPPED", "never STOPPED while it runs");
    assert!(started.elapsed() >= limits().sweep_settle, "{:?}", started.elapsed());
}

/// A worker told to stop (desired `STOPPED`) whose agent hangs: it is
/// listed only under `desiredStatus=STOPPED`, which the sweep now lists too,
/// and described until it is `STOPPED`; the run waits for it.
#[tokio::test(start_paused = true)]
async fn an_unregistered_worker_told_to_stop_but_still_running_is_swept_and_waited_for() {
    let table = MemTable::default();
    table.put(sweepable("r1", Duration::from_secs(60), &[]));
    let ecs = MemEcs { stop_lag: 40, ..Default::default() };
    ecs.launched_by("hung-1", "run/r1");
    ecs.stopping("hung-1"); // desired STOPPED, last STOPPING: still running
    let f = Finalizer::new(table, ecs, limits());
    let out = f.finalize_run(&key("r1"), None).await.unwrap();
    assert_eq!(out, RunOutcome::Stopped { workers_stopped: 1, orphans_stopped: 1, child_policy: None, unconfirmed: 0 });
    assert_eq!(f.fleet().last_status("hung-1"), "STOPPED");
    assert!(f.fleet().describe_calls.load(Ordering::SeqCst) > 40, "described until STOPPED");
}

/// `ListTasks` lags longer than the settle (30 s): the finalizer's sweeps
/// miss the task and the run is `STOPPED`. The post-stop sweep of the
/// reconciler (the run stays watched until `StopRequestedAt` +
/// `post_stop_sweep`) finds it, stops it, records it (`LateWorkersFound`,
/// `WorkersConfirmed`) and, once the window is closed, ends the watch.
#[tokio::test(start_paused = true)]
async fn a_worker_listed_only_after_stopped_is_found_and_stopped_by_the_post_stop_sweep() {
    let table = MemTable::default();
    table.put(sweepable("r1", Duration::ZERO, &[]));
    let ecs = MemEcs { list_lag: Duration::from_secs(30), ..Default::default() };
    ecs.launched_by("late-1", "run/r1");
    let limits = FinalizerLimits { post_stop_sweep: Duration::from_secs(120), ..limits() };
    let f = Finalizer::new(table, ecs, limits);
    let out = f.finalize_run(&key("r1"), None).await.unwrap();
    assert!(matches!(out, RunOutcome::Stopped { orphans_stopped: 0, .. }), "{out:?}");
    assert_eq!(f.fleet().last_status("late-1"), "RUNNING", "missed by every sweep before STOPPED");
    assert_eq!(f.store().watched.lock().unwrap().len(), 1, "watched for the post-stop sweep");

    pass_time(f.store(), &key("r1"), Duration::from_secs(30)).await;
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((report.watched, report.late_found, report.late_confirmed, report.watch_ended), (1, 1, 1, 0));
    assert_eq!(f.fleet().last_status("late-1"), "STOPPED");
    assert_eq!(f.store().events_of(&key("r1")), vec!["Stopped", "LateWorkersFound", "WorkersConfirmed"]);
    assert_eq!(f.store().watched.lock().unwrap().len(), 1, "the window is still open");

    // Past the window: a clean sweep with nothing left ends the watch.
    pass_time(f.store(), &key("r1"), Duration::from_secs(120)).await;
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((report.watched, report.late_found, report.watch_ended), (1, 0, 1));
    assert!(f.store().watched.lock().unwrap().is_empty());
}
