//! A small AWS-protocol proxy in front of moto, for what moto cannot do by
//! itself: tasks that take several polls to drain, `StopTask` calls that fail.
//! It forwards every request unchanged and records what passed, in order, so a
//! test can check that `STOPPED` was not written before the workers drained.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// What the proxy does to traffic. Counters are per proxy.
#[derive(Default)]
pub struct Faults {
    /// Report a STOPPED task as `STOPPING` in its first N `DescribeTasks`
    /// answers after it stopped, as a draining container does.
    pub hold_stopping: usize,
    /// Answer the first N `StopTask` calls with an ECS `ServerException` (500).
    pub fail_stop_task: usize,
}

#[derive(Default)]
struct State {
    faults: Faults,
    /// task ARN → STOPPED answers rewritten so far
    held: HashMap<String, usize>,
    stop_task_failed: usize,
    log: Vec<String>,
}

pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: &str, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { faults, ..Default::default() }));
        let (upstream, st) = (upstream.to_owned(), state.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (http, upstream, st) = (http.clone(), upstream.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| forward(req, http.clone(), upstream.clone(), st.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Proxy { url, state, task }
    }

    /// Every request that passed, in order: the `X-Amz-Target` operation, with
    /// a note for the interesting ones (see `forward`).
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

async fn forward(
    req: Request<Incoming>,
    http: reqwest::Client,
    upstream: String,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_owned();

    if target == "StopTask" {
        let mut st = state.lock().unwrap();
        if st.stop_task_failed < st.faults.fail_stop_task {
            st.stop_task_failed += 1;
            st.log.push("StopTask:injected-500".into());
            let body = r#"{"__type":"ServerException","message":"injected by the test proxy"}"#;
            return Ok(Response::builder()
                .status(500)
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amzn-errortype", "ServerException")
                .body(Full::new(Bytes::from(body)))
                .unwrap());
        }
    }

    let mut out = http.request(parts.method.clone(), format!("{upstream}{}", parts.uri));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Response::builder().status(502).body(Full::new(Bytes::from(e.to_string()))).unwrap());
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut bytes = resp.bytes().await.unwrap_or_default();

    {
        let mut st = state.lock().unwrap();
        let entry = match target.as_str() {
            "DescribeTasks" => {
                let (rewritten, note) = hold_stopping(&bytes, &mut st);
                if let Some(b) = rewritten {
                    bytes = b;
                }
                format!("{target}:{note}")
            }
            // The finalizer's write is the one that sets `:stopped`.
            "UpdateItem" if String::from_utf8_lossy(&body).contains(":stopped") => format!("{target}:finalize"),
            _ => target.clone(),
        };
        st.log.push(entry);
    }

    let mut builder = Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            builder = builder.header(name, value);
        }
    }
    Ok(builder.body(Full::new(bytes)).unwrap())
}

/// Rewrite STOPPED tasks to STOPPING for their first `hold_stopping` answers.
/// Returns the new body (if changed) and a note: `all-stopped` when every task
/// in the answer is reported STOPPED after the rewrite, else `not-all-stopped`.
fn hold_stopping(body: &[u8], st: &mut State) -> (Option<Bytes>, String) {
    let Ok(mut json) = serde_json::from_slice::<Value>(body) else { return (None, "unreadable".into()) };
    let mut changed = false;
    let mut all_stopped = true;
    if let Some(tasks) = json.get_mut("tasks").and_then(Value::as_array_mut) {
        for t in tasks {
            let arn = t["taskArn"].as_str().unwrap_or_default().to_owned();
            if t["lastStatus"] == "STOPPED" {
                let held = st.held.entry(arn).or_insert(0);
                if *held < st.faults.hold_stopping {
                    *held += 1;
                    t["lastStatus"] = Value::from("STOPPING");
                    changed = true;
                }
            }
            if t["lastStatus"] != "STOPPED" {
                all_stopped = false;
            }
        }
    }
    let note = if all_stopped { "all-stopped" } else { "not-all-stopped" }.to_owned();
    (changed.then(|| Bytes::from(json.to_string())), note)
}
