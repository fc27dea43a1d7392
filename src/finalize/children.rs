//! The child policy (SWF's `childPolicy`): what finalizing a stop does to
//! the run's active child runs.

use super::{FinalizeError, Finalizer};
use crate::domain::{check_run_id, truncate_to, ChildPolicy, RunKey, WorkflowArn};
use crate::ports::{
    CancelWrite, ChildPolicyApplied, ChildRef, FinalizerStore, RunRecord, SkippedChild, StopRequest, StopWrite,
    WorkerFleet,
};

/// At most this many skipped children are named in the `ChildPolicyApplied`
/// event (all are counted in `Skipped`), so a long list cannot push the
/// parent's item over DynamoDB's size limit.
const SKIPPED_CHILDREN_LISTED: usize = 20;

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
        let mut applied = ChildPolicyApplied {
            policy,
            children: children.len(),
            affected: 0,
            skipped: 0,
            skipped_children: Vec::new(),
        };
        let mut skip = |child: &ChildRef, reason: String| {
            tracing::error!(item = %format!("{}/{}", child.workflow_arn, child.run_id), %reason, "child run skipped by the child policy");
            applied.skipped += 1;
            if applied.skipped_children.len() < SKIPPED_CHILDREN_LISTED {
                applied.skipped_children.push(SkippedChild {
                    workflow_arn: truncate_to(&child.workflow_arn, 2048).to_owned(),
                    run_id: truncate_to(&child.run_id, 255).to_owned(),
                    reason: truncate_to(&reason, 512).to_owned(),
                });
            }
        };
        let mut affected = 0;
        let mut finished = 0;
        for child in &children {
            let child_key = match WorkflowArn::parse(&child.workflow_arn) {
                Ok(arn) if check_run_id(&child.run_id).is_none() => {
                    RunKey { workflow_arn: arn, run_id: child.run_id.clone() }
                }
                _ => {
                    skip(child, "invalid child run key".into());
                    continue;
                }
            };
            // A parent acts only on runs of its own account, partition and
            // Region: a child reference is data a scheduler wrote, and this
            // function must not become a deputy that stops another
            // account's run.
            let parent = &key.workflow_arn;
            let theirs = &child_key.workflow_arn;
            if (theirs.partition(), theirs.region(), theirs.account())
                != (parent.partition(), parent.region(), parent.account())
            {
                skip(child, "outside the parent's account, partition or Region".into());
                continue;
            }
            let outcome = match policy {
                ChildPolicy::Abandon => continue,
                ChildPolicy::Terminate => {
                    let stop = StopRequest {
                        at: now.to_owned(),
                        by: by.clone(),
                        request_id: format!("child-policy:{}", key.run_id),
                        source_ip: None,
                    };
                    self.store.request_stop(&child_key, &stop).await.map(|w| matches!(w, StopWrite::Transitioned(_)))
                }
                ChildPolicy::RequestCancel => {
                    self.store.request_cancel(&child_key, &by, now).await.map(|w| w == CancelWrite::Requested)
                }
            };
            match outcome {
                Ok(true) => affected += 1,
                Ok(false) => finished += 1,
                // A child item the store cannot act on (outside the table
                // contract, refused as invalid) never blocks its parent: the
                // parent's stop is recorded with the reason. Anything that
                // may pass on a retry fails this finalize, to be retried.
                Err(e) if e.is_permanent() => skip(child, format!("the child's item cannot be changed: {e}")),
                Err(e) => return Err(e.into()),
            }
        }
        applied.affected = affected;
        applied.skipped += finished;
        Ok(Some(applied))
    }
}
