//! The one SigV4 verifier: checks a request's signature the way API Gateway's
//! IAM authorization does for service `execute-api`, recomputed from the
//! specification (HMAC-SHA256, not an SDK's signer) with known test
//! credentials, and [`start_verifier`], a local "API Gateway" that answers
//! `StopWorkflowRun` only for requests whose signature verifies.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Request, Response};
use sha2::{Digest, Sha256};

use super::serve::{serve, Server};

pub const ACCESS_KEY: &str = "AKIDEXECUTEAPITEST";
pub const SECRET_KEY: &str = "execute-api-test-secret-key/0123456789";
pub const REGION: &str = "us-east-1";

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
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
pub fn verify_sigv4(method: &str, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    verify_sigv4_for("execute-api", method, path, query, headers, body)
}

/// [`verify_sigv4`] for another service's signing name (`ecs`).
pub fn verify_sigv4_for(
    service_name: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, String> {
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
    if service != service_name {
        return Err(format!("Credential should be scoped to correct service: '{service_name}' (got '{service}')"));
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
    let scope = format!("{date}/{REGION}/{service_name}/aws4_request");
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = [date, REGION, service_name, "aws4_request"]
        .iter()
        .fold(format!("AWS4{SECRET_KEY}").into_bytes(), |key, part| hmac(&key, part));
    let expected = hex(&hmac(&key, &string_to_sign));
    if expected != signature {
        return Err("The request signature we calculated does not match the signature you provided.".into());
    }
    Ok(service.to_owned())
}

/// Every verdict the verifier reached, in order.
pub type Seen = Arc<Mutex<Vec<Result<String, String>>>>;

/// Serves `StopWorkflowRun` and `GetWorkflowRun` (a STOPPING run) for
/// requests whose signature verifies, 403 (`InvalidSignatureException`) otherwise.
pub async fn start_verifier() -> (Server, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let server = serve(move |req: Request<Incoming>| {
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
                    // A run that is STOPPING: the answer of StopWorkflowRun,
                    // or of GetWorkflowRun.
                    let input: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let (arn, run_id) = (&input["WorkflowArn"], &input["RunId"]);
                    let target = parts.headers.get("x-amz-target").and_then(|t| t.to_str().ok()).unwrap_or("");
                    let doc = if target.ends_with(".GetWorkflowRun") {
                        serde_json::json!({
                            "WorkflowArn": arn, "RunId": run_id,
                            "RunDetail": { "WorkflowArn": arn, "RunId": run_id, "RunState": "STOPPING" }
                        })
                    } else {
                        serde_json::json!({ "WorkflowArn": arn, "RunId": run_id, "Status": "STOPPING" })
                    };
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
    })
    .await;
    (server, seen)
}
