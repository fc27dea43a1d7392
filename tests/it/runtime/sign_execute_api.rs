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
//! boto3's equivalent is one event handler, `sign_for_execute_api` in
//! `localdev.sign_execute_api` (`tools/localdev/`, installed into `.venv` by
//! `make venv`). Both clients are run here against the test
//! kit's SigV4 verifier (`kit::sigv4`), which checks signatures the way API
//! Gateway does, with known test credentials for service `execute-api`. No
//! network, no AWS.

use std::time::Duration;

use aws_sdk_mwaaserverless::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_mwaaserverless::config::retry::RetryConfig;
use aws_sdk_mwaaserverless::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_mwaaserverless::error::BoxError;
use aws_sdk_mwaaserverless::types::WorkflowRunStatus;
use aws_types::SigningName;
use hyper::HeaderMap;

use crate::kit::sigv4::{hex, hmac, sha256_hex, start_verifier, verify_sigv4, ACCESS_KEY, REGION, SECRET_KEY};
use crate::kit::venv_bin;

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

const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/nightly-etl-a1B2c3D4e5";

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
    let (verifier, seen) = start_verifier().await;
    let url = verifier.url.clone();
    let err = stop(&client(&url, SECRET_KEY, false)).await.expect_err("API Gateway refuses airflow-serverless");
    assert!(err.contains("403") || err.contains("InvalidSignature"), "{err}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].as_ref().unwrap_err().contains("got 'airflow-serverless'"), "{seen:?}");
}

#[tokio::test]
async fn the_interceptor_signs_for_execute_api_and_is_accepted() {
    let (verifier, seen) = start_verifier().await;
    let url = verifier.url.clone();
    let status = stop(&client(&url, SECRET_KEY, true)).await.expect("accepted");
    assert_eq!(status, Some(WorkflowRunStatus::Stopping));
    assert_eq!(*seen.lock().unwrap(), vec![Ok("execute-api".to_owned())]);
}

#[tokio::test]
async fn the_verifier_recomputes_the_signature() {
    let (verifier, seen) = start_verifier().await;
    let url = verifier.url.clone();
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

/// boto3's `mwaa-serverless` client (the project's .venv has botocore 1.44.5,
/// the first with the model), with or without `sign_for_execute_api`, sends
/// one `StopWorkflowRun` to `url`; its output is the status or the error.
fn boto3_stop(url: &str, secret: &str, resign: bool) -> Result<String, String> {
    let script = format!(
        r#"
import boto3, botocore.config, botocore.exceptions
from localdev.sign_execute_api import sign_for_execute_api
client = boto3.client("mwaa-serverless", region_name="{REGION}", endpoint_url={url:?},
    aws_access_key_id="{ACCESS_KEY}", aws_secret_access_key={secret:?},
    config=botocore.config.Config(retries={{"max_attempts": 1}}))
if {resign}:
    sign_for_execute_api(client)
try:
    print("OK", client.stop_workflow_run(WorkflowArn="{ARN}", RunId="run-1")["Status"])
except botocore.exceptions.ClientError as e:
    print("ERR", e.response["Error"].get("Code"), e)
"#,
        resign = if resign { "True" } else { "False" },
    );
    let out = std::process::Command::new(venv_bin("python"))
        .args(["-c", &script])
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run the project's Python");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "boto3 script failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    match text.strip_prefix("OK ") {
        Some(status) => Ok(status.to_owned()),
        None => Err(text),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_with_the_handler_is_accepted_and_without_it_is_rejected() {
    let (verifier, seen) = start_verifier().await;
    let url = verifier.url.clone();
    let accepted = tokio::task::spawn_blocking({
        let url = url.clone();
        move || boto3_stop(&url, SECRET_KEY, true)
    });
    assert_eq!(accepted.await.unwrap(), Ok("STOPPING".to_owned()));
    let unchanged = tokio::task::spawn_blocking({
        let url = url.clone();
        move || boto3_stop(&url, SECRET_KEY, false)
    });
    let err = unchanged.await.unwrap().expect_err("API Gateway refuses airflow-serverless");
    assert!(err.starts_with("ERR 403"), "API Gateway's 403: {err}");
    let wrong_key = tokio::task::spawn_blocking(move || boto3_stop(&url, "not-the-secret", true));
    wrong_key.await.unwrap().expect_err("a wrong key is refused");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], Ok("execute-api".to_owned()));
    assert!(seen[1].as_ref().unwrap_err().contains("got 'airflow-serverless'"), "{seen:?}");
    assert!(seen[2].as_ref().unwrap_err().contains("does not match"), "{seen:?}");
}
