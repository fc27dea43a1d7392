//! The reconciler's follow-up of `STOPPED` runs still watched (the stopping
//! index's watch partitions): workers the finalizer could not confirm dead by
//! the stop deadline (`UnconfirmedWorkers`), and, while the post-stop sweep
//! window is open, workers a `startedBy` sweep finds that no earlier sweep
//! could see (`ListTasks` lags `RunTask`). Each follow-up stops and describes
//! them, records what it confirmed (`WorkersConfirmed`, with when) and found
//! (`LateWorkersFound`), and ends the watch once nothing is left and the
//! window is closed, with one write conditioned on `STOPPED`.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::workers::WorkerCheck;
use super::{stop_instant, FinalizeError, Finalizer};
use crate::domain::{timestamp, RunKey, RunStatus};
use crate::metrics::{self, Unit};
use crate::ports::{FinalizerStore, WatchWrite, WorkerFleet};
use crate::stop::stop_reason;

/// What one follow-up of a watched run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FollowUp {
    /// Workers confirmed dead after `STOPPED` by this follow-up.
    pub confirmed: usize,
    /// Workers found alive by the post-stop sweep.
    pub found: usize,
    /// The run left the watch.
    pub ended: bool,
}

impl<S: FinalizerStore, W: WorkerFleet> Finalizer<S, W> {
    /// Follow up one watched `STOPPED` run (see the module).
    pub(crate) async fn follow_up(&self, key: &RunKey, deadline: Option<Instant>) -> Result<FollowUp, FinalizeError> {
        let Some(run) = self.store.get_run(key).await? else { return Ok(FollowUp::default()) };
        if run.run_status() != Some(RunStatus::Stopped) {
            tracing::error!(status = %run.status, "watched run is not STOPPED; left alone");
            return Ok(FollowUp::default());
        }
        let stopped_at = stop_instant(&run);
        let can_sweep = run.worker_started_by.is_some() && run.worker_clusters.is_some();
        let window_open = can_sweep && Instant::now() < stopped_at + self.limits.post_stop_sweep;
        let mut check = WorkerCheck::new(&run.unconfirmed_workers, can_sweep);
        let settle_at = can_sweep.then_some(stopped_at + self.limits.sweep_settle);
        // Long enough to see a missing task twice, and no longer.
        let end = {
            let bound = Instant::now() + self.limits.missing_confirm + self.limits.poll_max;
            deadline.map_or(bound, |d| d.min(bound))
        };
        let reason = stop_reason(key, "stop-reconciler");
        loop {
            if tokio::time::timeout_at(end, self.pass(&run, &reason, settle_at, &mut check)).await.is_err() {
                break;
            }
            if check.done() || Instant::now() + self.limits.poll_initial > end {
                break;
            }
            tokio::time::sleep(self.limits.poll_initial).await;
        }
        let confirmed: Vec<String> = check
            .confirmed
            .iter()
            .filter(|t| run.unconfirmed_workers.contains_key(*t) || check.orphans.contains_key(*t))
            .cloned()
            .collect();
        let found: BTreeMap<String, String> = check.orphans.clone();
        let end_watch = check.done() && !window_open;
        if confirmed.is_empty() && found.is_empty() && !end_watch {
            return Ok(FollowUp::default());
        }
        let write = WatchWrite {
            at: timestamp(OffsetDateTime::now_utc()),
            confirmed: confirmed.clone(),
            found: found.clone(),
            end_watch,
            read_len: run.unconfirmed_workers.len(),
        };
        if !self.store.update_watch(key, &write).await? {
            return Ok(FollowUp::default());
        }
        if !found.is_empty() {
            tracing::error!(found = ?found.keys().collect::<Vec<_>>(), "workers found alive after STOPPED by the post-stop sweep; stopping them");
        }
        if !confirmed.is_empty() {
            tracing::warn!(confirmed = ?confirmed, "workers confirmed dead after STOPPED");
        }
        metrics::emit(
            &[
                ("LateWorkersConfirmed", Unit::Count, confirmed.len() as f64),
                ("LateWorkersFound", Unit::Count, found.len() as f64),
            ],
            &[],
        );
        Ok(FollowUp { confirmed: confirmed.len(), found: found.len(), ended: end_watch })
    }
}
