//! Run events: every status transition of a run, as the real service names
//! it on EventBridge ("Amazon MWAA Serverless events": `MWAA Serverless
//! Workflow Run Started`, `… Run Queued`, `… Run Running`, `… Run Succeeded`,
//! `… Run Failed`, `… Run Stopped`, `… Run Timeout`), plus `… Run Stopping`
//! for `STOPPING`, which the real service does not publish (an addition under
//! the same naming). Pure: a [`RunTransition`] in, a [`BusEvent`] out; the
//! stream decoding is `lambda::run_events`, the bus `aws::eventbridge`.
//! `docs/events.md` is the contract.

use serde::Serialize;

use crate::domain::RunStatus;
use crate::ports::BusEvent;

/// The detail-type of the event for a run that reached `status`.
pub fn detail_type(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Starting => "MWAA Serverless Workflow Run Started",
        RunStatus::Queued => "MWAA Serverless Workflow Run Queued",
        RunStatus::Running => "MWAA Serverless Workflow Run Running",
        RunStatus::Success => "MWAA Serverless Workflow Run Succeeded",
        RunStatus::Failed => "MWAA Serverless Workflow Run Failed",
        RunStatus::Timeout => "MWAA Serverless Workflow Run Timeout",
        RunStatus::Stopping => "MWAA Serverless Workflow Run Stopping",
        RunStatus::Stopped => "MWAA Serverless Workflow Run Stopped",
    }
}

/// One status change of one run, as the table's stream recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunTransition {
    pub workflow_arn: String,
    pub run_id: String,
    pub workflow_version: Option<String>,
    pub status: Option<RunStatus>,
    /// `None` for a run that was created with this status.
    pub previous_status: Option<String>,
    pub modified_at: Option<String>,
    pub stop_requested_by: Option<String>,
    pub stop_requested_at: Option<String>,
    /// Of the `Stopped` event: `stream` or `reconciler`.
    pub finalized_by: Option<String>,
    pub workers_stopped: Option<u64>,
    /// Workers named on a run written `STOPPED` at the stop deadline.
    pub unconfirmed_workers: Vec<String>,
    /// The same for every delivery of this transition (the stream record's
    /// id), so a consumer can drop duplicates.
    pub transition_id: String,
}

/// The event's `detail`, named as the real service's events name theirs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    workflow_arn: &'a str,
    run_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_version: Option<&'a str>,
    status: &'static str,
    previous_status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modified_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_requested_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_requested_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finalized_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers_stopped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unconfirmed_workers: Option<&'a [String]>,
    transition_id: &'a str,
}

/// The bus event of a transition; `None` when the run reached no status of
/// the model's eight (nothing to name it by).
pub fn bus_event(t: &RunTransition) -> Option<BusEvent> {
    let status = t.status?;
    let stopping = matches!(status, RunStatus::Stopping | RunStatus::Stopped);
    let stopped = status == RunStatus::Stopped;
    let detail = Detail {
        workflow_arn: &t.workflow_arn,
        run_id: &t.run_id,
        workflow_version: t.workflow_version.as_deref(),
        status: status.as_str(),
        previous_status: t.previous_status.as_deref(),
        modified_at: t.modified_at.as_deref(),
        stop_requested_by: t.stop_requested_by.as_deref().filter(|_| stopping),
        stop_requested_at: t.stop_requested_at.as_deref().filter(|_| stopping),
        finalized_by: t.finalized_by.as_deref().filter(|_| stopped),
        workers_stopped: t.workers_stopped.filter(|_| stopped),
        unconfirmed_workers: Some(t.unconfirmed_workers.as_slice()).filter(|w| stopped && !w.is_empty()),
        transition_id: &t.transition_id,
    };
    Some(BusEvent {
        detail_type: detail_type(status),
        resources: vec![t.workflow_arn.clone()],
        detail: serde_json::to_string(&detail).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/etl-abcDEF1234";

    #[test]
    fn every_status_has_the_real_services_detail_type_and_stopping_its_own() {
        let names: Vec<&str> = RunStatus::ALL.iter().map(|s| detail_type(*s)).collect();
        assert_eq!(
            names,
            [
                "MWAA Serverless Workflow Run Started",
                "MWAA Serverless Workflow Run Queued",
                "MWAA Serverless Workflow Run Running",
                "MWAA Serverless Workflow Run Succeeded",
                "MWAA Serverless Workflow Run Failed",
                "MWAA Serverless Workflow Run Timeout",
                "MWAA Serverless Workflow Run Stopping",
                "MWAA Serverless Workflow Run Stopped",
            ]
        );
    }

    #[test]
    fn a_stopped_event_carries_who_when_how_and_what_was_left() {
        let t = RunTransition {
            workflow_arn: ARN.into(),
            run_id: "run-1".into(),
            workflow_version: Some("v3".into()),
            status: Some(RunStatus::Stopped),
            previous_status: Some("STOPPING".into()),
            modified_at: Some("2026-12-06T10:00:02.000Z".into()),
            stop_requested_by: Some("arn:aws:iam::123456789012:user/alice".into()),
            stop_requested_at: Some("2026-12-06T10:00:00.000Z".into()),
            finalized_by: Some("stream".into()),
            workers_stopped: Some(3),
            unconfirmed_workers: vec!["arn:aws:ecs:us-east-1:123456789012:task/c/1".into()],
            transition_id: "ev-1".into(),
        };
        let e = bus_event(&t).unwrap();
        assert_eq!(e.detail_type, "MWAA Serverless Workflow Run Stopped");
        assert_eq!(e.resources, vec![ARN.to_owned()]);
        let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(
            d,
            serde_json::json!({
                "workflowArn": ARN, "runId": "run-1", "workflowVersion": "v3", "status": "STOPPED",
                "previousStatus": "STOPPING", "modifiedAt": "2026-12-06T10:00:02.000Z",
                "stopRequestedBy": "arn:aws:iam::123456789012:user/alice",
                "stopRequestedAt": "2026-12-06T10:00:00.000Z", "finalizedBy": "stream", "workersStopped": 3,
                "unconfirmedWorkers": ["arn:aws:ecs:us-east-1:123456789012:task/c/1"], "transitionId": "ev-1"
            })
        );
    }

    #[test]
    fn other_events_carry_no_stop_details_and_a_new_run_no_previous_status() {
        let t = RunTransition {
            workflow_arn: ARN.into(),
            run_id: "run-1".into(),
            status: Some(RunStatus::Starting),
            stop_requested_by: Some("someone".into()),
            finalized_by: Some("stream".into()),
            transition_id: "ev-2".into(),
            ..RunTransition::default()
        };
        let d: serde_json::Value = serde_json::from_str(&bus_event(&t).unwrap().detail).unwrap();
        assert_eq!(
            d,
            serde_json::json!({"workflowArn": ARN, "runId": "run-1", "status": "STARTING", "previousStatus": null, "transitionId": "ev-2"})
        );
        assert!(bus_event(&RunTransition { status: None, ..t }).is_none());
    }
}
