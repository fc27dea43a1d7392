//! `StopTask` as the product's ECS adapter sends it (`EcsWorkers::from_conf`,
//! which sends it first without the SDK's orchestration, on the SDK client's
//! own connector), against a local ECS endpoint that checks every request's
//! SigV4 signature with the kit's independent verifier (`kit::sigv4`, scoped
//! to service `ecs`) and answers from a script. Tells the direct path from
//! the SDK's by the SDK's `x-amz-user-agent` header.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Response;
use mwaa_stop::aws::{EcsWorkers, SdkSettings};
use mwaa_stop::ports::{TaskStop, UpstreamKind, WorkerControl};
use serde_json::{json, Value};

use crate::kit::serve::{serve, Server};
use crate::kit::sigv4::{verify_sigv4_for, ACCESS_KEY, REGION, SECRET_KEY};
use crate::kit::Guard;

const CLUSTER: &str = "workers";
const TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/workers/0123456789abcdef";

/// One scripted answer: after `delay`, HTTP `status` with `body`.
#[derive(Clone)]
struct Answer {
    delay: Duration,
    status: u16,
    body: Value,
}

fn ok(last_status: &str) -> Answer {
    // A StopTask answer as ECS writes it: the whole task, of which the
    // adapter needs only lastStatus.
    let task = json!({"task": {
        "taskArn": TASK, "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/workers",
        "lastStatus": last_status, "desiredStatus": "STOPPED", "stopCode": "UserInitiated",
        "stoppedReason": "stopped by test", "launchType": "FARGATE", "cpu": "256", "memory": "512",
        "containers": [{"name": "worker", "lastStatus": last_status, "exitCode": 0, "networkInterfaces": []}],
        "attachments": [{"id": "eni-1", "type": "ElasticNetworkInterface", "status": "ATTACHED",
            "details": [{"name": "subnetId", "value": "subnet-1"}]}],
        "createdAt": 1.764e9, "version": 3, "tags": []
    }});
    Answer { delay: Duration::ZERO, status: 200, body: task }
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer { delay: Duration::ZERO, status, body: json!({"__type": code, "message": message}) }
}

/// What the endpoint saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    /// Sent by the SDK client (it has `x-amz-user-agent`), not the direct path.
    by_sdk: bool,
    /// The request target as sent (absolute only through a proxy).
    uri: String,
    method: String,
    signature: Result<String, String>,
    target: String,
    body: Value,
}

struct Ecs {
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Server,
    url: String,
}

/// An ECS endpoint answering from `script` in order (its last answer again
/// once the script is used up).
async fn ecs(script: Vec<Answer>) -> Ecs {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let (log, queue) = (seen.clone(), script.clone());
    let server = serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let (log, queue) = (log.clone(), queue.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            log.lock().unwrap().push(Seen {
                by_sdk: parts.headers.contains_key("x-amz-user-agent"),
                uri: parts.uri.to_string(),
                method: parts.method.to_string(),
                signature: verify_sigv4_for("ecs", "POST", parts.uri.path(), "", &parts.headers, &body),
                target: header("x-amz-target"),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            let request_id = format!("req-{}", log.lock().unwrap().len());
            let answer = {
                let mut q = queue.lock().unwrap();
                if q.len() > 1 {
                    q.pop_front().unwrap()
                } else {
                    q.front().cloned().expect("a script with at least one answer")
                }
            };
            tokio::time::sleep(answer.delay).await;
            let resp = Response::builder()
                .status(answer.status)
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amzn-RequestId", request_id)
                .body(Full::new(Bytes::from(answer.body.to_string())))
                .unwrap();
            Ok::<_, hyper::Error>(resp)
        }
    })
    .await;
    let url = server.url.clone();
    Ecs { seen, server, url }
}

impl Ecs {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The product's adapter for this endpoint, with session credentials (the
/// token must be signed too) and the given attempt timeout.
async fn workers(url: &str, attempt_timeout: Duration) -> EcsWorkers {
    workers_with(url, attempt_timeout, 3, true).await
}

/// [`workers`] with `max_attempts` SDK attempts, the direct path on or off.
async fn workers_with(url: &str, attempt_timeout: Duration, max_attempts: u32, direct: bool) -> EcsWorkers {
    let settings = SdkSettings {
        max_attempts,
        connect_timeout: Duration::from_secs(5),
        attempt_timeout,
        operation_timeout: Duration::from_secs(30),
        max_connections_per_host: None,
    };
    let creds = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, Some("session".into()), None, "test");
    let conf = settings
        .apply(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(creds)
        .load()
        .await;
    EcsWorkers::from_conf_with(&conf, direct)
}

#[tokio::test]
async fn stop_task_goes_out_once_signed_for_ecs_and_reads_the_last_status() {
    let ecs = ecs(vec![ok("RUNNING")]).await;
    let workers = workers(&ecs.url, Duration::from_secs(10)).await;

    let stop = workers.stop_task(CLUSTER, TASK, "stopped by alice: cleanup").await.unwrap();

    assert_eq!(stop, TaskStop::Accepted { last_status: Some("RUNNING".into()) });
    let seen = ecs.seen();
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    assert!(!seen[0].by_sdk, "sent by the direct path");
    assert_eq!(seen[0].signature, Ok("ecs".to_owned()), "a SigV4 signature ECS accepts");
    assert_eq!(seen[0].target, "AmazonEC2ContainerServiceV20141113.StopTask");
    assert_eq!(seen[0].body, json!({"cluster": CLUSTER, "task": TASK, "reason": "stopped by alice: cleanup"}));
}

#[tokio::test]
async fn the_connection_is_kept_for_the_next_calls() {
    let ecs = ecs(vec![ok("RUNNING")]).await;
    let workers = workers(&ecs.url, Duration::from_secs(10)).await;
    for _ in 0..5 {
        workers.stop_task(CLUSTER, TASK, "r").await.unwrap();
    }
    let seen = ecs.seen();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|s| !s.by_sdk && s.signature.is_ok()), "{seen:?}");
    assert_eq!(ecs.server.connections(), 1, "five calls one after another share one kept-alive connection");
}

/// A 5xx on the direct path goes on to the SDK client, whose retries then
/// answer: the direct attempt, then the SDK's first attempt and one retry.
#[tokio::test]
async fn a_server_error_is_sent_again_through_the_sdk_and_its_retries() {
    let ecs =
        ecs(vec![error(500, "ServerException", "oops"), error(500, "ServerException", "oops"), ok("STOPPED")]).await;
    let workers = workers(&ecs.url, Duration::from_secs(10)).await;

    let stop = workers.stop_task(CLUSTER, TASK, "r").await.unwrap();

    assert_eq!(stop, TaskStop::Accepted { last_status: Some("STOPPED".into()) });
    let by_sdk: Vec<bool> = ecs.seen().iter().map(|s| s.by_sdk).collect();
    assert_eq!(by_sdk, vec![false, true, true], "direct, then the SDK's attempt and its retry");
    assert!(ecs.seen().iter().all(|s| s.signature.is_ok()));
}

#[tokio::test]
async fn a_throttle_is_answered_at_once_and_never_resent() {
    let ecs = ecs(vec![error(400, "ThrottlingException", "Rate exceeded")]).await;
    let workers = workers(&ecs.url, Duration::from_secs(10)).await;

    let err = workers.stop_task(CLUSTER, TASK, "r").await.unwrap_err();

    assert_eq!(err.kind, UpstreamKind::Throttled, "back-pressure for the pacing: {err}");
    assert_eq!(ecs.seen().len(), 1, "neither the direct path nor the SDK resends a throttle");
}

#[tokio::test]
async fn a_task_ecs_no_longer_knows_is_gone_and_a_refused_request_is_final() {
    let gone = ecs(vec![error(400, "InvalidParameterException", "The referenced task was not found.")]).await;
    let workers = workers(&gone.url, Duration::from_secs(10)).await;
    assert_eq!(workers.stop_task(CLUSTER, TASK, "r").await.unwrap(), TaskStop::Gone);
    assert_eq!(gone.seen().len(), 1);

    let invalid = ecs(vec![error(400, "InvalidParameterException", "reason is too long")]).await;
    let workers = self::workers(&invalid.url, Duration::from_secs(10)).await;
    let err = workers.stop_task(CLUSTER, TASK, "r").await.unwrap_err();
    assert_eq!(err.kind, UpstreamKind::Rejected);
    assert_eq!(invalid.seen().len(), 1, "a refused request is not sent again");
}

#[tokio::test]
async fn any_other_error_is_the_sdk_clients_to_handle() {
    // An access denial (or a signature refused for clock skew, or expired
    // credentials): one direct attempt, then the SDK's, whose error is the
    // answer (the SDK does not retry a denial).
    let denied = ecs(vec![error(400, "AccessDeniedException", "not authorized to perform ecs:StopTask")]).await;
    let workers = workers(&denied.url, Duration::from_secs(10)).await;

    let err = workers.stop_task(CLUSTER, TASK, "r").await.unwrap_err();

    assert_eq!(err.kind, UpstreamKind::Fault);
    assert!(err.to_string().contains("AccessDeniedException"), "{err}");
    let by_sdk: Vec<bool> = denied.seen().iter().map(|s| s.by_sdk).collect();
    assert_eq!(by_sdk, vec![false, true]);
}

#[tokio::test]
async fn an_answer_that_never_comes_goes_to_the_sdk_after_the_attempt_timeout() {
    let hang = Answer { delay: Duration::from_secs(120), ..ok("RUNNING") };
    let ecs = ecs(vec![hang, ok("RUNNING")]).await;
    let workers = workers(&ecs.url, Duration::from_secs(2)).await;

    let stop = workers.stop_task(CLUSTER, TASK, "r").await.unwrap();

    assert_eq!(stop, TaskStop::Accepted { last_status: Some("RUNNING".into()) });
    let by_sdk: Vec<bool> = ecs.seen().iter().map(|s| s.by_sdk).collect();
    assert_eq!(by_sdk, vec![false, true], "the hung direct attempt, then the SDK's");
}

/// The direct attempt is one of the SDK's `max_attempts`: against an
/// endpoint that always fails, 3 attempts in all (the direct one and two
/// of the SDK's), not 1 + 3; with `max_attempts` = 1, the direct attempt
/// alone, whose failure names ECS's request id.
#[tokio::test]
async fn the_direct_attempt_counts_in_the_sdk_retry_budget() {
    let failing = ecs(vec![error(500, "ServerException", "oops")]).await;
    let workers = workers_with(&failing.url, Duration::from_secs(10), 3, true).await;

    let err = workers.stop_task(CLUSTER, TASK, "r").await.unwrap_err();

    assert_eq!(err.kind, UpstreamKind::Fault, "{err}");
    let by_sdk: Vec<bool> = failing.seen().iter().map(|s| s.by_sdk).collect();
    assert_eq!(by_sdk, vec![false, true, true], "one direct attempt, then the SDK's two left");

    let once = ecs(vec![error(503, "ServiceUnavailableException", "busy")]).await;
    let workers = workers_with(&once.url, Duration::from_secs(10), 1, true).await;
    let err = workers.stop_task(CLUSTER, TASK, "r").await.unwrap_err();
    assert_eq!(err.kind, UpstreamKind::Fault);
    assert!(err.to_string().contains("request id req-1"), "the request id is kept: {err}");
    assert_eq!(once.seen().len(), 1, "no attempt is left for the SDK");
}

/// With the direct path turned off (`ECS_DIRECT_STOP_TASK=false`), every
/// `StopTask` goes through the SDK client, signed as ECS expects.
#[tokio::test]
async fn the_off_switch_leaves_every_stop_task_to_the_sdk() {
    let ecs = ecs(vec![ok("RUNNING")]).await;
    let workers = workers_with(&ecs.url, Duration::from_secs(10), 3, false).await;
    assert!(!workers.direct_stop_task());

    for _ in 0..3 {
        let stop = workers.stop_task(CLUSTER, TASK, "r").await.unwrap();
        assert_eq!(stop, TaskStop::Accepted { last_status: Some("RUNNING".into()) });
    }

    let seen = ecs.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.by_sdk && s.signature == Ok("ecs".to_owned())), "{seen:?}");
}

/// Set in the child process of [`the_proxy_environment_is_the_sdks_no_proxy_included`].
const PROXY_CHILD: &str = "MWAA_TEST_PROXY_CHILD_ECS";

/// The direct path follows the SDK's proxy rules, read from the
/// environment: with `HTTP_PROXY` set and `NO_PROXY=127.0.0.1`, a stop sent
/// to ECS at 127.0.0.1 reaches it directly, and one sent to it as
/// `localhost` (not in `NO_PROXY`) goes to the proxy (a stand-in that
/// answers for ECS). The environment is the process's, so the calls are made
/// in a child process of this test binary with these variables set.
#[tokio::test]
async fn the_proxy_environment_is_the_sdks_no_proxy_included() {
    let ecs = ecs(vec![ok("RUNNING")]).await;
    let proxy = self::ecs(vec![ok("STOPPED")]).await;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["adapters::direct::stops_through_the_proxy_environment", "--exact", "--ignored", "--test-threads=1"])
        .env(PROXY_CHILD, &ecs.url)
        .env("HTTP_PROXY", &proxy.url)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("http_proxy")
        .env_remove("no_proxy");
    let mut child = Guard::spawn(cmd, "direct-proxy-child.log");

    let status = child.exited(Duration::from_secs(120)).await;

    assert!(status.success(), "the child's stops failed:\n{}", child.log_tail());
    let at_ecs = ecs.seen();
    assert_eq!(at_ecs.len(), 1, "only the stop to 127.0.0.1 (in NO_PROXY) reaches ECS directly: {at_ecs:?}");
    assert!(!at_ecs[0].by_sdk && at_ecs[0].signature.is_ok() && at_ecs[0].uri == "/", "{at_ecs:?}");
    let at_proxy = proxy.seen();
    assert_eq!(at_proxy.len(), 1, "the stop to localhost goes to the proxy: {at_proxy:?}");
    assert!(!at_proxy[0].by_sdk, "sent by the direct path: {at_proxy:?}");
    let port = ecs.url.rsplit(':').next().unwrap();
    assert_eq!(at_proxy[0].uri, format!("http://localhost:{port}/"), "a proxy's absolute request target");
}

/// The child's half of [`the_proxy_environment_is_the_sdks_no_proxy_included`]
/// (does nothing unless run by it).
#[tokio::test]
#[ignore = "run in a child process by the_proxy_environment_is_the_sdks_no_proxy_included"]
async fn stops_through_the_proxy_environment() {
    let Ok(url) = std::env::var(PROXY_CHILD) else { return };
    let direct = workers(&url, Duration::from_secs(10)).await;
    assert!(direct.direct_stop_task());
    let stop = direct.stop_task(CLUSTER, TASK, "r").await.unwrap();
    assert_eq!(stop, TaskStop::Accepted { last_status: Some("RUNNING".into()) }, "answered by ECS");
    let proxied = workers(&url.replace("127.0.0.1", "localhost"), Duration::from_secs(10)).await;
    let stop = proxied.stop_task(CLUSTER, TASK, "r").await.unwrap();
    assert_eq!(stop, TaskStop::Accepted { last_status: Some("STOPPED".into()) }, "answered by the proxy");
}

/// `ECS_CONNECTIONS_AT_INIT`: connections to ECS opened in the background
/// (an unsigned `HEAD /` each), which the first `StopTask`s then use: no
/// connection is opened for them.
#[tokio::test]
async fn connections_opened_at_init_carry_the_first_stops() {
    let ecs = ecs(vec![ok("RUNNING")]).await;
    let workers = workers(&ecs.url, Duration::from_secs(10)).await;

    workers.open_connections(2);
    for _ in 0..1000 {
        if ecs.seen().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let opened = ecs.server.connections();
    workers.stop_task(CLUSTER, TASK, "r").await.unwrap();

    let seen = ecs.seen();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, vec!["HEAD", "HEAD", "POST"], "{seen:?}");
    assert!(seen[2].signature.is_ok() && !seen[2].by_sdk);
    assert!((1..=2).contains(&opened), "{opened} connections opened at init");
    assert_eq!(ecs.server.connections(), opened, "the stop went out on a connection opened at init");
}
