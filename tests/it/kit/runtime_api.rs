//! A minimal Lambda Runtime API (the `2018-06-01` endpoints a runtime polls),
//! that drives the real `run-api` and `stop-finalizer` binaries: in tests that
//! kill them mid-invocation, and in `make bench` (cold start, memory,
//! concurrency). It records when the runtime first asks for work and hands
//! each queued event to whoever polls next.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};

use super::serve::{serve, Server};

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<(Instant, Bytes)>>>>;

pub struct RuntimeApi {
    pub addr: String,
    queue: mpsc::UnboundedSender<(String, Bytes)>,
    pending: Pending,
    first_poll: Arc<Mutex<Option<Instant>>>,
    _server: Server,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let (tx, rx) = mpsc::unbounded_channel::<(String, Bytes)>();
        let rx = Arc::new(AsyncMutex::new(rx));
        let pending: Pending = Arc::default();
        let first_poll: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (p, f) = (pending.clone(), first_poll.clone());
        let server = serve(move |req: Request<Incoming>| answer(req, rx.clone(), p.clone(), f.clone())).await;
        RuntimeApi { addr: server.addr.clone(), queue: tx, pending, first_poll, _server: server }
    }

    /// When the runtime first polled for an event.
    pub fn first_poll(&self) -> Option<Instant> {
        *self.first_poll.lock().unwrap()
    }

    /// Queue an event; resolves with the time and body of its response.
    pub fn invoke(&self, id: String, event: Bytes) -> oneshot::Receiver<(Instant, Bytes)> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), tx);
        self.queue.send((id, event)).unwrap();
        rx
    }
}

async fn answer(
    req: Request<Incoming>,
    rx: Arc<AsyncMutex<mpsc::UnboundedReceiver<(String, Bytes)>>>,
    pending: Pending,
    first_poll: Arc<Mutex<Option<Instant>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path.ends_with("/runtime/invocation/next") {
        first_poll.lock().unwrap().get_or_insert_with(Instant::now);
        let next = rx.lock().await.recv().await;
        let Some((id, event)) = next else {
            return Ok(Response::builder().status(500).body(Full::default()).unwrap());
        };
        let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(30);
        return Ok(Response::builder()
            .header("lambda-runtime-aws-request-id", id)
            .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
            .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
            .header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0")
            .body(Full::new(event))
            .unwrap());
    }
    let at = Instant::now();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    // .../runtime/invocation/{id}/response or /error
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() >= 5 && parts[parts.len() - 3] == "invocation" {
        let id = parts[parts.len() - 2].to_owned();
        if let Some(tx) = pending.lock().unwrap().remove(&id) {
            let _ = tx.send((at, body));
        }
    } else {
        eprintln!("runtime api: {path}: {}", String::from_utf8_lossy(&body));
    }
    Ok(Response::builder().status(202).body(Full::default()).unwrap())
}
