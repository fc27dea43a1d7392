//! The AWS JSON 1.0 front of the service: `POST /` with
//! `X-Amz-Target: AmazonMWAAServerless.<Operation>`, exactly what the AWS SDKs
//! and the AWS CLI send for the `mwaa-serverless` client.
//!
//! This is the only place that sees HTTP. It turns a request into a validated
//! call of [`Service`], and every outcome (including a panic) into a response
//! with the model's shapes.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::error::{ApiError, ValidationReason};
use crate::model::{check_run_id, truncate_to, Caller, FieldError, RunKey, RunStatus, WorkflowArn};
use crate::service::Service;
use crate::store::{RunRecord, RunStore, StopRequest};
use crate::workers::WorkerControl;

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

/// How requests without an IAM identity are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Deployed: every request must carry the IAM authorizer's identity.
    Iam,
    /// Local development only (`cargo lambda watch`, tests): a request with no
    /// identity is served as `local:unauthenticated`. One that does carry an
    /// identity is still checked.
    AllowLocalUnauthenticated,
}

/// Handler settings read once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct ApiSettings {
    pub auth: AuthMode,
    /// Kept free before the Lambda deadline so a late upstream still gets a
    /// modeled `OperationTimeoutException` rather than a killed invocation.
    pub deadline_margin: Duration,
}

pub struct Api<S, W> {
    service: Service<S, W>,
    settings: ApiSettings,
}

/// A response with the protocol's headers. Built in one place so no path can
/// forget the request id or the content type.
fn respond(status: u16, request_id: &str, body: &Value, error_type: Option<&str>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header("Content-Type", CONTENT_TYPE)
        .header("x-amzn-RequestId", request_id)
        // lambda_http base64-encodes bodies whose content type it does not know
        // as text (`application/x-amz-json-1.0` is one); this keeps the JSON as
        // JSON in the Lambda response.
        .header("x-lambda-http-content-encoding", "text");
    if let Some(t) = error_type {
        builder = builder.header("x-amzn-ErrorType", t);
    }
    builder.body(Body::Text(body.to_string())).expect("static headers are valid")
}

pub fn error_response(err: &ApiError, request_id: &str) -> Response<Body> {
    respond(err.http_status(), request_id, &err.body(), Some(err.type_name()))
}

/// Only printable ASCII of the caller's own input is echoed, and briefly.
fn echo(s: &str) -> String {
    let clean: String = s.chars().filter(|c| c.is_ascii_graphic()).take(100).collect();
    clean
}

pub fn parse_target(req: &Request) -> Result<Operation, ApiError> {
    let unknown = |msg: String| ApiError::validation(ValidationReason::UnknownOperation, msg);
    if req.method() != lambda_http::http::Method::POST {
        return Err(unknown(format!(
            "Unsupported method {}: operations are sent as POST /",
            echo(req.method().as_str())
        )));
    }
    let target = req
        .headers()
        .get("x-amz-target")
        .ok_or_else(|| unknown("Missing X-Amz-Target header".into()))?
        .to_str()
        .map_err(|_| unknown("X-Amz-Target header is not valid ASCII".into()))?;
    match target.strip_prefix(TARGET_PREFIX).and_then(|rest| rest.strip_prefix('.')) {
        Some("StopWorkflowRun") => Ok(Operation::StopWorkflowRun),
        Some("GetWorkflowRun") => Ok(Operation::GetWorkflowRun),
        _ => Err(unknown(format!(
            "Operation {} is not supported by this endpoint (supported: {TARGET_PREFIX}.StopWorkflowRun, {TARGET_PREFIX}.GetWorkflowRun)",
            echo(target)
        ))),
    }
}

/// Parse and validate the `{WorkflowArn, RunId}` input both operations share,
/// reporting every bad member at once.
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

/// The caller as API Gateway's IAM authorizer saw it.
pub fn caller_of(req: &Request, auth: AuthMode) -> Result<Caller, ApiError> {
    let iam = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref()),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    match iam {
        Some(iam) => {
            let account = iam.account_id.as_deref().filter(|a| !a.is_empty());
            let principal = iam.user_arn.as_deref().or(iam.caller_id.as_deref()).filter(|p| !p.is_empty());
            match (account, principal) {
                (Some(account), Some(principal)) => {
                    Ok(Caller::Iam { account: account.to_owned(), principal: principal.to_owned() })
                }
                _ => {
                    tracing::warn!("IAM authorizer context without account or principal");
                    Err(ApiError::access_denied())
                }
            }
        }
        None if auth == AuthMode::AllowLocalUnauthenticated => Ok(Caller::LocalUnauthenticated),
        None => {
            tracing::warn!("request without an IAM identity refused");
            Err(ApiError::access_denied())
        }
    }
}

fn source_ip(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Current UTC time as the table stores it: RFC 3339 with milliseconds.
pub fn now_iso() -> String {
    let now = OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    now.format(&fmt).expect("UTC timestamp formats")
}

/// Normalize a stored timestamp for the wire. A malformed one is left out
/// (and logged) rather than making the whole response unreadable to SDKs.
fn wire_timestamp(field: &str, value: Option<&str>) -> Option<OffsetDateTime> {
    let v = value?;
    match OffsetDateTime::parse(v, &Rfc3339) {
        Ok(t) => Some(t),
        Err(_) => {
            tracing::warn!(field, value = v, "stored timestamp is not RFC 3339; omitted from the response");
            None
        }
    }
}

fn iso(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).expect("UTC timestamp formats")
}

/// `GetWorkflowRunResponse` as the model defines it.
pub fn get_run_body(run: &RunRecord) -> Value {
    let mut detail = Map::new();
    detail.insert("WorkflowArn".into(), json!(run.workflow_arn));
    detail.insert("RunId".into(), json!(run.run_id));
    if let Some(v) = &run.workflow_version {
        detail.insert("WorkflowVersion".into(), json!(v));
    }
    if let Some(v) = &run.run_type {
        detail.insert("RunType".into(), json!(v));
    }
    let started = wire_timestamp("StartedOn", run.started_on.as_deref());
    let completed = wire_timestamp("CompletedOn", run.completed_on.as_deref());
    for (name, value) in [
        ("StartedOn", started),
        ("CreatedAt", wire_timestamp("CreatedAt", run.created_at.as_deref())),
        ("CompletedOn", completed),
        ("ModifiedAt", wire_timestamp("ModifiedAt", run.modified_at.as_deref())),
    ] {
        if let Some(t) = value {
            detail.insert(name.into(), json!(iso(t)));
        }
    }
    if let (Some(s), Some(c)) = (started, completed) {
        let secs = (c - s).whole_seconds().max(0);
        detail.insert("Duration".into(), json!(i32::try_from(secs).unwrap_or(i32::MAX)));
    }
    let message = run.error_message.clone().or_else(|| match (run.run_status(), &run.stop_requested_by) {
        (Some(RunStatus::Stopping | RunStatus::Stopped), Some(by)) => Some(format!(
            "Stop requested by {by}{}",
            run.stop_requested_at.as_deref().map(|at| format!(" at {at}")).unwrap_or_default()
        )),
        _ => None,
    });
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        detail.insert("ErrorMessage".into(), json!(truncate_to(&m, GENERIC_STRING_MAX)));
    }
    if let Some(ids) = &run.task_instances {
        detail.insert("TaskInstances".into(), json!(ids));
    }
    detail.insert("RunState".into(), json!(run.status));

    let mut body = Map::new();
    body.insert("WorkflowArn".into(), json!(run.workflow_arn));
    body.insert("RunId".into(), json!(run.run_id));
    if let Some(v) = &run.workflow_version {
        body.insert("WorkflowVersion".into(), json!(v));
    }
    if let Some(v) = &run.run_type {
        body.insert("RunType".into(), json!(v));
    }
    if let Some(p) = &run.override_parameters {
        body.insert("OverrideParameters".into(), Value::Object(p.clone()));
    }
    body.insert("RunDetail".into(), Value::Object(detail));
    Value::Object(body)
}

fn request_id_of(req: &Request) -> String {
    req.lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn deadline_of(req: &Request, margin: Duration) -> Option<Instant> {
    crate::config::deadline_instant(req.lambda_context_ref()?.deadline, margin)
}

impl<S: RunStore, W: WorkerControl> Api<S, W> {
    pub fn new(service: Service<S, W>, settings: ApiSettings) -> Self {
        Api { service, settings }
    }

    pub fn service(&self) -> &Service<S, W> {
        &self.service
    }

    /// Serve one request. Never fails: every outcome is a modeled response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let request_id = request_id_of(&req);
        let deadline = deadline_of(&req, self.settings.deadline_margin);
        let work = AssertUnwindSafe(self.dispatch(&req, &request_id, deadline)).catch_unwind();
        let outcome = match deadline {
            Some(d) => tokio::time::timeout_at(d, work).await.unwrap_or_else(|_| {
                tracing::error!(request_id, "deadline reached before the operation finished");
                Ok(Err(ApiError::timeout()))
            }),
            None => work.await,
        };
        match outcome {
            Ok(Ok(body)) => respond(200, &request_id, &body, None),
            Ok(Err(err)) => {
                tracing::info!(request_id, error = err.type_name(), message = %err, "request refused");
                error_response(&err, &request_id)
            }
            Err(_) => {
                tracing::error!(request_id, "handler panicked");
                error_response(&ApiError::internal(), &request_id)
            }
        }
    }

    async fn dispatch(&self, req: &Request, request_id: &str, deadline: Option<Instant>) -> Result<Value, ApiError> {
        // Identity first: a caller without one learns nothing, not even what is
        // wrong with its request. (The account check needs the parsed ARN, so
        // it stays in the service.)
        let caller = caller_of(req, self.settings.auth)?;
        let op = parse_target(req)?;
        let key = parse_run_key(req.body().as_ref())?;
        match op {
            Operation::StopWorkflowRun => {
                let stop = StopRequest {
                    at: now_iso(),
                    by: caller.principal().to_owned(),
                    request_id: request_id.to_owned(),
                    source_ip: source_ip(req),
                };
                let out = self.service.stop_workflow_run(&caller, &key, &stop, deadline).await?;
                let mut body =
                    json!({"WorkflowArn": out.workflow_arn, "RunId": out.run_id, "Status": out.status.as_str()});
                if let Some(v) = out.workflow_version {
                    body["WorkflowVersion"] = json!(v);
                }
                Ok(body)
            }
            Operation::GetWorkflowRun => {
                let run = self.service.get_workflow_run(&caller, &key).await?;
                Ok(get_run_body(&run))
            }
        }
    }
}
