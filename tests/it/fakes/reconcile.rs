//! The reconciler's safety net with the kit's fakes: stranded `STOPPING`
//! runs found through the stopping index and finalized by the same procedure
//! as the stream's, recorded as `FinalizedBy: reconciler`; young ones left to
//! the stream; and a reconciler racing the stream makes one transition.

use std::time::Duration;

use mwaa_stop::domain::{timestamp, RunKey, RunStatus, WorkflowArn};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits};
use mwaa_stop::lambda::stream::handle_batch;
use mwaa_stop::ports::FinalizedBy;
use time::OffsetDateTime;

use crate::kit::fakes::{fake_finalizer_limits, run_record, MemEcs, MemTable};
use crate::kit::stream::{stream_batch, stream_record};
use crate::kit::workflow_arn;

fn key(run: &str) -> RunKey {
    RunKey { workflow_arn: WorkflowArn::parse(&workflow_arn("etl")).unwrap(), run_id: run.into() }
}

fn limits() -> FinalizerLimits {
    fake_finalizer_limits()
}

/// A `STOPPING` run whose stop was accepted `ago` before now, with one
/// running worker.
fn stopping(table: &MemTable, ecs: &MemEcs, run: &str, ago: Duration) {
    let mut r = run_record(&workflow_arn("etl"), run, RunStatus::Stopping, &[&format!("task-{run}")]);
    r.stop_requested_at = Some(timestamp(OffsetDateTime::now_utc() - ago));
    table.put(r);
    ecs.running(&[&format!("task-{run}")]);
}

#[tokio::test(start_paused = true)]
async fn stranded_runs_are_finalized_by_the_reconciler_and_young_ones_left_to_the_stream() {
    let (table, ecs) = (MemTable::default(), MemEcs::default());
    stopping(&table, &ecs, "stranded", Duration::from_secs(600));
    stopping(&table, &ecs, "young", Duration::from_secs(5));
    table.put(run_record(&workflow_arn("etl"), "done", RunStatus::Success, &[]));
    let f = Finalizer::new(table, ecs, limits());
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((report.found, report.stopped, report.pending, report.failed), (1, 1, 0, 0));
    assert!(report.oldest_stopping_age_seconds >= 600.0, "{report:?}");
    assert_eq!(f.store().status(&key("stranded")), "STOPPED");
    assert_eq!(f.fleet().last_status("task-stranded"), "STOPPED", "its worker is verified dead");
    assert_eq!(f.store().status(&key("young")), "STOPPING", "the stream's fast path is left its time");
    let finalized = f.store().finalized.lock().unwrap().clone();
    assert_eq!(finalized.len(), 1);
    assert_eq!(finalized[0].1.finalized_by, FinalizedBy::Reconciler);

    // The next pass finds only the young run's age; nothing is written twice.
    let again = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((again.found, again.stopped), (0, 0));
    assert!(again.oldest_stopping_age_seconds < 60.0);
    assert_eq!(f.store().write_count("finalize"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_workers_still_drain_is_pending_and_finished_by_a_later_pass() {
    let (table, ecs) = (MemTable::default(), MemEcs { stop_lag: 1_000, ..Default::default() });
    stopping(&table, &ecs, "slow", Duration::from_secs(600));
    let f = Finalizer::new(table, ecs, FinalizerLimits { wait: Duration::from_secs(2), ..limits() });
    let first = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((first.found, first.stopped, first.pending), (1, 0, 1));
    assert_eq!(f.store().status(&key("slow")), "STOPPING", "never STOPPED while a worker runs");
    f.fleet().tasks.lock().unwrap().get_mut("task-slow").unwrap().0 = "STOPPED".into();
    let second = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((second.found, second.stopped), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_reconciler_racing_the_stream_finalizer_makes_one_transition() {
    let (table, ecs) = (MemTable::default(), MemEcs { stop_lag: 2, ..Default::default() });
    stopping(&table, &ecs, "r1", Duration::from_secs(600));
    let f = Finalizer::new(table, ecs, limits());
    let event = stream_batch(vec![stream_record(&key("r1"), "STOPPING", "1")]);
    let (stream, reconciled) = tokio::join!(handle_batch(&f, event, None), f.reconcile(Duration::from_secs(60), None));
    assert!(stream.batch_item_failures.is_empty());
    assert_eq!(reconciled.unwrap().found, 1);
    assert_eq!(f.store().status(&key("r1")), "STOPPED");
    assert_eq!(f.store().finalized.lock().unwrap().len(), 1, "exactly one STOPPING → STOPPED");
    assert_eq!(f.store().events_of(&key("r1")), vec!["Stopped"]);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_index_entry_is_counted_not_fatal() {
    let (table, ecs) = (MemTable::default(), MemEcs::default());
    stopping(&table, &ecs, "ok", Duration::from_secs(600));
    table.stopping.lock().unwrap().insert(("not-an-arn".into(), "r".into()), "2026-01-01T00:00:00.000Z".into());
    table.stopping.lock().unwrap().insert((workflow_arn("etl"), "bad-time".into()), "yesterday".into());
    let f = Finalizer::new(table, ecs, limits());
    let report = f.reconcile(Duration::from_secs(60), None).await.unwrap();
    assert_eq!((report.found, report.stopped, report.failed), (1, 1, 2));
    // Counted apart too, for the `ReconcilerUnreadableEntries` metric.
    assert_eq!(report.unreadable, 2);
}
