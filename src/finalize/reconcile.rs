//! The safety net's pass: every run the stopping index shows `STOPPING` for
//! too long is finalized by the same procedure as the stream's.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{Finalizer, RunOutcome};
use crate::domain::{check_run_id, RunKey, WorkflowArn};
use crate::metrics::{self, Unit};
use crate::ports::{FinalizedBy, ReconcilerStore, StoreError, WorkerFleet};

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
    /// The age of the oldest `STOPPING` run (0 when there is none).
    pub oldest_stopping_age_seconds: f64,
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
            let key = WorkflowArn::parse(&run.workflow_arn)
                .ok()
                .filter(|_| check_run_id(&run.run_id).is_none())
                .map(|workflow_arn| RunKey { workflow_arn, run_id: run.run_id.clone() });
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
        metrics::emit(
            &[
                ("ReconcilerFinds", Unit::Count, report.found as f64),
                ("OldestStoppingAgeSeconds", Unit::Seconds, report.oldest_stopping_age_seconds),
            ],
            &[],
        );
        Ok(report)
    }
}
