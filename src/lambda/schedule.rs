//! The reconciler function's edge: a scheduled event in (its content is not
//! read), one reconciler pass, its report out as JSON. Never an error to the
//! runtime: a failed pass is reported and logged, and the next one retries.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::finalize::Finalizer;
use crate::ports::{ReconcilerStore, WorkerFleet};

/// One pass: finalize every run `STOPPING` for longer than `after`.
pub async fn handle_tick<S: ReconcilerStore, W: WorkerFleet>(
    finalizer: &Finalizer<S, W>,
    after: Duration,
    deadline: Option<Instant>,
) -> Value {
    match finalizer.reconcile(after, deadline).await {
        Ok(report) => {
            tracing::info!(?report, "reconciler pass");
            serde_json::to_value(report).expect("a report serializes")
        }
        Err(e) => {
            tracing::error!(error = %e, "reconciler pass failed: the stopping index could not be read; the next pass retries");
            json!({ "error": "the stopping index could not be read; see the function's log" })
        }
    }
}
