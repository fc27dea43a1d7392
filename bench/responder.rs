//! An AWS-protocol endpoint that answers exactly what a stop and a finalize
//! send (DynamoDB `UpdateItem` / `GetItem`, ECS `StopTask` / `DescribeTasks` /
//! `ListTasks`) after a fixed service latency `D`, and counts every request.
//!
//! Benchmark scaffolding, not product code: moto's own per-request time (and
//! its GIL) would blur the round-trip floor the benchmark measures against.
//!
//! A run's worker count is encoded in its id: `n{N}-...` has N workers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::serve::{serve, Server};

#[derive(Default, Debug)]
pub struct Counts {
    pub update_item: AtomicU64,
    pub get_item: AtomicU64,
    pub stop_task: AtomicU64,
    pub describe_tasks: AtomicU64,
    pub list_tasks: AtomicU64,
    pub other: AtomicU64,
    /// Total and count of the latencies actually injected, reported beside
    /// the nominal D so the instrument's own precision is visible.
    pub injected_nanos: AtomicU64,
    pub injected_count: AtomicU64,
}

impl Counts {
    pub fn dynamodb(&self) -> u64 {
        self.update_item.load(Ordering::SeqCst) + self.get_item.load(Ordering::SeqCst)
    }
    pub fn ecs(&self) -> u64 {
        self.stop_task.load(Ordering::SeqCst)
            + self.describe_tasks.load(Ordering::SeqCst)
            + self.list_tasks.load(Ordering::SeqCst)
    }
    /// (total injected nanoseconds, responses) so far; two of these give the
    /// mean latency really injected in between.
    pub fn injected(&self) -> (u64, u64) {
        (self.injected_nanos.load(Ordering::SeqCst), self.injected_count.load(Ordering::SeqCst))
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (self.dynamodb(), self.ecs(), self.other.load(Ordering::SeqCst))
    }
}

pub struct Responder {
    pub url: String,
    pub counts: Arc<Counts>,
    _server: Server,
}

pub fn workers_of(run_id: &str) -> usize {
    run_id.strip_prefix('n').and_then(|r| r.split('-').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

pub fn task_arn(run_id: &str, i: usize) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task/bench/{run_id}-{i:04}")
}

fn s(v: &str) -> Value {
    json!({ "S": v })
}

pub fn run_item(key: &Value, status: &str) -> Value {
    let run_id = key["RunId"]["S"].as_str().unwrap_or("n0-x").to_owned();
    let workers: serde_json::Map<String, Value> =
        (0..workers_of(&run_id)).map(|i| (task_arn(&run_id, i), s("bench"))).collect();
    json!({
        "WorkflowArn": key["WorkflowArn"], "RunId": key["RunId"], "Status": s(status),
        "WorkflowVersion": s("1"), "Workers": {"M": workers},
        "History": {"L": [{"M": {"Event": s("Started"), "At": s("2026-11-21T00:00:00.000Z")}}]}
    })
}

fn answer(target: &str, body: &Value, counts: &Counts) -> Value {
    match target {
        "DynamoDB_20120810.UpdateItem" => {
            counts.update_item.fetch_add(1, Ordering::Relaxed);
            if body["ReturnValues"] == "ALL_NEW" {
                json!({ "Attributes": run_item(&body["Key"], "STOPPING") })
            } else {
                json!({})
            }
        }
        "DynamoDB_20120810.GetItem" => {
            counts.get_item.fetch_add(1, Ordering::Relaxed);
            json!({ "Item": run_item(&body["Key"], "STOPPING") })
        }
        "AmazonEC2ContainerServiceV20141113.StopTask" => {
            counts.stop_task.fetch_add(1, Ordering::Relaxed);
            json!({"task": {"taskArn": body["task"], "lastStatus": "RUNNING", "desiredStatus": "STOPPED"}})
        }
        "AmazonEC2ContainerServiceV20141113.DescribeTasks" => {
            counts.describe_tasks.fetch_add(1, Ordering::Relaxed);
            let tasks: Vec<Value> = body["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| json!({"taskArn": t, "lastStatus": "STOPPED", "desiredStatus": "STOPPED"}))
                .collect();
            json!({ "tasks": tasks, "failures": [] })
        }
        "AmazonEC2ContainerServiceV20141113.ListTasks" => {
            counts.list_tasks.fetch_add(1, Ordering::Relaxed);
            json!({ "taskArns": [] })
        }
        _ => {
            counts.other.fetch_add(1, Ordering::Relaxed);
            json!({})
        }
    }
}

/// Wait `d` as exactly as the OS allows. tokio's timer wheel has millisecond
/// resolution and rounds up, so `tokio::time::sleep(10 ms)` lasts about
/// 11.1 ms and would inflate the floor the handler is measured against; a
/// blocking-pool thread's `nanosleep` overshoots by tens of microseconds.
pub async fn precise_sleep(d: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(d)).await.expect("the sleep thread");
}

/// A response of the responder, once its latency has passed.
pub type Answer = std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// The responder's request handler: answers after `latency`, counting into
/// `counts`. Served over plain HTTP by [`Responder::start`], and over HTTPS by
/// the Lambda-CPU section (bench/lambda_cpu.rs).
pub fn handler(counts: Arc<Counts>, latency: Duration) -> impl Fn(Request<Incoming>) -> Answer + Send + Sync + 'static {
    move |req: Request<Incoming>| {
        let c = counts.clone();
        Box::pin(async move {
            let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let out = answer(&target, &body, &c);
            let slept = std::time::Instant::now();
            precise_sleep(latency).await;
            c.injected_nanos.fetch_add(slept.elapsed().as_nanos() as u64, Ordering::Relaxed);
            c.injected_count.fetch_add(1, Ordering::Relaxed);
            let ctype = if target.starts_with("DynamoDB") {
                "application/x-amz-json-1.0"
            } else {
                "application/x-amz-json-1.1"
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", ctype)
                    .header("x-amzn-requestid", "bench")
                    .body(Full::new(Bytes::from(out.to_string())))
                    .unwrap(),
            )
        })
    }
}

impl Responder {
    pub async fn start(latency: Duration) -> Responder {
        let counts = Arc::new(Counts::default());
        let server = serve(handler(counts.clone(), latency)).await;
        Responder { url: server.url.clone(), counts, _server: server }
    }
}
