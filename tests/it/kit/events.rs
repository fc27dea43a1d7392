//! The API Gateway HTTP API (payload format 2.0) event builder, and calls
//! of the API handler with such events.

use super::*;
use base64::Engine;
use mwaa_stop::aws::{DynamoRunStore, EcsWorkers};
use mwaa_stop::lambda::http::Api;
use serde_json::{json, Value};

/// Who sends an event.
#[derive(Clone, Copy)]
pub enum As {
    /// SigV4-signed by this principal in this account (IAM authorizer context).
    Iam(&'static str, &'static str),
    /// No authorizer context (a local, unauthenticated call).
    Nobody,
}

/// An API Gateway HTTP API (payload format 2.0) event, as Lambda receives it.
pub fn http_event(target: Option<&str>, body: &[u8], who: As) -> Value {
    let mut headers = serde_json::Map::new();
    if let Some(t) = target {
        headers.insert("x-amz-target".into(), json!(t));
    }
    let identity = match who {
        As::Iam(account, user) => Some((account, user)),
        As::Nobody => None,
    };
    raw_http_event("POST", headers, body, identity)
}

/// The same event with everything chosen by the caller: the method, extra
/// headers (on top of the JSON content type and a host) and the IAM identity
/// `(account, principal ARN)`, if any. Bodies that are not UTF-8 are sent
/// base64-encoded, as API Gateway does.
pub fn raw_http_event(
    method: &str,
    extra_headers: serde_json::Map<String, Value>,
    body: &[u8],
    identity: Option<(&str, &str)>,
) -> Value {
    let mut headers = json!({"content-type": "application/x-amz-json-1.0", "host": "api.example"});
    for (k, v) in extra_headers {
        headers[k] = v;
    }
    let (body, b64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut ctx = json!({
        "accountId": ACCOUNT, "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "tests"},
        "requestId": "req-1", "routeKey": "POST /", "stage": "$default", "time": "21/Nov/2026:10:00:00 +0000",
        "timeEpoch": 1_795_000_000_000_i64
    });
    if let Some((account, user)) = identity {
        ctx["authorizer"] = json!({"iam": {
            "accessKey": "AKIAEXAMPLE", "accountId": account, "callerId": "AIDAEXAMPLE",
            "principalOrgId": null, "userArn": user, "userId": "AIDAEXAMPLE"
        }});
    }
    json!({
        "version": "2.0", "routeKey": "POST /", "rawPath": "/", "rawQueryString": "",
        "headers": headers, "requestContext": ctx, "body": body, "isBase64Encoded": b64
    })
}

pub fn request(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid HTTP API event")
}

pub fn stop_body(arn: &str, run_id: &str) -> Vec<u8> {
    json!({"WorkflowArn": arn, "RunId": run_id}).to_string().into_bytes()
}

pub const STOP: &str = "AmazonMWAAServerless.StopWorkflowRun";
pub const GET: &str = "AmazonMWAAServerless.GetWorkflowRun";

/// A response split into what the tests look at.
pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub json: Value,
}

pub async fn call(api: &Api<DynamoRunStore, EcsWorkers>, event: &Value) -> Reply {
    call_request(api, request(event)).await
}

/// The same event sent `n` times at once; the replies in sending order.
pub async fn call_concurrently(
    api: &std::sync::Arc<Api<DynamoRunStore, EcsWorkers>>,
    event: &Value,
    n: usize,
) -> Vec<Reply> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (api, event) = (api.clone(), event.clone());
            tokio::spawn(async move { call(&api, &event).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for c in calls {
        replies.push(c.await.unwrap());
    }
    replies
}

/// A request carrying a Lambda context whose deadline is `in_ms` from now.
pub fn with_deadline(req: lambda_http::Request, in_ms: u64) -> lambda_http::Request {
    use lambda_http::RequestExt;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut ctx = lambda_http::lambda_runtime::Context::default();
    ctx.request_id = format!("deadline-{now_ms}");
    ctx.deadline = now_ms + in_ms;
    req.with_lambda_context(ctx)
}

/// Like [`call`], for a prepared request.
pub async fn call_request(api: &Api<DynamoRunStore, EcsWorkers>, req: lambda_http::Request) -> Reply {
    let resp = api.handle(req).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let json: Value = serde_json::from_slice(resp.body().as_ref()).expect("every response body is JSON");
    Reply { status, headers, json }
}
