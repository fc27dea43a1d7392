//! The AWS JSON 1.0 protocol of MWAA Serverless, as far as this service
//! speaks it: which operation a request names, the input both operations
//! share, and the response shapes, named as the service model names them.
//!
//! Pure: bytes and strings in, typed values out. The HTTP edge
//! ([`crate::lambda::http`]) hands it the method, the `X-Amz-Target` header
//! and the body, and serializes what it returns.

use serde::Serialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{check_run_id, truncate_to, FieldError, RunKey, RunStatus, WorkflowArn};
use crate::error::{ApiError, ValidationReason};
use crate::ports::RunRecord;

/// The JSON protocol's target prefix (`targetPrefix` in the service model).
pub const TARGET_PREFIX: &str = "AmazonMWAAServerless";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// A legitimate request is under 3 KiB (both members at their maximum length);
/// anything far larger is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The model caps `GenericString` (`ErrorMessage`) at 255 characters.
const GENERIC_STRING_MAX: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    StopWorkflowRun,
    GetWorkflowRun,
}

/// Only printable ASCII of the caller's own input is echoed, and briefly.
fn echo(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic()).take(100).collect()
}

impl Operation {
    /// The operation a request names: `POST` with `X-Amz-Target:
    /// AmazonMWAAServerless.<Operation>`. `target` is `Err(())` for a header
    /// that is not ASCII.
    pub fn from_request(method: &str, target: Option<Result<&str, ()>>) -> Result<Operation, ApiError> {
        let unknown = |msg: String| ApiError::validation(ValidationReason::UnknownOperation, msg);
        if method != "POST" {
            return Err(unknown(format!("Unsupported method {}: operations are sent as POST /", echo(method))));
        }
        let target = target
            .ok_or_else(|| unknown("Missing X-Amz-Target header".into()))?
            .map_err(|()| unknown("X-Amz-Target header is not valid ASCII".into()))?;
        match target.strip_prefix(TARGET_PREFIX).and_then(|rest| rest.strip_prefix('.')) {
            Some("StopWorkflowRun") => Ok(Operation::StopWorkflowRun),
            Some("GetWorkflowRun") => Ok(Operation::GetWorkflowRun),
            _ => Err(unknown(format!(
                "Operation {} is not supported by this endpoint (supported: {TARGET_PREFIX}.StopWorkflowRun, {TARGET_PREFIX}.GetWorkflowRun)",
                echo(target)
            ))),
        }
    }
}

/// Parse and validate the `{WorkflowArn, RunId}` input both operations share
/// (`StopWorkflowRunRequest`, `GetWorkflowRunRequest`), reporting every bad
/// member at once.
pub fn parse_run_key(body: &[u8]) -> Result<RunKey, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::validation(
            ValidationReason::Other,
            format!("Request body of {} bytes exceeds the limit of {MAX_BODY_BYTES} bytes", body.len()),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            ValidationReason::CannotParse,
            "Request body is empty; expected a JSON object",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::validation(ValidationReason::CannotParse, "Request body is not valid UTF-8"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::validation(
            ValidationReason::CannotParse,
            format!("Request body is not valid JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::validation(ValidationReason::CannotParse, "Request body must be a JSON object"));
    };

    let mut errors: Vec<FieldError> = Vec::new();
    let arn = string_member(&obj, "WorkflowArn", &mut errors)
        .and_then(|v| WorkflowArn::parse(v).map_err(|e| errors.push(e)).ok());
    let run_id = string_member(&obj, "RunId", &mut errors).and_then(|v| match check_run_id(v) {
        Some(e) => {
            errors.push(e);
            None
        }
        None => Some(v.to_owned()),
    });
    match (arn, run_id) {
        (Some(workflow_arn), Some(run_id)) if errors.is_empty() => Ok(RunKey { workflow_arn, run_id }),
        _ => Err(ApiError::fields(errors)),
    }
}

fn string_member<'a>(obj: &'a Map<String, Value>, name: &'static str, errors: &mut Vec<FieldError>) -> Option<&'a str> {
    match obj.get(name) {
        None | Some(Value::Null) => {
            errors.push(FieldError {
                name,
                message: format!("Value at '{name}' failed to satisfy constraint: Member must not be null"),
            });
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            let kind = match other {
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::Array(_) => "array",
                _ => "object",
            };
            errors.push(FieldError { name, message: format!("Value at '{name}' must be a string, not a {kind}") });
            None
        }
    }
}

/// `StopWorkflowRunResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopWorkflowRunResponse {
    pub workflow_arn: String,
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_version: Option<String>,
    pub status: &'static str,
}

impl StopWorkflowRunResponse {
    pub fn new(run: &RunRecord, status: RunStatus) -> Self {
        StopWorkflowRunResponse {
            workflow_arn: run.workflow_arn.clone(),
            run_id: run.run_id.clone(),
            workflow_version: run.workflow_version.clone(),
            status: status.as_str(),
        }
    }
}

/// `GetWorkflowRunResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetWorkflowRunResponse {
    pub workflow_arn: String,
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_parameters: Option<Map<String, Value>>,
    pub run_detail: WorkflowRunDetail,
}

/// `WorkflowRunDetail`. Timestamps are ISO 8601 strings, as the JSON
/// protocol carries them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkflowRunDetail {
    pub workflow_arn: String,
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_instances: Option<Vec<String>>,
    pub run_state: String,
}

/// Normalize a stored timestamp for the wire: in UTC, as RFC 3339. One that
/// is malformed, or that parses but has no UTC form RFC 3339 can write (a year
/// before 0000 or after 9999 once its offset is applied), is left out (and
/// logged) rather than making the whole response unreadable to SDKs.
fn wire_timestamp(field: &str, value: Option<&str>) -> Option<OffsetDateTime> {
    let v = value?;
    let utc = OffsetDateTime::parse(v, &Rfc3339)
        .ok()
        .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
        .filter(|t| t.format(&Rfc3339).is_ok());
    if utc.is_none() {
        tracing::warn!(
            field,
            value = v,
            "stored timestamp is not an RFC 3339 time with a UTC form; omitted from the response"
        );
    }
    utc
}

/// A time [`wire_timestamp`] returned: in UTC, and known to format.
fn iso(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl GetWorkflowRunResponse {
    pub fn new(run: &RunRecord) -> Self {
        let started = wire_timestamp("StartedOn", run.started_on.as_deref());
        let completed = wire_timestamp("CompletedOn", run.completed_on.as_deref());
        let duration = match (started, completed) {
            (Some(s), Some(c)) => Some(i32::try_from((c - s).whole_seconds().max(0)).unwrap_or(i32::MAX)),
            _ => None,
        };
        let message = run.error_message.clone().or_else(|| match (run.run_status(), &run.stop_requested_by) {
            (Some(RunStatus::Stopping | RunStatus::Stopped), Some(by)) => Some(format!(
                "Stop requested by {by}{}",
                run.stop_requested_at.as_deref().map(|at| format!(" at {at}")).unwrap_or_default()
            )),
            _ => None,
        });
        GetWorkflowRunResponse {
            workflow_arn: run.workflow_arn.clone(),
            run_id: run.run_id.clone(),
            workflow_version: run.workflow_version.clone(),
            run_type: run.run_type.clone(),
            override_parameters: run.override_parameters.clone(),
            run_detail: WorkflowRunDetail {
                workflow_arn: run.workflow_arn.clone(),
                run_id: run.run_id.clone(),
                workflow_version: run.workflow_version.clone(),
                run_type: run.run_type.clone(),
                started_on: started.map(iso),
                created_at: wire_timestamp("CreatedAt", run.created_at.as_deref()).map(iso),
                completed_on: completed.map(iso),
                modified_at: wire_timestamp("ModifiedAt", run.modified_at.as_deref()).map(iso),
                duration,
                error_message: message
                    .filter(|m| !m.is_empty())
                    .map(|m| truncate_to(&m, GENERIC_STRING_MAX).to_owned()),
                task_instances: run.task_instances.clone(),
                run_state: run.status.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22 item 7: these parse as RFC 3339 but have no UTC form
    /// (year -1 and year 10000 once their offsets are applied). Before, the
    /// conversion panicked: every `GetWorkflowRun` of such a run was a 500.
    #[test]
    fn timestamps_that_parse_but_have_no_utc_form_are_omitted_not_a_panic() {
        let run = RunRecord {
            workflow_arn: "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/a-0123456789".into(),
            run_id: "r".into(),
            status: "FAILED".into(),
            started_on: Some("0000-01-01T00:30:00+01:00".into()),
            completed_on: Some("9999-12-31T23:59:59-01:00".into()),
            created_at: Some("2026-11-20T10:00:00+02:00".into()),
            modified_at: Some("not a time".into()),
            ..RunRecord::default()
        };
        let detail = GetWorkflowRunResponse::new(&run).run_detail;
        assert_eq!(detail.started_on, None);
        assert_eq!(detail.completed_on, None);
        assert_eq!(detail.duration, None, "no duration from times that cannot be shown");
        assert_eq!(detail.modified_at, None);
        assert_eq!(detail.created_at.as_deref(), Some("2026-11-20T08:00:00Z"), "a valid time is shown in UTC");
    }
}
