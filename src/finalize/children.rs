//! The child policy (SWF's `childPolicy`): what finalizing a stop does to
//! the run's active child runs.

use super::{FinalizeError, Finalizer};
use crate::domain::{check_run_id, ChildPolicy, RunKey, WorkflowArn};
use crate::ports::{CancelWrite, ChildPolicyApplied, FinalizerStore, RunRecord, StopRequest, StopWrite, WorkerFleet};

/// The principal recorded on children stopped or cancelled by a parent.
pub(crate) fn parent_principal(parent: &RunKey) -> String {
    format!("parent-run:{}/{}", parent.workflow_arn, parent.run_id)
}

impl<S: FinalizerStore, W: WorkerFleet> Finalizer<S, W> {
    pub(super) async fn apply_child_policy(
        &self,
        key: &RunKey,
        run: &RunRecord,
        now: &str,
    ) -> Result<Option<ChildPolicyApplied>, FinalizeError> {
        let children = run.child_runs.clone().unwrap_or_default();
        if children.is_empty() {
            return Ok(None);
        }
        let policy = ChildPolicy::from_stored(run.child_policy.as_deref()).unwrap_or_else(|bad| {
            tracing::error!(policy = %bad.0, "unknown ChildPolicy; applying TERMINATE");
            ChildPolicy::Terminate
        });
        let by = parent_principal(key);
        let mut applied = ChildPolicyApplied { policy, children: children.len(), affected: 0, skipped: 0 };
        for child in &children {
            let child_key = match WorkflowArn::parse(&child.workflow_arn) {
                Ok(arn) if check_run_id(&child.run_id).is_none() => {
                    RunKey { workflow_arn: arn, run_id: child.run_id.clone() }
                }
                _ => {
                    tracing::error!(child = ?child, "invalid child run key; skipped");
                    applied.skipped += 1;
                    continue;
                }
            };
            let changed = match policy {
                ChildPolicy::Abandon => false,
                ChildPolicy::Terminate => {
                    let stop = StopRequest {
                        at: now.to_owned(),
                        by: by.clone(),
                        request_id: format!("child-policy:{}", key.run_id),
                        source_ip: None,
                    };
                    matches!(self.store.request_stop(&child_key, &stop).await?, StopWrite::Transitioned(_))
                }
                ChildPolicy::RequestCancel => {
                    self.store.request_cancel(&child_key, &by, now).await? == CancelWrite::Requested
                }
            };
            if changed {
                applied.affected += 1;
            } else if policy != ChildPolicy::Abandon {
                applied.skipped += 1;
            }
        }
        Ok(Some(applied))
    }
}
