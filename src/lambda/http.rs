//! The HTTP API function's handler (API Gateway HTTP API, payload 2.0): the
//! only place that sees HTTP. It turns a request into a validated call of the
//! stop procedure ([`Service`]) through the protocol ([`crate::protocol`]), and
//! every outcome (including a panic and a deadline) into a response with the
//! model's shapes.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tokio::time::Instant;

pub use super::context::AuthMode;
use super::context::{caller_of, deadline_of, request_id_of, source_ip};
use crate::error::ApiError;
use crate::metrics::{self, Unit};
use crate::ports::{RunStore, StopRequest, WorkerControl};
use crate::protocol::{parse_run_key, GetWorkflowRunResponse, Operation, StopWorkflowRunResponse, CONTENT_TYPE};
use crate::stop::{now_iso, Service};

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

/// A 200 body: one of the model's response shapes.
enum Answer {
    /// And whether this request made the transition.
    Stop(StopWorkflowRunResponse, bool),
    Get(Box<GetWorkflowRunResponse>),
}

/// A response with the protocol's headers. Built in one place so no path can
/// forget the request id or the content type.
fn respond(status: u16, request_id: &str, body: &impl Serialize, error_type: Option<&str>) -> Response<Body> {
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
    let text = serde_json::to_string(body).expect("response shapes serialize");
    builder.body(Body::Text(text)).expect("static headers are valid")
}

fn error_response(err: &ApiError, request_id: &str) -> Response<Body> {
    respond(err.http_status(), request_id, &err.shape(), Some(err.type_name()))
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
        let stopping = req.headers().get("x-amz-target").is_some_and(|t| t.as_bytes().ends_with(b".StopWorkflowRun"));
        let work = AssertUnwindSafe(self.dispatch(&req, &request_id, deadline)).catch_unwind();
        let outcome = match deadline {
            Some(d) => tokio::time::timeout_at(d, work).await.unwrap_or_else(|_| {
                tracing::error!(request_id, "deadline reached before the operation finished");
                Ok(Err(ApiError::timeout()))
            }),
            None => work.await,
        };
        let denied = matches!(&outcome, Ok(Err(e)) if e.type_name() == "AccessDeniedException");
        if stopping {
            let metric = match &outcome {
                Ok(Ok(Answer::Stop(_, true))) => "StopsAccepted",
                Ok(Ok(_)) => "StopsNoOp",
                _ => "StopsRefused",
            };
            // A denial is also a refusal: `StopsRefused` counts every
            // refused stop, `StopsDenied` the AccessDeniedExceptions among them.
            if denied {
                metrics::emit(&[(metric, Unit::Count, 1.0), ("StopsDenied", Unit::Count, 1.0)], &[]);
            } else {
                metrics::emit(&[(metric, Unit::Count, 1.0)], &[]);
            }
        } else if denied {
            // GetWorkflowRun (or an unknown operation's) denials, apart.
            metrics::emit(&[("ReadsDenied", Unit::Count, 1.0)], &[]);
        }
        match outcome {
            Ok(Ok(Answer::Stop(body, _))) => respond(200, &request_id, &body, None),
            Ok(Ok(Answer::Get(body))) => respond(200, &request_id, &body, None),
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

    async fn dispatch(&self, req: &Request, request_id: &str, deadline: Option<Instant>) -> Result<Answer, ApiError> {
        // Identity first: a caller without one learns nothing, not even what is
        // wrong with its request. (The policy decision needs the parsed ARN,
        // so it stays in the service, before any table access.)
        let caller = caller_of(req, self.settings.auth)?;
        let target = req.headers().get("x-amz-target").map(|v| v.to_str().map_err(|_| ()));
        let op = Operation::from_request(req.method().as_str(), target)?;
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
                Ok(Answer::Stop(StopWorkflowRunResponse::new(&out.run, out.status), out.fan_out.is_some()))
            }
            Operation::GetWorkflowRun => {
                let run = self.service.read_workflow_run(&caller, &key, source_ip(req).as_deref()).await?;
                Ok(Answer::Get(Box::new(GetWorkflowRunResponse::new(&run))))
            }
        }
    }
}
