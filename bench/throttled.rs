//! `make bench`, throttled mode: stops of many workers against a responder
//! that enforces ECS's published per-account token buckets (`StopTask`: 100
//! tokens, 40 a second, shared with `RunTask`; `DescribeTasks` and
//! `ListTasks`: 100 tokens, 20 a second; a call without a token is answered
//! HTTP 400 `ThrottlingException`) and whose tasks drain for a configurable
//! time after `StopTask`.
//!
//! The API and the finalizer run in this process as two functions would:
//! each with its own SDK clients (connection pools) and its own `Paced`
//! buckets, sharing only the responder's "account". The API handles every
//! stop (concurrently when a scenario has several runs), then the finalizer
//! gets one stream batch of every stopped run, in the order of their
//! `STOPPING` writes, as the stream would deliver it. Measured: when every worker was told to stop, when every run was
//! `STOPPED`, throttled calls, workers left running, caller errors, and the
//! lag from a run's last worker exiting to its `STOPPED`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use mwaa_stop::aws::{DynamoRunStore, EcsWorkers};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits};
use mwaa_stop::lambda::http::{Api, ApiSettings, AuthMode};
use mwaa_stop::lambda::stream::handle_batch;
use mwaa_stop::pacing::{EcsRates, Paced};
use mwaa_stop::stop::{FanOutLimits, Service};
use serde_json::{json, Value};

use crate::responder::{precise_sleep, run_item, workers_of};
use crate::responder::{Responder, Wire};

/// One ECS bucket on the wall clock.
struct Bucket {
    state: Mutex<(f64, Instant)>,
    capacity: f64,
    rate: f64,
}

impl Bucket {
    fn full(capacity: f64, rate: f64) -> Self {
        Bucket { state: Mutex::new((capacity, Instant::now())), capacity, rate }
    }

    fn admit(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.0 = (s.0 + (now - s.1).as_secs_f64() * self.rate).min(self.capacity);
        s.1 = now;
        let ok = s.0 >= 1.0;
        if ok {
            s.0 -= 1.0;
        }
        ok
    }
}

/// The account: buckets, tasks, runs, and what happened when.
struct Account {
    stop: Bucket,
    read: Bucket,
    drain: Duration,
    /// task → when it was first told to stop
    told: Mutex<HashMap<String, Instant>>,
    /// run id → when it was written STOPPED
    stopped: Mutex<HashMap<String, Instant>>,
    /// run ids in the order of their STOPPING writes: the order in which the
    /// table's stream delivers their records.
    stopping_order: Mutex<Vec<String>>,
    throttled: AtomicU64,
    stop_calls: AtomicU64,
}

impl Account {
    fn task_status(&self, task: &str, now: Instant) -> (&'static str, &'static str) {
        match self.told.lock().unwrap().get(task) {
            None => ("RUNNING", "RUNNING"),
            Some(t) if now.duration_since(*t) >= self.drain => ("STOPPED", "STOPPED"),
            Some(_) => ("RUNNING", "STOPPED"),
        }
    }

    /// The answer to one call: `None` is a throttle.
    fn answer(&self, target: &str, body: &Value) -> Option<Value> {
        let now = Instant::now();
        let run_id = body["Key"]["RunId"]["S"].as_str().unwrap_or_default().to_owned();
        Some(match target {
            "DynamoDB_20120810.UpdateItem" if body["ReturnValues"] == "ALL_NEW" => {
                self.stopping_order.lock().unwrap().push(run_id);
                json!({ "Attributes": run_item(&body["Key"], "STOPPING") })
            }
            "DynamoDB_20120810.UpdateItem" => {
                self.stopped.lock().unwrap().entry(run_id).or_insert(now);
                json!({})
            }
            "DynamoDB_20120810.GetItem" => json!({ "Item": run_item(&body["Key"], "STOPPING") }),
            "AmazonEC2ContainerServiceV20141113.StopTask" => {
                self.stop_calls.fetch_add(1, Ordering::Relaxed);
                if !self.stop.admit() {
                    return None;
                }
                let task = body["task"].as_str().unwrap_or_default().to_owned();
                self.told.lock().unwrap().entry(task.clone()).or_insert(now);
                let (last, desired) = self.task_status(&task, now);
                json!({"task": {"taskArn": task, "lastStatus": last, "desiredStatus": desired}})
            }
            "AmazonEC2ContainerServiceV20141113.DescribeTasks" => {
                if !self.read.admit() {
                    return None;
                }
                let tasks: Vec<Value> = body["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|t| {
                        let (last, desired) = self.task_status(t, now);
                        json!({"taskArn": t, "lastStatus": last, "desiredStatus": desired})
                    })
                    .collect();
                json!({ "tasks": tasks, "failures": [] })
            }
            "AmazonEC2ContainerServiceV20141113.ListTasks" => {
                if !self.read.admit() {
                    return None;
                }
                json!({ "taskArns": [] })
            }
            _ => json!({}),
        })
    }
}

async fn start(latency: Duration, drain: Duration, wire: Wire) -> (Responder, Arc<Account>) {
    let account = Arc::new(Account {
        stop: Bucket::full(100.0, 40.0),
        read: Bucket::full(100.0, 20.0),
        drain,
        told: Mutex::default(),
        stopped: Mutex::default(),
        stopping_order: Mutex::default(),
        throttled: AtomicU64::new(0),
        stop_calls: AtomicU64::new(0),
    });
    let a = account.clone();
    let handler = move |req: Request<Incoming>| {
        let a = a.clone();
        async move {
            let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let answer = a.answer(&target, &body);
            precise_sleep(latency).await;
            let ctype = if target.starts_with("DynamoDB") {
                "application/x-amz-json-1.0"
            } else {
                "application/x-amz-json-1.1"
            };
            let (status, out) = match answer {
                Some(out) => (200, out),
                None => {
                    a.throttled.fetch_add(1, Ordering::Relaxed);
                    (400, json!({"__type": "ThrottlingException", "message": "Rate exceeded"}))
                }
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", ctype)
                    .header("x-amzn-requestid", "bench")
                    .body(Full::new(Bytes::from(out.to_string())))
                    .unwrap(),
            )
        }
    };
    // The bucket keeps its own counts.
    let server = Responder::serving(wire, Arc::default(), Arc::new(handler)).await;
    (server, account)
}

/// One scenario: `runs` runs of `workers` each, stopped at the same moment.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub workers: usize,
    pub runs: usize,
    pub drain: Duration,
    /// The share of the `StopTask` refill left to `RunTask`.
    pub reserve: f64,
    /// API processes the stops are spread over (classic Lambda runs
    /// concurrent invocations in separate environments, each with its own
    /// bucket; one process serving them all is Lambda Managed Instances).
    pub api_processes: usize,
    /// How the responder speaks (each function its own connection pool).
    pub wire: Wire,
}

pub struct Outcome {
    pub all_told: Duration,
    pub stopped: Duration,
    pub floor: Duration,
    pub throttled_calls: u64,
    pub stop_calls: u64,
    pub workers_left_running: usize,
    pub caller_errors: usize,
    /// Runs the finalizer reported back as failures (not `STOPPED`).
    pub runs_not_stopped: usize,
    /// Per run: `STOPPED` minus the moment its last worker exited.
    pub lags: Vec<Duration>,
}

pub async fn run(s: &Scenario, latency: Duration) -> Outcome {
    let (server, account) = start(latency, s.drain, s.wire).await;
    let rates = EcsRates { reserve: s.reserve, ..EcsRates::default() };
    // Each function its own SDK configuration and connection pool.
    let mut apis = Vec::new();
    for _ in 0..s.api_processes.max(1) {
        let (conf, ecs) = crate::sdk(&server).await;
        apis.push(Api::new(
            Service::new(
                DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&conf), "Runs"),
                Paced::new(EcsWorkers::from_conf(&ecs), rates.for_api()),
                FanOutLimits::default(),
            ),
            ApiSettings { auth: AuthMode::Iam, deadline_margin: Duration::from_millis(500) },
        ));
    }
    let (fin_conf, fin_ecs) = crate::sdk(&server).await;
    let finalizer = Finalizer::new(
        DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&fin_conf), "Runs"),
        Paced::new(EcsWorkers::from_conf(&fin_ecs), rates.for_finalizer()),
        FinalizerLimits { wait: Duration::from_secs(600), ..FinalizerLimits::default() },
    );
    let run_ids: Vec<String> = (0..s.runs).map(|r| format!("n{}-thr{r}", s.workers)).collect();
    let start = Instant::now();
    let answers = join_all(run_ids.iter().enumerate().map(|(i, id)| {
        let req = lambda_http::request::from_str(&crate::stop_event(id).to_string()).unwrap();
        apis[i % apis.len()].handle(req)
    }))
    .await;
    let caller_errors = answers.iter().filter(|r| r.status() != 200).count();
    // Runs it could not finish come back as batch item failures; they show
    // as runs not STOPPED. The records in the order of the STOPPING writes,
    // as the stream delivers them: the runs the API told first come first.
    let stream_order = account.stopping_order.lock().unwrap().clone();
    handle_batch(&finalizer, crate::stopping_batch(&stream_order), None).await;
    let total = s.runs * s.workers;
    let told = account.told.lock().unwrap().clone();
    let stopped = account.stopped.lock().unwrap().clone();
    let all_told = told.values().max().map_or(Duration::ZERO, |t| *t - start);
    let stopped_at = stopped.values().max().map_or(Duration::ZERO, |t| *t - start);
    let lags = run_ids
        .iter()
        .filter_map(|id| {
            let last_exit = (0..workers_of(id)).filter_map(|i| told.get(&crate::responder::task_arn(id, i))).max()?;
            Some(stopped.get(id)?.saturating_duration_since(*last_exit + s.drain))
        })
        .collect();
    let beyond_burst = total.saturating_sub(100) as f64;
    Outcome {
        all_told,
        stopped: stopped_at,
        floor: latency + Duration::from_secs_f64(beyond_burst / 40.0),
        throttled_calls: account.throttled.load(Ordering::Relaxed),
        stop_calls: account.stop_calls.load(Ordering::Relaxed),
        workers_left_running: total - told.len(),
        caller_errors,
        runs_not_stopped: s.runs.saturating_sub(stopped.len()),
        lags,
    }
}
