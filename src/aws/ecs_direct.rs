//! `StopTask` without the SDK's per-call orchestration: the request the SDK
//! would send (AWS JSON 1.1, `AmazonEC2ContainerServiceV20141113.StopTask`),
//! signed by the SDK's own SigV4 signer (`aws-sigv4`) and sent on the SDK's
//! own connector, the one the ECS client uses ([`super::http`]: one pool, one
//! trust store, the SDK's connect timeout and proxy rules, `h2` where the
//! endpoint offers it).
//!
//! Why: a stop's latency is one `UpdateItem` plus one wave of up to 100
//! `StopTask`s, and on a 256–512 MB Lambda (0.145–0.29 vCPU) the CPU spent
//! per call is what stands between the wave and the round-trip floor. The
//! SDK's orchestrator (config bag layers, interceptors, endpoint rules,
//! identity cache, retry bookkeeping, a full `Task` deserialized per answer)
//! is most of that CPU; this path does only what the call needs, and reads
//! only `task.lastStatus` of the answer. `make bench` sections 1 and 7 measure
//! both (docs/performance.md).
//!
//! What it does not do, the SDK still does: only ECS's acceptance, a
//! throttle, "no such task or cluster" and a refusal of the request itself
//! are final here. Anything else (a 5xx, any other error such as a signature
//! refused for clock skew or expired credentials, a dropped connection, a
//! timeout, an unreadable answer) is a [`Attempt::Fallback`]: the SDK client
//! sends the call again, which corrects its clock, refreshes its credentials
//! and retries, with what is left of the attempts and the operation timeout
//! (`super::ecs`). A throttle is final here as it is on the SDK path: it is
//! the pacing's back-pressure (`crate::pacing`).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::endpoint::Endpoint;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::upstream::{REJECTED_CODES, THROTTLING_CODES};
use crate::ports::{TaskStop, UpstreamError, UpstreamKind};

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.StopTask";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Without a configured attempt timeout, an attempt on this path gives up
/// after this long and the call goes to the SDK client.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one attempt on this path.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// ECS's answer, or a refusal that sending again cannot change.
    Final(Result<TaskStop, UpstreamError>),
    /// Not an answer: the SDK client sends the call again.
    Fallback(Fallback),
}

/// Why a call goes on to the SDK client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fallback {
    /// What happened, for the log.
    pub why: String,
    /// Whether a request went out (it counts as one of the SDK's attempts).
    pub sent: bool,
    /// No answer within the attempt timeout.
    pub timed_out: bool,
    /// ECS's `x-amzn-RequestId`, when it answered.
    pub request_id: Option<String>,
}

impl Fallback {
    fn unsent(why: String) -> Attempt {
        Attempt::Fallback(Fallback { why, sent: false, timed_out: false, request_id: None })
    }

    fn sent(why: String, timed_out: bool, request_id: Option<String>) -> Attempt {
        Attempt::Fallback(Fallback { why, sent: true, timed_out, request_id })
    }

    /// The metric's `Reason`: `timeout`, `connection`, `http` (an answer
    /// that is not final) or `not-sent` (credentials, signing).
    pub fn reason(&self) -> &'static str {
        match (self.sent, self.timed_out, self.request_id.is_some()) {
            (false, _, _) => "not-sent",
            (true, true, _) => "timeout",
            (true, false, true) => "http",
            (true, false, false) => "connection",
        }
    }

    /// This attempt as the call's failure, when no SDK attempt is left.
    pub fn into_error(self) -> UpstreamError {
        let kind = if self.timed_out { UpstreamKind::Timeout } else { UpstreamKind::Fault };
        UpstreamError::new("ecs", "StopTask", kind, with_request_id(self.why, self.request_id.as_deref()))
    }
}

fn with_request_id(detail: String, request_id: Option<&str>) -> String {
    match request_id {
        Some(id) => format!("{detail} (request id {id})"),
        None => detail,
    }
}

/// The `StopTask` request body (the model's `StopTaskRequest`).
#[derive(Serialize)]
struct StopTaskRequest<'a> {
    cluster: &'a str,
    task: &'a str,
    reason: &'a str,
}

/// The part of `StopTaskResponse` the port needs.
#[derive(Deserialize)]
struct StopTaskResponse {
    task: Option<Task>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    last_status: Option<String>,
}

/// An AWS JSON error body: `__type` (`[namespace#]Code[:uri]`) and a message
/// under one of the spellings services use.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "__type", alias = "code")]
    kind: Option<String>,
    #[serde(alias = "Message", alias = "errorMessage")]
    message: Option<String>,
}

/// The direct `StopTask` sender: one per process, shared by every call.
#[derive(Clone)]
pub(crate) struct DirectStopTask {
    inner: Arc<Inner>,
}

struct Inner {
    /// The ECS client's own connector (its pool).
    connector: SharedHttpConnector,
    /// The resolved ECS endpoint, path `/`.
    uri: http::Uri,
    region: String,
    provider: SharedCredentialsProvider,
    credentials: RwLock<Option<Credentials>>,
    refresh: tokio::sync::Mutex<()>,
    attempt_timeout: Duration,
}

impl std::fmt::Debug for DirectStopTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectStopTask").field("uri", &self.inner.uri).field("region", &self.inner.region).finish()
    }
}

impl DirectStopTask {
    /// The sender for the ECS client configured by `ecs` (its HTTP client,
    /// timeouts and region) from `sdk` (its credentials), to the endpoint its
    /// rules resolve to, or why there is none (the SDK client then sends every `StopTask`,
    /// and reports the same problem on the first call): no region, no
    /// credentials provider, no HTTP client.
    pub(crate) fn new(
        sdk: &aws_config::SdkConfig,
        ecs: &aws_sdk_ecs::Config,
        endpoint: &Endpoint,
    ) -> Result<Self, String> {
        let region = ecs.region().ok_or("no region")?.to_string();
        let provider = sdk.credentials_provider().ok_or("no credentials provider")?;
        let http = ecs.http_client().ok_or("no HTTP client")?;
        let timeouts = ecs.timeout_config();
        let connector = super::http::connector_of(&http, timeouts, ecs.sleep_impl(), ecs.time_source())?;
        let attempt_timeout = timeouts
            .and_then(|t| match (t.operation_attempt_timeout(), t.operation_timeout()) {
                (Some(a), Some(o)) => Some(a.min(o)),
                (a, o) => a.or(o),
            })
            .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT);
        let url = endpoint.url();
        let uri: http::Uri = url.parse().map_err(|e| format!("endpoint {url:?}: {e}"))?;
        let mut parts = uri.into_parts();
        if parts.path_and_query.as_ref().is_none_or(|p| p.path().is_empty()) {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        let uri = http::Uri::from_parts(parts).map_err(|e| format!("endpoint {url:?}: {e}"))?;
        Ok(DirectStopTask {
            inner: Arc::new(Inner {
                connector,
                uri,
                region,
                provider,
                credentials: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                attempt_timeout,
            }),
        })
    }

    /// One `StopTask` attempt.
    pub(crate) async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Attempt {
        let inner = &self.inner;
        let credentials = match self.credentials().await {
            Ok(c) => c,
            Err(e) => return Fallback::unsent(format!("credentials: {e}")),
        };
        let body = match serde_json::to_vec(&StopTaskRequest { cluster, task, reason }) {
            Ok(b) => b,
            Err(e) => return Fallback::unsent(format!("request body: {e}")),
        };
        let request = match signed_request(&inner.uri, &inner.region, &credentials, body, SystemTime::now())
            .and_then(|r| HttpRequest::try_from(r).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => return Fallback::unsent(format!("signing: {e}")),
        };
        let exchange = async {
            let response = inner.connector.call(request).await.map_err(|e| (format!("{e}"), None))?;
            let response = response.try_into_http1x().map_err(|e| (format!("the answer: {e}"), None))?;
            let (parts, body) = response.into_parts();
            let request_id = request_id(&parts.headers);
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Err((format!("reading the answer: {e}"), request_id)),
            };
            Ok::<_, (String, Option<String>)>((parts, body))
        };
        match tokio::time::timeout(inner.attempt_timeout, exchange).await {
            Err(_) => Fallback::sent(format!("no answer within {:?}", inner.attempt_timeout), true, None),
            Ok(Err((why, request_id))) => Fallback::sent(why, false, request_id),
            Ok(Ok((parts, body))) => classify(parts.status, &parts.headers, body.as_ref()),
        }
    }

    /// Opens up to `connections` connections to the ECS endpoint in the
    /// background (an unsigned `HEAD /` on each, its answer dropped), so a
    /// cold process's first wave finds them open: over HTTP/1.1 one
    /// connection per concurrent request, over HTTP/2 one in all. Outside a
    /// Tokio runtime it does nothing.
    pub(crate) fn open_connections(&self, connections: usize) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        for _ in 0..connections {
            let (connector, uri) = (self.inner.connector.clone(), self.inner.uri.clone());
            runtime.spawn(async move {
                let head = http::Request::head(uri).body(SdkBody::empty()).map_err(|e| e.to_string());
                if let Ok(request) = head.and_then(|r| HttpRequest::try_from(r).map_err(|e| e.to_string())) {
                    let _ = connector.call(request).await;
                }
            });
        }
    }

    /// The cached credentials, fetched again shortly before they expire
    /// (one fetch at a time; concurrent calls wait for it).
    async fn credentials(&self) -> Result<Credentials, String> {
        let fresh = |c: &Credentials| c.expiry().is_none_or(|t| t > SystemTime::now() + REFRESH_BEFORE_EXPIRY);
        if let Some(c) = self.cached().filter(fresh) {
            return Ok(c);
        }
        let _one_fetch = self.inner.refresh.lock().await;
        if let Some(c) = self.cached().filter(fresh) {
            return Ok(c);
        }
        let c = self.inner.provider.provide_credentials().await.map_err(|e| format!("{e}"))?;
        *self.inner.credentials.write().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn cached(&self) -> Option<Credentials> {
        self.inner.credentials.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// ECS's request id (`x-amzn-RequestId`) of an answer.
fn request_id(headers: &http::HeaderMap) -> Option<String> {
    headers.get("x-amzn-requestid").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The signed `POST` of `body`, as the SDK would send it.
fn signed_request(
    uri: &http::Uri,
    region: &str,
    credentials: &Credentials,
    body: Vec<u8>,
    now: SystemTime,
) -> Result<http::Request<SdkBody>, String> {
    let uri_text = uri.to_string();
    let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
    let signable = SignableRequest::new("POST", uri_text.as_str(), headers.into_iter(), SignableBody::Bytes(&body))
        .map_err(|e| e.to_string())?;
    let identity = Identity::from(credentials.clone());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecs")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let (instructions, _signature) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
    let length = body.len();
    let mut request = http::Request::post(uri.clone())
        .header("content-type", CONTENT_TYPE)
        .header("content-length", length)
        .header("x-amz-target", TARGET)
        .header("user-agent", concat!("mwaa-stop/", env!("CARGO_PKG_VERSION")))
        .body(SdkBody::from(body))
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

/// ECS's answer, as the SDK path classifies it (`super::ecs`,
/// `super::upstream::from_sdk`).
fn classify(status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> Attempt {
    let request_id = request_id(headers);
    if status.is_success() {
        return match serde_json::from_slice::<StopTaskResponse>(body) {
            Ok(out) => Attempt::Final(Ok(TaskStop::Accepted { last_status: out.task.and_then(|t| t.last_status) })),
            Err(e) => Fallback::sent(format!("unreadable StopTask answer: {e}"), false, request_id),
        };
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(parsed.kind)
        .map(|c| error_code(&c).to_string());
    let message = parsed.message.unwrap_or_default();
    let code_is = |set: &[&str]| code.as_deref().is_some_and(|c| set.contains(&c));
    let error = |kind| {
        let detail = format!("{}: {message} (HTTP {})", code.as_deref().unwrap_or("unknown error"), status.as_u16());
        Attempt::Final(Err(UpstreamError::new("ecs", "StopTask", kind, with_request_id(detail, request_id.as_deref()))))
    };
    if code_is(THROTTLING_CODES) || status == http::StatusCode::TOO_MANY_REQUESTS {
        error(UpstreamKind::Throttled)
    } else if code.as_deref() == Some("ClusterNotFoundException")
        || (code.as_deref() == Some("InvalidParameterException") && super::ecs::is_not_found_message(Some(&message)))
    {
        Attempt::Final(Ok(TaskStop::Gone))
    } else if code_is(REJECTED_CODES) {
        error(UpstreamKind::Rejected)
    } else {
        // A 5xx, or an error the SDK may handle better than one attempt can:
        // a signature refused for clock skew (the SDK corrects its clock
        // from the answer), expired credentials (it fetches new ones), an
        // access denial (it reports the same, with its metadata).
        let why = format!("HTTP {}: {} {message}", status.as_u16(), code.as_deref().unwrap_or(""));
        Fallback::sent(why, false, request_id)
    }
}

/// `aws.protocols#ThrottlingException:http://...` → `ThrottlingException`.
fn error_code(raw: &str) -> &str {
    let no_uri = raw.split(':').next().unwrap_or(raw);
    no_uri.rsplit('#').next().unwrap_or(no_uri).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Attempt {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.insert(http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        classify(http::StatusCode::from_u16(status).unwrap(), &map, body.as_bytes())
    }

    fn kind(a: Attempt) -> UpstreamKind {
        match a {
            Attempt::Final(Err(e)) => e.kind,
            other => panic!("expected a final error, got {other:?}"),
        }
    }

    #[test]
    fn an_accepted_stop_reads_only_the_last_status() {
        let body = r#"{"task":{"taskArn":"arn:t","lastStatus":"RUNNING","containers":[{"name":"c","exitCode":0}],"desiredStatus":"STOPPED"}}"#;
        match answer(200, &[], body) {
            Attempt::Final(Ok(TaskStop::Accepted { last_status })) => {
                assert_eq!(last_status.as_deref(), Some("RUNNING"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_throttle_is_final_and_throttled_whatever_its_spelling() {
        assert_eq!(
            kind(answer(400, &[], r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#)),
            UpstreamKind::Throttled
        );
        assert_eq!(
            kind(answer(400, &[("x-amzn-errortype", "ThrottlingException:http://internal.amazon.com/coral/")], "{}")),
            UpstreamKind::Throttled
        );
        assert_eq!(
            kind(answer(400, &[], r#"{"__type":"com.amazonaws.ecs#ThrottlingException"}"#)),
            UpstreamKind::Throttled
        );
        assert_eq!(kind(answer(429, &[], "")), UpstreamKind::Throttled);
    }

    #[test]
    fn a_task_or_cluster_ecs_no_longer_knows_is_gone() {
        let not_found = r#"{"__type":"InvalidParameterException","message":"The referenced task was not found."}"#;
        assert!(matches!(answer(400, &[], not_found), Attempt::Final(Ok(TaskStop::Gone))));
        let no_cluster = r#"{"__type":"ClusterNotFoundException","message":"Cluster not found."}"#;
        assert!(matches!(answer(400, &[], no_cluster), Attempt::Final(Ok(TaskStop::Gone))));
    }

    #[test]
    fn refusals_are_final_and_everything_else_goes_to_the_sdk() {
        let invalid = r#"{"__type":"InvalidParameterException","message":"reason too long"}"#;
        assert_eq!(kind(answer(400, &[], invalid)), UpstreamKind::Rejected);
        let denied = r#"{"__type":"AccessDeniedException","Message":"no"}"#;
        assert!(matches!(answer(400, &[], denied), Attempt::Fallback(_)));
        let skewed = r#"{"__type":"InvalidSignatureException","message":"Signature expired"}"#;
        assert!(matches!(answer(403, &[], skewed), Attempt::Fallback(_)));
        assert!(matches!(answer(500, &[], r#"{"__type":"ServerException"}"#), Attempt::Fallback(_)));
        assert!(matches!(answer(503, &[], "<html>"), Attempt::Fallback(_)));
        assert!(matches!(answer(200, &[], "not json"), Attempt::Fallback(_)));
    }

    #[test]
    fn a_fallback_keeps_ecs_request_id_and_says_why() {
        let headers = [("x-amzn-RequestId", "0d6e-req")];
        let Attempt::Fallback(f) = answer(500, &headers, r#"{"__type":"ServerException"}"#) else { panic!() };
        assert_eq!((f.sent, f.reason(), f.request_id.as_deref()), (true, "http", Some("0d6e-req")));
        let err = f.into_error();
        assert_eq!(err.kind, UpstreamKind::Fault);
        assert!(err.to_string().contains("request id 0d6e-req"), "{err}");
        let throttled = answer(400, &headers, r#"{"__type":"ThrottlingException"}"#);
        let Attempt::Final(Err(e)) = throttled else { panic!() };
        assert!(e.to_string().contains("request id 0d6e-req"), "{e}");
    }

    #[test]
    fn the_signed_request_carries_what_ecs_checks() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let uri: http::Uri = "https://ecs.eu-west-1.amazonaws.com/".parse().unwrap();
        let req = signed_request(&uri, "eu-west-1", &creds, b"{}".to_vec(), SystemTime::UNIX_EPOCH).unwrap();
        let h = req.headers();
        assert_eq!(h["x-amz-target"], TARGET);
        assert_eq!(h["content-type"], CONTENT_TYPE);
        assert_eq!(h["x-amz-security-token"], "token");
        assert_eq!(h["x-amz-date"], "19700101T000000Z");
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/19700101/eu-west-1/ecs/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"),
            "{auth}"
        );
    }
}
