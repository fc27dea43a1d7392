//! The safety net's pass: every run the stopping index shows `STOPPING` for
//! too long is finalized by the same procedure as the stream's.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{Finalizer, RunOutcome};
use crate::domain::{check_run_id, RunKey, WorkflowArn};
use crate::metrics::{self, Unit};
use crate::ports::{FinalizedBy, ReconcilerStore, StoppingRun, StoreError, WorkerFleet};
use crate::stop::run_span;
use futures::stream::{self, StreamExt};
use tracing::Instrument;

/// What one reconciler pass found and did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReconcileReport {
    /// Runs `STOPPING` longer than the threshold: stranded, finalized here.
    pub found: usize,
    pub stopped: usize,
    /// Workers not verified stopped yet: the next pass tries again.
    pub pending: usize,
    /// Failed, or listed in the index with an unreadable key.
    pub failed: usize,
    /// Of `failed`: index entries with an unreadable key or `StoppingSince`.
    pub unreadable: usize,
    /// The age of the oldest `STOPPING` run (0 when there is none).
    pub oldest_stopping_age_seconds: f64,
    /// `STOPPED` runs followed up (unconfirmed workers, post-stop sweep).
    pub watched: usize,
    /// Of those, runs that left the watch.
    pub watch_ended: usize,
    /// Workers confirmed dead after `STOPPED`, and found by a post-stop sweep.
    pub late_confirmed: usize,
    pub late_found: usize,
}

/// The run key of an index entry, if readable.
fn entry_key(run: &StoppingRun) -> Option<RunKey> {
    WorkflowArn::parse(&run.workflow_arn)
        .ok()
        .filter(|_| check_run_id(&run.run_id).is_none())
        .map(|workflow_arn| RunKey { workflow_arn, run_id: run.run_id.clone() })
}

impl<S: ReconcilerStore, W: WorkerFleet> Finalizer<S, W> {
    /// One pass of the safety net: every run the index shows `STOPPING` for
    /// longer than `after` is finalized by the same procedure and the same
    /// conditional writes as the stream's, recorded as `FinalizedBy:
    /// reconciler`. Level-triggered: a run the stream gave up on, or never
    /// delivered, is found on the next pass.
    pub async fn reconcile(&self, after: Duration, deadline: Option<Instant>) -> Result<ReconcileReport, StoreError> {
        let now = OffsetDateTime::now_utc();
        let stopping = self.store.stopping_runs().await?;
        let mut report = ReconcileReport::default();
        let mut stranded = Vec::new();
        for run in stopping {
            let age = OffsetDateTime::parse(&run.since, &Rfc3339).map(|since| (now - since).as_seconds_f64().max(0.0));
            let key = entry_key(&run);
            match (key, age) {
                (Some(key), Ok(age)) => {
                    report.oldest_stopping_age_seconds = report.oldest_stopping_age_seconds.max(age);
                    if age >= after.as_secs_f64() {
                        stranded.push((key, ()));
                    }
                }
                _ => {
                    tracing::error!(workflow_arn = %run.workflow_arn, run_id = %run.run_id, since = %run.since, "stopping index entry with an unreadable key or StoppingSince");
                    report.failed += 1;
                    report.unreadable += 1;
                }
            }
        }
        report.found = stranded.len();
        if report.found > 0 {
            tracing::warn!(found = report.found, "stranded STOPPING runs found; finalizing them");
        }
        for (_, (), result) in self.finalize_runs(stranded, deadline, FinalizedBy::Reconciler).await {
            match result {
                Ok(RunOutcome::Stopped { .. }) => report.stopped += 1,
                Ok(RunOutcome::Skipped { .. }) => {}
                Ok(RunOutcome::Pending { .. }) => report.pending += 1,
                Err(_) => report.failed += 1,
            }
        }
        self.follow_up_watched(deadline, &mut report).await;
        metrics::emit(
            &[
                ("ReconcilerFinds", Unit::Count, report.found as f64),
                ("OldestStoppingAgeSeconds", Unit::Seconds, report.oldest_stopping_age_seconds),
                ("ReconcilerUnreadableEntries", Unit::Count, report.unreadable as f64),
            ],
            &[],
        );
        Ok(report)
    }

    /// Every `STOPPED` run still watched is followed up (`watch.rs`), at most
    /// `run_concurrency` at once.
    async fn follow_up_watched(&self, deadline: Option<Instant>, report: &mut ReconcileReport) {
        let watched = match self.store.watched_runs().await {
            Ok(watched) => watched,
            Err(e) => {
                tracing::error!(error = %e, "the stopping index's watch partitions could not be read; the next pass retries");
                report.failed += 1;
                return;
            }
        };
        let mut keys = Vec::new();
        for run in watched {
            match entry_key(&run) {
                Some(key) => keys.push(key),
                None => {
                    tracing::error!(workflow_arn = %run.workflow_arn, run_id = %run.run_id, "watched index entry with an unreadable key");
                    report.failed += 1;
                    report.unreadable += 1;
                }
            }
        }
        report.watched = keys.len();
        let results: Vec<_> = stream::iter(keys.into_iter().map(|key| async move {
            let span = run_span("FollowUpStopped", &key);
            self.follow_up(&key, deadline).instrument(span).await
        }))
        .buffer_unordered(self.limits.run_concurrency.max(1))
        .collect()
        .await;
        for result in results {
            match result {
                Ok(f) => {
                    report.late_confirmed += f.confirmed;
                    report.late_found += f.found;
                    report.watch_ended += usize::from(f.ended);
                }
                Err(e) => {
                    tracing::error!(error = %e, "following up a STOPPED run failed; the next pass retries");
                    report.failed += 1;
                }
            }
        }
    }
}
