//! `StopTask` without the SDK's per-call orchestration: the request the SDK
//! would send (AWS JSON 1.1, `AmazonEC2ContainerServiceV20141113.StopTask`),
//! signed by the SDK's own SigV4 signer (`aws-sigv4`), on a kept-alive hyper
//! connection pool with rustls and AWS-LC (the SDK client's TLS stack).
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
//! timeout, an unreadable answer) is sent again through the SDK client
//! ([`Attempt::Transient`]), which corrects its clock, refreshes its
//! credentials and retries as configured. A throttle is final here as it is
//! on the SDK path: it is the pacing's back-pressure (`crate::pacing`).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_ecs::config::endpoint::{Params, ResolveEndpoint};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_types::service_config::ServiceConfigKey;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
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
    /// Not an answer (5xx, connection, timeout, unreadable): the SDK client
    /// sends the call again with its retries. The string says what happened.
    Transient(String),
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

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The direct `StopTask` sender: one per process, shared by every call.
#[derive(Clone)]
pub(crate) struct DirectStopTask {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    /// The resolved ECS endpoint, path `/`.
    uri: hyper::Uri,
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
    /// The sender for this configuration, or why there is none (the SDK
    /// client then sends every `StopTask`, and reports the same problem on
    /// the first call): no region, no credentials provider, an endpoint the
    /// ECS rules do not resolve, or no TLS trust store.
    pub(crate) fn from_conf(conf: &aws_config::SdkConfig) -> Result<Self, String> {
        if let Some(var) = proxy_variable(|name| std::env::var(name).ok()) {
            return Err(format!("{var} is set: the SDK client honors the proxy, this path would not"));
        }
        let region = conf.region().ok_or("no region")?.to_string();
        let provider = conf.credentials_provider().ok_or("no credentials provider")?;
        let uri = resolve_endpoint(conf, &region)?;
        let timeouts = conf.timeout_config();
        let attempt_timeout = timeouts
            .and_then(|t| t.operation_attempt_timeout().or(t.operation_timeout()))
            .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT);

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(timeouts.and_then(|t| t.connect_timeout()));
        let provider_tls = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider_tls)
            .map_err(|e| format!("no TLS trust store: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(https);
        Ok(DirectStopTask {
            inner: Arc::new(Inner {
                http,
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
            Err(e) => return Attempt::Transient(format!("credentials: {e}")),
        };
        let body = match serde_json::to_vec(&StopTaskRequest { cluster, task, reason }) {
            Ok(b) => b,
            Err(e) => return Attempt::Transient(format!("request body: {e}")),
        };
        let request = match signed_request(&inner.uri, &inner.region, &credentials, body, SystemTime::now()) {
            Ok(r) => r,
            Err(e) => return Attempt::Transient(format!("signing: {e}")),
        };
        let exchange = async {
            let response = inner.http.request(request).await.map_err(|e| format!("{e}"))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| format!("reading the answer: {e}"))?.to_bytes();
            Ok::<_, String>((parts, body))
        };
        match tokio::time::timeout(inner.attempt_timeout, exchange).await {
            Err(_) => Attempt::Transient(format!("no answer within {:?}", inner.attempt_timeout)),
            Ok(Err(e)) => Attempt::Transient(e),
            Ok(Ok((parts, body))) => classify(parts.status, &parts.headers, &body),
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

/// The first proxy variable set (not empty), if any: with a proxy, every
/// call goes through the SDK client, which honors it.
fn proxy_variable(var: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .find(|name| var(name).is_some_and(|v| !v.trim().is_empty()))
}

/// The ECS endpoint the SDK client would use: `AWS_ENDPOINT_URL_ECS` (or the
/// profile's), else `AWS_ENDPOINT_URL`, through ECS's own endpoint rules
/// (FIPS, dual-stack, partitions).
fn resolve_endpoint(conf: &aws_config::SdkConfig, region: &str) -> Result<hyper::Uri, String> {
    let configured = if conf.get_origin("endpoint_url").is_client_config() {
        conf.endpoint_url().map(str::to_string)
    } else {
        conf.service_config()
            .and_then(|sc| {
                let key = ServiceConfigKey::builder()
                    .service_id("ECS")
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .ok()?;
                sc.load_config(key)
            })
            .or_else(|| conf.endpoint_url().map(str::to_string))
    };
    let mut params = Params::builder()
        .region(region)
        .use_fips(conf.use_fips().unwrap_or(false))
        .use_dual_stack(conf.use_dual_stack().unwrap_or(false));
    if let Some(url) = configured {
        params = params.endpoint(url);
    }
    let params = params.build().map_err(|e| format!("endpoint parameters: {e}"))?;
    let endpoint = aws_sdk_ecs::config::endpoint::DefaultResolver::new()
        .resolve_endpoint(&params)
        .now_or_never()
        .ok_or("the endpoint resolver did not answer at once")?
        .map_err(|e| format!("endpoint: {e}"))?;
    let url = endpoint.url();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("endpoint {url:?}: {e}"))?;
    let mut parts = uri.into_parts();
    if parts.path_and_query.as_ref().is_none_or(|p| p.path().is_empty()) {
        parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("/"));
    }
    hyper::Uri::from_parts(parts).map_err(|e| format!("endpoint {url:?}: {e}"))
}

/// The signed `POST` of `body`, as the SDK would send it.
fn signed_request(
    uri: &hyper::Uri,
    region: &str,
    credentials: &Credentials,
    body: Vec<u8>,
    now: SystemTime,
) -> Result<hyper::Request<Full<Bytes>>, String> {
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
    let mut request = hyper::Request::post(uri.clone())
        .header("content-type", CONTENT_TYPE)
        .header("x-amz-target", TARGET)
        .header("user-agent", concat!("mwaa-stop/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

/// ECS's answer, as the SDK path classifies it (`super::ecs`,
/// `super::upstream::from_sdk`).
fn classify(status: hyper::StatusCode, headers: &hyper::HeaderMap, body: &[u8]) -> Attempt {
    if status.is_success() {
        return match serde_json::from_slice::<StopTaskResponse>(body) {
            Ok(out) => Attempt::Final(Ok(TaskStop::Accepted { last_status: out.task.and_then(|t| t.last_status) })),
            Err(e) => Attempt::Transient(format!("unreadable StopTask answer: {e}")),
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
        Attempt::Final(Err(UpstreamError::new("ecs", "StopTask", kind, detail)))
    };
    if code_is(THROTTLING_CODES) || status == hyper::StatusCode::TOO_MANY_REQUESTS {
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
        Attempt::Transient(format!("HTTP {}: {} {message}", status.as_u16(), code.as_deref().unwrap_or("")))
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
        let mut map = hyper::HeaderMap::new();
        for (k, v) in headers {
            map.insert(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        classify(hyper::StatusCode::from_u16(status).unwrap(), &map, body.as_bytes())
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
        assert!(matches!(answer(400, &[], denied), Attempt::Transient(_)));
        let skewed = r#"{"__type":"InvalidSignatureException","message":"Signature expired"}"#;
        assert!(matches!(answer(403, &[], skewed), Attempt::Transient(_)));
        assert!(matches!(answer(500, &[], r#"{"__type":"ServerException"}"#), Attempt::Transient(_)));
        assert!(matches!(answer(503, &[], "<html>"), Attempt::Transient(_)));
        assert!(matches!(answer(200, &[], "not json"), Attempt::Transient(_)));
    }

    #[test]
    fn the_signed_request_carries_what_ecs_checks() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let uri: hyper::Uri = "https://ecs.eu-west-1.amazonaws.com/".parse().unwrap();
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

    #[test]
    fn a_configured_proxy_leaves_every_call_to_the_sdk() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| set.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(proxy_variable(env(&[])), None);
        assert_eq!(proxy_variable(env(&[("HTTPS_PROXY", " ")])), None);
        assert_eq!(proxy_variable(env(&[("https_proxy", "http://proxy:3128")])), Some("https_proxy"));
        assert_eq!(proxy_variable(env(&[("ALL_PROXY", "socks5://p:1080")])), Some("ALL_PROXY"));
    }

    #[test]
    fn the_endpoint_is_the_one_the_sdk_would_use() {
        let conf = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        assert_eq!(resolve_endpoint(&conf, "eu-west-1").unwrap().to_string(), "https://ecs.eu-west-1.amazonaws.com/");
        let local = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:5000")
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        assert_eq!(resolve_endpoint(&local, "us-east-1").unwrap().to_string(), "http://127.0.0.1:5000/");
        let fips = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .use_fips(true)
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        assert_eq!(
            resolve_endpoint(&fips, "us-east-1").unwrap().to_string(),
            "https://ecs-fips.us-east-1.amazonaws.com/"
        );
    }
}
