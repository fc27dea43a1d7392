//! A fault-injecting AWS-protocol proxy in front of moto (moto has no fault
//! knob). It forwards every request unchanged, except where a test's rules say
//! otherwise, and records what passed, in order.
//!
//! Rules match on the operation of `X-Amz-Target` (`UpdateItem`, `StopTask`,
//! ...) and optionally on a substring of the request body, and fire for the
//! Nth matching call, the first N, every call, every k-th, or a seeded
//! pseudo-random fraction (deterministic: the same seed gives the same calls).
//! Actions: the service's own throttling error, an HTTP 500 in the service's
//! shape, added latency, a dropped connection (before or after the request
//! reached moto), or a hold until the test releases it.
//!
//! One action rewrites the answer instead: [`Action::HoldStopping`] reports
//! STOPPED tasks of `DescribeTasks` as `STOPPING` for a while (draining).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::Value;
use tokio::sync::watch;

use super::serve::{serve, BoxError, Server};

/// Which matching calls a rule fires on (counted per rule, from 1).
#[derive(Debug, Clone, Copy)]
pub enum When {
    Always,
    /// Only the Nth matching call.
    Nth(usize),
    /// The first N matching calls.
    FirstN(usize),
    /// Calls k, 2k, 3k, ...
    EveryKth(usize),
    /// About `per_mille`/1000 of the calls, chosen by a seeded hash of the
    /// call's index: deterministic for a given seed.
    Fraction {
        per_mille: u64,
        seed: u64,
    },
}

impl When {
    fn fires(self, n: usize) -> bool {
        match self {
            When::Always => true,
            When::Nth(k) => n == k,
            When::FirstN(k) => n <= k,
            When::EveryKth(k) => k > 0 && n.is_multiple_of(k),
            When::Fraction { per_mille, seed } => splitmix64(seed ^ n as u64) % 1000 < per_mille,
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What a firing rule does to the call.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// The service's own throttling error: DynamoDB 400
    /// `ProvisionedThroughputExceededException`, ECS 400 `ThrottlingException`.
    Throttle,
    /// HTTP 500: DynamoDB `InternalServerError`, ECS `ServerException`.
    ServerError,
    /// Wait, then forward.
    Delay(Duration),
    /// Close the connection without answering; the request never reaches moto.
    Drop,
    /// Forward (moto applies it), then close the connection without answering:
    /// the caller cannot know the request succeeded.
    DropAfterForward,
    /// Wait until [`Proxy::release`], then forward; dropped if the proxy is
    /// dropped first (a request still in flight when its caller died).
    Hold,
    /// Forward, then report each STOPPED task of a `DescribeTasks` answer as
    /// `STOPPING` in its first N answers after it stopped, as a draining
    /// container does.
    HoldStopping(usize),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub op: String,
    pub body_contains: Option<String>,
    pub when: When,
    pub action: Action,
}

impl Rule {
    pub fn new(op: &str, when: When, action: Action) -> Rule {
        Rule { op: op.to_owned(), body_contains: None, when, action }
    }

    /// Match only requests whose body contains `needle` (e.g. `:stopped`, the
    /// finalizer's write).
    pub fn body_contains(mut self, needle: &str) -> Rule {
        self.body_contains = Some(needle.to_owned());
        self
    }
}

/// A marker put into every injected error message: tests check it never
/// reaches a caller.
pub const INJECTED_DETAIL: &str = "injected by the test proxy: internal detail arn:aws:iam::999999999999:role/secret";

#[derive(Default)]
struct State {
    rules: Vec<(Rule, usize)>,
    /// task ARN → STOPPED answers rewritten so far
    held: HashMap<String, usize>,
    log: Vec<String>,
}

pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    release: watch::Sender<Gate>,
    _server: Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Closed,
    Released,
    Shutdown,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.release.send(Gate::Shutdown);
    }
}

impl Proxy {
    /// A proxy applying `rules` (first firing rule wins).
    pub async fn with_rules(upstream: &str, rules: Vec<Rule>) -> Proxy {
        let rules = rules.into_iter().map(|r| (r, 0)).collect();
        let state = Arc::new(Mutex::new(State { rules, ..Default::default() }));
        let (release, gate) = watch::channel(Gate::Closed);
        let (upstream, st, http) = (upstream.to_owned(), state.clone(), reqwest::Client::new());
        let server = serve(move |req| forward(req, http.clone(), upstream.clone(), st.clone(), gate.clone())).await;
        Proxy { url: server.url.clone(), state, release, _server: server }
    }

    /// Add a rule after the existing ones.
    pub fn add_rule(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push((rule, 0));
    }

    /// Remove every rule: from now on everything passes.
    pub fn clear_rules(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Let every held request (and every later one) through.
    pub fn release(&self) {
        let _ = self.release.send(Gate::Released);
    }

    /// Every request that passed, in order: the `X-Amz-Target` operation, with
    /// a note for the interesting ones (`UpdateItem:finalize`,
    /// `DescribeTasks:all-stopped`, `StopTask:injected-500`, `UpdateItem:held`, ...).
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// How many log entries equal `entry`.
    pub fn count(&self, entry: &str) -> usize {
        self.state.lock().unwrap().log.iter().filter(|e| *e == entry).count()
    }

    /// Wait until the log holds `n` entries equal to `entry`, or panic.
    pub async fn wait_for(&self, entry: &str, n: usize, within: Duration) {
        assert!(self.seen(entry, n, within).await, "proxy never saw {n} × {entry} within {within:?}: {:?}", self.log());
    }

    /// Wait until the log holds `n` entries equal to `entry`; false if it did
    /// not within `within`.
    pub async fn seen(&self, entry: &str, n: usize, within: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.count(entry) < n {
            if start.elapsed() > within {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

fn injected(service: &str, action: Action) -> Response<Full<Bytes>> {
    let dynamodb = service.starts_with("DynamoDB");
    let (status, type_name) = match (action, dynamodb) {
        (Action::Throttle, true) => (400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"),
        (Action::Throttle, false) => (400, "ThrottlingException"),
        (_, true) => (500, "com.amazonaws.dynamodb.v20120810#InternalServerError"),
        (_, false) => (500, "ServerException"),
    };
    let body = serde_json::json!({"__type": type_name, "message": INJECTED_DETAIL}).to_string();
    let content_type = if dynamodb { "application/x-amz-json-1.0" } else { "application/x-amz-json-1.1" };
    let short = type_name.rsplit('#').next().unwrap_or(type_name);
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-errortype", short)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn forward(
    req: Request<Incoming>,
    http: reqwest::Client,
    upstream: String,
    state: Arc<Mutex<State>>,
    mut gate: watch::Receiver<Gate>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let full_target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let service = full_target.split('.').next().unwrap_or("").to_owned();
    let target = full_target.rsplit('.').next().unwrap_or("").to_owned();

    let action = {
        let mut st = state.lock().unwrap();
        let text = String::from_utf8_lossy(&body);
        let mut chosen = None;
        for (rule, count) in st.rules.iter_mut() {
            if rule.op != target || rule.body_contains.as_deref().is_some_and(|n| !text.contains(n)) {
                continue;
            }
            *count += 1;
            if chosen.is_none() && rule.when.fires(*count) {
                chosen = Some(rule.action);
            }
        }
        chosen
    };

    let mut drop_after = false;
    let mut hold_for = 0;
    match action {
        None => {}
        Some(Action::HoldStopping(n)) => hold_for = n,
        Some(a @ (Action::Throttle | Action::ServerError)) => {
            let note = if matches!(a, Action::Throttle) { "injected-throttle" } else { "injected-500" };
            state.lock().unwrap().log.push(format!("{target}:{note}"));
            return Ok(injected(&service, a));
        }
        Some(Action::Delay(d)) => {
            state.lock().unwrap().log.push(format!("{target}:delayed"));
            tokio::time::sleep(d).await;
        }
        Some(Action::Drop) => {
            state.lock().unwrap().log.push(format!("{target}:dropped"));
            return Err("connection dropped by the test proxy".into());
        }
        Some(Action::DropAfterForward) => drop_after = true,
        Some(Action::Hold) => {
            state.lock().unwrap().log.push(format!("{target}:held"));
            let gate_now = loop {
                let g = *gate.borrow_and_update();
                if g != Gate::Closed {
                    break g;
                }
                if gate.changed().await.is_err() {
                    break Gate::Shutdown;
                }
            };
            if gate_now == Gate::Shutdown {
                state.lock().unwrap().log.push(format!("{target}:held-dropped"));
                return Err("held request dropped: proxy shut down".into());
            }
            state.lock().unwrap().log.push(format!("{target}:released"));
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
                let (rewritten, note) = hold_stopping(&bytes, &mut st, hold_for);
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
        if drop_after {
            st.log.push(format!("{target}:forwarded-then-dropped"));
        }
    }
    if drop_after {
        return Err("answer dropped by the test proxy".into());
    }

    let mut builder = Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            builder = builder.header(name, value);
        }
    }
    Ok(builder.body(Full::new(bytes)).unwrap())
}

/// Rewrite STOPPED tasks to STOPPING for their first `hold_for` answers.
/// Returns the new body (if changed) and a note: `all-stopped` when every task
/// in the answer is reported STOPPED after the rewrite, else `not-all-stopped`.
fn hold_stopping(body: &[u8], st: &mut State, hold_for: usize) -> (Option<Bytes>, String) {
    let Ok(mut json) = serde_json::from_slice::<Value>(body) else { return (None, "unreadable".into()) };
    let mut changed = false;
    let mut all_stopped = true;
    if let Some(tasks) = json.get_mut("tasks").and_then(Value::as_array_mut) {
        for t in tasks {
            let arn = t["taskArn"].as_str().unwrap_or_default().to_owned();
            if t["lastStatus"] == "STOPPED" {
                let held = st.held.entry(arn).or_insert(0);
                if *held < hold_for {
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
