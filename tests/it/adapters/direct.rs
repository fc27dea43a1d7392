//! `StopTask` as the product's ECS adapter sends it (`EcsWorkers::from_conf`,
//! which sends it first without the SDK's orchestration), against a local
//! ECS endpoint that checks every request's SigV4 signature with the kit's
//! independent verifier (`kit::sigv4`, scoped to service `ecs`) and answers
//! from a script. Tells the direct path from the SDK's by the SDK's
//! `x-amz-user-agent` header.

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
                signature: verify_sigv4_for("ecs", "POST", parts.uri.path(), "", &parts.headers, &body),
                target: header("x-amz-target"),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
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
    let settings = SdkSettings {
        max_attempts: 3,
        connect_timeout: Duration::from_secs(5),
        attempt_timeout,
        operation_timeout: Duration::from_secs(30),
    };
    let creds = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, Some("session".into()), None, "test");
    let conf = settings
        .apply(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(creds)
        .load()
        .await;
    EcsWorkers::from_conf(&conf)
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
