//! Stops against ECS's real rate limits, on tokio's paused clock: the fake
//! ECS enforces the published per-account buckets (`StopTask` 100 + 40/s,
//! reads 100 + 20/s) and answers `ThrottlingException` as ECS does. The API
//! and the finalizer each get their own `Paced` wrapper over the one fake
//! account, as two Lambda functions share one AWS account. Every number here
//! is exact arithmetic on the fake clock, not a measurement of this machine.

use std::time::Duration;

use futures::future::join_all;
use mwaa_stop::domain::{Caller, RunKey, RunStatus, WorkflowArn};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits, RunOutcome};
use mwaa_stop::pacing::{EcsRates, Paced};
use mwaa_stop::ports::StopRequest;
use mwaa_stop::stop::{FanOutLimits, Service};
use tokio::time::Instant;

use crate::kit::fakes::{run_record, AccountBuckets, MemEcs, MemTable};
use crate::kit::{workflow_arn, ACCOUNT, ALICE};

/// ECS's answer time in these tests.
const D: Duration = Duration::from_millis(10);

fn key(run: &str) -> RunKey {
    RunKey { workflow_arn: WorkflowArn::parse(&workflow_arn("etl")).unwrap(), run_id: run.into() }
}

/// The fake account: published buckets, each call answered after `D`.
fn account() -> MemEcs {
    MemEcs { account: Some(AccountBuckets::published()), latency: D, ..Default::default() }
}

/// `runs` RUNNING runs of `workers` running tasks each, named `r0`, `r1`, ...
fn put_runs(table: &MemTable, ecs: &MemEcs, runs: usize, workers: usize) -> Vec<RunKey> {
    (0..runs)
        .map(|r| {
            let tasks: Vec<String> =
                (0..workers).map(|i| format!("arn:aws:ecs:us-east-1:1:task/c/r{r}-{i:05}")).collect();
            let refs: Vec<&str> = tasks.iter().map(String::as_str).collect();
            table.put(run_record(&workflow_arn("etl"), &format!("r{r}"), RunStatus::Running, &refs));
            ecs.running(&refs);
            key(&format!("r{r}"))
        })
        .collect()
}

fn rates(reserve: f64) -> EcsRates {
    EcsRates { reserve, ..EcsRates::default() }
}

fn api<'a>(table: &'a MemTable, ecs: &'a MemEcs, rates: EcsRates) -> Service<&'a MemTable, Paced<&'a MemEcs>> {
    Service::new(
        table,
        Paced::new(ecs, rates.for_api()),
        FanOutLimits { concurrency: 100, budget: Duration::from_secs(10) },
    )
}

fn finalizer<'a>(table: &'a MemTable, ecs: &'a MemEcs, rates: EcsRates) -> Finalizer<&'a MemTable, Paced<&'a MemEcs>> {
    let limits = FinalizerLimits {
        wait: Duration::from_secs(300),
        poll_initial: Duration::from_millis(250),
        poll_max: Duration::from_secs(2),
        run_concurrency: 100,
        stop_concurrency: 32,
        ..FinalizerLimits::default()
    };
    Finalizer::new(table, Paced::new(ecs, rates.for_finalizer()), limits)
}

async fn stop(svc: &Service<&MemTable, Paced<&MemEcs>>, k: &RunKey) -> mwaa_stop::stop::FanOutReport {
    let caller = Caller::Iam { account: ACCOUNT.into(), principal: ALICE.into() };
    let req = StopRequest {
        at: "2026-11-21T10:00:00.000Z".into(),
        by: ALICE.into(),
        request_id: "r".into(),
        source_ip: None,
    };
    let out = svc.stop_workflow_run(&caller, k, &req, None).await.expect("a stop never fails its caller");
    assert_eq!(out.status, RunStatus::Stopping);
    out.fan_out.expect("this request made the transition")
}

/// When the last task was first told to stop, from the start.
fn all_told(ecs: &MemEcs, start: Instant) -> Duration {
    *ecs.told_at.lock().unwrap().values().max().unwrap() - start
}

fn throttled(ecs: &MemEcs) -> usize {
    ecs.account.as_ref().unwrap().throttled_count()
}

/// A stop of up to 100 workers is one round trip after the write: every
/// `StopTask` in one wave, within ECS's burst, none throttled.
#[tokio::test(start_paused = true)]
async fn up_to_the_burst_a_stop_is_one_wave() {
    let (table, ecs) = (MemTable::default(), account());
    let keys = put_runs(&table, &ecs, 1, 100);
    let start = Instant::now();
    let report = stop(&api(&table, &ecs, EcsRates::default()), &keys[0]).await;
    assert_eq!(Instant::now() - start, D, "the answer comes one StopTask round trip after the write");
    assert_eq!((report.accepted, report.deferred, report.failed), (100, 0, 0));
    assert_eq!(ecs.told_at.lock().unwrap().len(), 100);
    assert_eq!(throttled(&ecs), 0);
}

/// Beyond the burst the API sends its one wave and answers; the finalizer
/// paces the rest at the refill rate. With no reserve, every worker is told
/// within 1% of the physical floor D + (N - 100) / 40 s, the run is STOPPED,
/// and ECS never throttles a call.
#[tokio::test(start_paused = true)]
async fn beyond_the_burst_the_finalizer_paces_the_rest_to_the_refill_rate() {
    for n in [250usize, 1000, 2000] {
        let (table, ecs) = (MemTable::default(), account());
        let keys = put_runs(&table, &ecs, 1, n);
        let start = Instant::now();
        let report = stop(&api(&table, &ecs, rates(0.0)), &keys[0]).await;
        assert_eq!((report.accepted, report.deferred), (100, n - 100), "N = {n}: one wave of the burst");
        assert_eq!(Instant::now() - start, D, "N = {n}: the caller waits for one wave only");
        let f = finalizer(&table, &ecs, rates(0.0));
        let outcome = f.finalize_run(&keys[0], None).await.unwrap();
        assert!(matches!(outcome, RunOutcome::Stopped { workers_stopped, .. } if workers_stopped == n), "{outcome:?}");
        let floor = D + Duration::from_secs_f64((n - 100) as f64 / 40.0);
        let told = all_told(&ecs, start);
        assert!(told <= floor.mul_f64(1.01), "N = {n}: all told at {told:?}, floor {floor:?}");
        assert_eq!(throttled(&ecs), 0, "N = {n}: paced, never throttled");
        assert_eq!(table.status(&keys[0]), "STOPPED");
        let stopped_at = Instant::now() - start;
        assert!(
            stopped_at <= told + Duration::from_millis(400),
            "N = {n}: STOPPED {stopped_at:?} after all told {told:?}"
        );
    }
}

/// 100 runs of 10 workers stopped at the same moment through one API process
/// share its bucket: the first wave uses the burst, the finalizer paces the
/// other 900 stops; no caller error, no throttle, every run STOPPED.
#[tokio::test(start_paused = true)]
async fn a_hundred_runs_at_once_share_one_bucket() {
    let (table, ecs) = (MemTable::default(), account());
    let keys = put_runs(&table, &ecs, 100, 10);
    let svc = api(&table, &ecs, rates(0.0));
    let start = Instant::now();
    let reports = join_all(keys.iter().map(|k| stop(&svc, k))).await;
    assert_eq!(Instant::now() - start, D, "every caller is answered after one round trip");
    assert_eq!(reports.iter().map(|r| r.accepted).sum::<usize>(), 100, "the burst, and not a token more");
    let f = finalizer(&table, &ecs, rates(0.0));
    let outcomes = join_all(keys.iter().map(|k| f.finalize_run(k, None))).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(RunOutcome::Stopped { .. }))), "{outcomes:?}");
    let floor = D + Duration::from_secs_f64(900.0 / 40.0);
    assert!(all_told(&ecs, start) <= floor.mul_f64(1.01), "{:?} vs {floor:?}", all_told(&ecs, start));
    assert_eq!(throttled(&ecs), 0);
}

/// The same 100 runs through 10 API processes (classic Lambda: concurrent
/// invocations in separate environments, each with a full bucket of its
/// own) overrun ECS's burst: the excess StopTasks are throttled once each,
/// never resent by the API, and left to the finalizer, which paces them.
/// Bounded (one throttle per worker beyond the burst at most), no caller
/// error, every run STOPPED.
#[tokio::test(start_paused = true)]
async fn api_processes_that_cannot_see_each_other_throttle_once_then_the_finalizer_paces() {
    let (table, ecs) = (MemTable::default(), account());
    let keys = put_runs(&table, &ecs, 100, 10);
    let apis: Vec<_> = (0..10).map(|_| api(&table, &ecs, rates(0.0))).collect();
    let reports = join_all(keys.iter().enumerate().map(|(i, k)| stop(&apis[i % 10], k))).await;
    let deferred: usize = reports.iter().map(|r| r.deferred).sum();
    assert_eq!(reports.iter().map(|r| r.accepted).sum::<usize>() + deferred, 1000);
    assert_eq!(throttled(&ecs), deferred, "each deferred StopTask was throttled once, not resent");
    assert!(deferred <= 900);
    let f = finalizer(&table, &ecs, rates(0.0));
    let outcomes = join_all(keys.iter().map(|k| f.finalize_run(k, None))).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(RunOutcome::Stopped { .. }))), "{outcomes:?}");
    assert_eq!(throttled(&ecs), deferred, "the finalizer's paced stops were never throttled");
}

/// The reserve is left to the schedulers: while a stop of 1,000 workers
/// drains ECS's bucket, a scheduler's `RunTask` at 3/s (within the default
/// 10% of 40/s) is never throttled, and neither is the stop.
#[tokio::test(start_paused = true)]
async fn the_reserve_leaves_room_for_the_schedulers_run_task() {
    let (table, ecs) = (MemTable::default(), account());
    let keys = put_runs(&table, &ecs, 1, 1000);
    stop(&api(&table, &ecs, EcsRates::default()), &keys[0]).await;
    let f = finalizer(&table, &ecs, EcsRates::default());
    let scheduler = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut refused = 0;
        for _ in 0..60 {
            if !ecs.account.as_ref().unwrap().run_task() {
                refused += 1;
            }
            tokio::time::sleep(Duration::from_millis(333)).await;
        }
        refused
    };
    let (outcome, refused) = tokio::join!(f.finalize_run(&keys[0], None), scheduler);
    assert!(matches!(outcome, Ok(RunOutcome::Stopped { .. })), "{outcome:?}");
    assert_eq!(refused, 0, "no RunTask of the scheduler was throttled");
    assert_eq!(throttled(&ecs), 0);
}

/// Finalizers that cannot see each other (the stream's concurrent batches
/// run in separate Lambda environments) pace to the same account: throttles
/// are back-pressure. Each halves its rate and sends the throttled call
/// again after a token: with 2 processes throttles stay under 0.02 per
/// worker, with 10 (the template's ParallelizationFactor) around 0.1 — not a
/// storm (the SDK's retries used to make 2.4 per worker) — and every run
/// ends STOPPED with every worker stopped.
#[tokio::test(start_paused = true)]
async fn finalizers_on_one_account_back_off_instead_of_storming() {
    for (processes, bound) in [(2usize, 0.02), (10, 0.15)] {
        let (table, ecs) = (MemTable::default(), account());
        let keys = put_runs(&table, &ecs, processes, 1200 / processes);
        let api = api(&table, &ecs, rates(0.0));
        for k in &keys {
            stop(&api, k).await;
        }
        let start = Instant::now();
        let finalizers: Vec<_> = keys.iter().map(|_| finalizer(&table, &ecs, rates(0.0))).collect();
        let outcomes = join_all(finalizers.iter().zip(&keys).map(|(f, k)| f.finalize_run(k, None))).await;
        assert!(outcomes.iter().all(|o| matches!(o, Ok(RunOutcome::Stopped { .. }))), "{outcomes:?}");
        assert_eq!(ecs.told_at.lock().unwrap().len(), 1200);
        let t = throttled(&ecs);
        eprintln!(
            "{processes} finalizers: {t} throttled calls for 1,200 workers, all told at {:?}",
            all_told(&ecs, start)
        );
        assert!(t as f64 <= bound * 1200.0, "{processes} finalizers: {t} throttled calls for 1,200 workers");
    }
}

/// The finalizer's polling follows the read bucket: 100 runs whose workers
/// take 20 checks to drain, polled at once, never exceed ECS's read bucket
/// (no throttled `DescribeTasks`), and all end STOPPED. The polls of
/// different runs waiting for a token share calls of up to 100 tasks: each
/// run needs at least 21 checks, so one call per run and check would be at
/// least 2,100 calls; coalesced, under half of that (without coalescing this
/// took 2,190 calls and 104 s, with it 790 calls and 35 s).
#[tokio::test(start_paused = true)]
async fn polling_many_runs_follows_the_read_bucket() {
    let (table, ecs) = (MemTable::default(), MemEcs { stop_lag: 20, ..account() });
    let keys = put_runs(&table, &ecs, 100, 10);
    let svc = api(&table, &ecs, rates(0.0));
    join_all(keys.iter().map(|k| stop(&svc, k))).await;
    let start = Instant::now();
    let f = finalizer(&table, &ecs, rates(0.0));
    let outcomes = join_all(keys.iter().map(|k| f.finalize_run(k, None))).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(RunOutcome::Stopped { .. }))), "{outcomes:?}");
    assert_eq!(throttled(&ecs), 0, "no call over the buckets");
    let elapsed = (Instant::now() - start).as_secs_f64();
    let describes = ecs.describe_calls.load(std::sync::atomic::Ordering::SeqCst) as f64;
    assert!(describes <= 100.0 + 20.0 * elapsed + 1.0, "{describes} DescribeTasks in {elapsed} s");
    assert!(describes < 2100.0 / 2.0, "{describes} DescribeTasks: the runs' polls were not coalesced");
}
