//! Calling the deployed API with `aws-sdk-mwaaserverless`: API Gateway's IAM
//! authorization checks a SigV4 signature for the service `execute-api`, while
//! the client signs for the model's signing name, `airflow-serverless`.
//!
//! The smallest change is one interceptor, [`SignForExecuteApi`], that puts the
//! signing name `execute-api` into the request's config bag before signing
//! (the SigV4 signer reads the `SigningName` from there):
//!
//! ```ignore
//! let conf = aws_sdk_mwaaserverless::config::Builder::from(&aws_config::load_from_env().await)
//!     .endpoint_url(api_url)
//!     .interceptor(SignForExecuteApi)
//!     .build();
//! let client = aws_sdk_mwaaserverless::Client::from_conf(conf);
//! ```
//!
//! The tests run it against a local endpoint that verifies SigV4 the way API
//! Gateway does, recomputed here from the specification (HMAC-SHA256, not the
//! SDK's signer) with known test credentials for service `execute-api`. No
//! network, no AWS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_mwaaserverless::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_mwaaserverless::config::retry::RetryConfig;
use aws_sdk_mwaaserverless::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_mwaaserverless::error::BoxError;
use aws_sdk_mwaaserverless::types::WorkflowRunStatus;
use aws_types::SigningName;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

/// Signs every request of the client it is added to for `execute-api`.
#[derive(Debug)]
struct SignForExecuteApi;

impl Intercept for SignForExecuteApi {
    fn name(&self) -> &'static str {
        "SignForExecuteApi"
    }

    fn modify_before_signing(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(SigningName::from_static("execute-api"));
        Ok(())
    }
}

const ACCESS_KEY: &str = "AKIDEXECUTEAPITEST";
const SECRET_KEY: &str = "execute-api-test-secret-key/0123456789";
const REGION: &str = "us-east-1";
const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/nightly-etl-a1B2c3D4e5";

// ------------------------------------------------------------ SigV4 verifier

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 unreserved characters stay, everything else is %XX.
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Verifies a SigV4 request for `(ACCESS_KEY, SECRET_KEY, REGION, "execute-api")`
/// as API Gateway does; returns the credential scope's service on success.
fn verify_sigv4(method: &str, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    const SERVICE: &str = "execute-api";
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let auth = header("authorization").ok_or("no Authorization header")?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not a SigV4 request")?;
    let field = |key: &str| {
        rest.split(',')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
            .ok_or(format!("Authorization header without {key}"))
    };
    let credential = field("Credential")?;
    let signed_headers = field("SignedHeaders")?;
    let signature = field("Signature")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = parts[..] else {
        return Err(format!("malformed credential {credential}"));
    };
    if akid != ACCESS_KEY {
        return Err(format!("unknown access key {akid}"));
    }
    if service != SERVICE {
        return Err(format!("Credential should be scoped to correct service: '{SERVICE}' (got '{service}')"));
    }
    if region != REGION || terminator != "aws4_request" {
        return Err(format!("credential scope {credential} is not for {REGION}"));
    }
    let amz_date = header("x-amz-date").ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(date) || !signed_headers.split(';').any(|h| h == "host") {
        return Err("x-amz-date / host must be signed and match the scope date".into());
    }
    let payload_hash = sha256_hex(body);
    if header("x-amz-content-sha256").is_some_and(|h| h != payload_hash) {
        return Err("x-amz-content-sha256 does not match the body".into());
    }
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} is missing from the request"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // Every service but S3 encodes each path segment twice.
    let canonical_uri = path.split('/').map(|seg| uri_encode(&uri_encode(seg))).collect::<Vec<_>>().join("/");
    let mut query_pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    query_pairs.sort();
    let canonical_query = query_pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let canonical_request =
        format!("{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let scope = format!("{date}/{REGION}/{SERVICE}/aws4_request");
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = [date, REGION, SERVICE, "aws4_request"]
        .iter()
        .fold(format!("AWS4{SECRET_KEY}").into_bytes(), |key, part| hmac(&key, part));
    let expected = hex(&hmac(&key, &string_to_sign));
    if expected != signature {
        return Err("The request signature we calculated does not match the signature you provided.".into());
    }
    Ok(service.to_owned())
}

// ------------------------------------------------- the local "API Gateway"

type Seen = Arc<Mutex<Vec<Result<String, String>>>>;

/// Serves `StopWorkflowRun` for requests whose signature verifies, 403 otherwise.
async fn start_verifier() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let log = log.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let log = log.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let verdict = verify_sigv4(
                        parts.method.as_str(),
                        parts.uri.path(),
                        parts.uri.query().unwrap_or(""),
                        &parts.headers,
                        &body,
                    );
                    log.lock().unwrap().push(verdict.clone());
                    let (status, doc, error_type) = match verdict {
                        Ok(_) => {
                            let input: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                            let doc = serde_json::json!({
                                "WorkflowArn": input["WorkflowArn"], "RunId": input["RunId"], "Status": "STOPPING"
                            });
                            (200, doc, None)
                        }
                        Err(why) => (403, serde_json::json!({ "message": why }), Some("InvalidSignatureException")),
                    };
                    let mut resp = Response::builder()
                        .status(status)
                        .header("content-type", "application/x-amz-json-1.0")
                        .header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000");
                    if let Some(t) = error_type {
                        resp = resp.header("x-amzn-ErrorType", t);
                    }
                    Ok::<_, Infallible>(resp.body(Full::new(Bytes::from(doc.to_string()))).unwrap())
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (url, seen)
}

fn client(url: &str, secret: &str, sign_for_execute_api: bool) -> aws_sdk_mwaaserverless::Client {
    let mut conf = aws_sdk_mwaaserverless::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "sign-execute-api-test"))
        .endpoint_url(url)
        .retry_config(RetryConfig::disabled());
    if sign_for_execute_api {
        conf = conf.interceptor(SignForExecuteApi);
    }
    aws_sdk_mwaaserverless::Client::from_conf(conf.build())
}

async fn stop(client: &aws_sdk_mwaaserverless::Client) -> Result<Option<WorkflowRunStatus>, String> {
    tokio::time::timeout(Duration::from_secs(30), client.stop_workflow_run().workflow_arn(ARN).run_id("run-1").send())
        .await
        .expect("the local endpoint answers")
        .map(|out| out.status().cloned())
        .map_err(|e| format!("{e:?}"))
}

// --------------------------------------------------------------------- tests

#[test]
fn the_model_signs_as_airflow_serverless() {
    let conf = aws_sdk_mwaaserverless::Config::builder().behavior_version(BehaviorVersion::latest()).build();
    assert_eq!(conf.signing_name(), "airflow-serverless");
}

#[tokio::test]
async fn an_unchanged_client_is_rejected() {
    let (url, seen) = start_verifier().await;
    let err = stop(&client(&url, SECRET_KEY, false)).await.expect_err("API Gateway refuses airflow-serverless");
    assert!(err.contains("403") || err.contains("InvalidSignature"), "{err}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].as_ref().unwrap_err().contains("got 'airflow-serverless'"), "{seen:?}");
}

#[tokio::test]
async fn the_interceptor_signs_for_execute_api_and_is_accepted() {
    let (url, seen) = start_verifier().await;
    let status = stop(&client(&url, SECRET_KEY, true)).await.expect("accepted");
    assert_eq!(status, Some(WorkflowRunStatus::Stopping));
    assert_eq!(*seen.lock().unwrap(), vec![Ok("execute-api".to_owned())]);
}

#[tokio::test]
async fn the_verifier_recomputes_the_signature() {
    let (url, seen) = start_verifier().await;
    // Right service, wrong secret: only a recomputed signature can tell.
    stop(&client(&url, "not-the-secret", true)).await.expect_err("a wrong key is refused");
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].as_ref().unwrap_err().contains("does not match"), "{seen:?}");
}

#[test]
fn the_verifier_checks_the_body_path_and_signed_headers() {
    // A request signed by hand for execute-api, then altered.
    let amz_date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .unwrap();
    let date = &amz_date[..8];
    let body = br#"{"WorkflowArn":"a","RunId":"b"}"#;
    let mut headers = HeaderMap::new();
    headers.insert("host", "abc123.execute-api.us-east-1.amazonaws.com".parse().unwrap());
    headers.insert("x-amz-date", amz_date.parse().unwrap());
    headers.insert("x-amz-target", "AmazonMWAAServerless.StopWorkflowRun".parse().unwrap());
    let signed = "host;x-amz-date;x-amz-target";
    let canonical_headers = format!(
        "host:abc123.execute-api.us-east-1.amazonaws.com\nx-amz-date:{amz_date}\nx-amz-target:AmazonMWAAServerless.StopWorkflowRun\n"
    );
    let canonical_request = format!("POST\n/\n\n{canonical_headers}\n{signed}\n{}", sha256_hex(body));
    let scope = format!("{date}/{REGION}/execute-api/aws4_request");
    let sts = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = [date, REGION, "execute-api", "aws4_request"]
        .iter()
        .fold(format!("AWS4{SECRET_KEY}").into_bytes(), |key, part| hmac(&key, part));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={}",
        hex(&hmac(&key, &sts))
    );
    headers.insert("authorization", auth.parse().unwrap());
    assert_eq!(verify_sigv4("POST", "/", "", &headers, body), Ok("execute-api".to_owned()));
    assert!(verify_sigv4("POST", "/", "", &headers, br#"{"WorkflowArn":"a","RunId":"c"}"#).is_err());
    assert!(verify_sigv4("POST", "/other", "", &headers, body).is_err());
    let mut moved = headers.clone();
    moved.insert("x-amz-target", "AmazonMWAAServerless.GetWorkflowRun".parse().unwrap());
    assert!(verify_sigv4("POST", "/", "", &moved, body).is_err());
}
