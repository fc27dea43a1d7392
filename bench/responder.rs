//! An AWS-protocol endpoint that answers exactly what a stop and a finalize
//! send (DynamoDB `UpdateItem` / `GetItem`, ECS `StopTask` / `DescribeTasks` /
//! `ListTasks`) after a fixed service latency `D`, and counts every request.
//!
//! Benchmark scaffolding, not product code: moto's own per-request time (and
//! its GIL) would blur the round-trip floor the benchmark measures against.
//!
//! A run's worker count is encoded in its id: `n{N}-...` has N workers.
//!
//! Served on the wire a [`Wire`] names: plain HTTP/1.1, or HTTPS (rustls, an
//! RSA-2048 chain made at bench start, trusted through `SSL_CERT_FILE`)
//! offering `h2` and `http/1.1` by ALPN, or `http/1.1` only; DynamoDB and ECS
//! on two ports, so that, as on AWS, they are two hosts with their own
//! connections.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::serve::{serve, Server};

#[derive(Default, Debug)]
pub struct Counts {
    pub update_item: AtomicU64,
    pub get_item: AtomicU64,
    pub stop_task: AtomicU64,
    pub describe_tasks: AtomicU64,
    pub list_tasks: AtomicU64,
    pub other: AtomicU64,
    /// Connections accepted on ECS's port (TLS wires; those that
    /// negotiated `h2` counted again in `ecs_h2_connections`).
    pub ecs_connections: AtomicU64,
    pub ecs_h2_connections: AtomicU64,
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
    /// DynamoDB's endpoint.
    pub url: String,
    /// ECS's endpoint (another port: another host's connections).
    pub ecs_url: String,
    pub wire: Wire,
    pub counts: Arc<Counts>,
    _servers: [Listener; 2],
}

/// How an endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Plain HTTP/1.1.
    Http,
    /// HTTPS, ALPN `h2` and `http/1.1` offered (HTTP/2 chosen by clients
    /// that offer it).
    H2,
    /// HTTPS, ALPN `http/1.1` only.
    Http1,
}

impl Wire {
    pub fn label(self) -> &'static str {
        match self {
            Wire::Http => "HTTP",
            Wire::H2 => "HTTPS h2",
            Wire::Http1 => "HTTPS http/1.1",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Wire::Http => "http",
            Wire::H2 => "h2",
            Wire::Http1 => "http1",
        }
    }

    pub fn tls(self) -> bool {
        self != Wire::Http
    }

    /// `http`, `h2`, `http1`.
    pub fn parse(v: &str) -> Wire {
        match v.trim() {
            "http" => Wire::Http,
            "h2" => Wire::H2,
            "http1" => Wire::Http1,
            other => panic!("a wire is http, h2 or http1, not {other:?}"),
        }
    }
}

/// A listening endpoint, stopped on drop.
enum Listener {
    /// Kept for its drop, which stops accepting.
    Plain {
        _server: Server,
    },
    Tls(tokio::task::JoinHandle<()>),
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Tls(task) = self {
            task.abort();
        }
    }
}

/// The bench's certificate chain (an RSA-2048 CA and a leaf for 127.0.0.1,
/// as AWS endpoints present RSA-2048 chains) and the trust bundle that
/// carries its CA: the system bundle plus it, so a client loads a full
/// trust store as on Lambda.
struct BenchTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_file: PathBuf,
}

static TLS: OnceLock<BenchTls> = OnceLock::new();

fn bench_tls() -> &'static BenchTls {
    TLS.get_or_init(|| {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "mwaa-stop bench CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key (aws-lc-rs)");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        leaf_params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let system = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
        let ca_file = std::env::temp_dir().join(format!("mwaa-bench-ca-{}.pem", std::process::id()));
        std::fs::write(&ca_file, format!("{system}\n{}", ca_cert.pem())).unwrap();
        BenchTls { chain: vec![leaf.der().clone(), ca_cert.der().clone()], key, ca_file }
    })
}

/// The trust bundle with the bench's CA (for `SSL_CERT_FILE`).
pub fn ca_file() -> PathBuf {
    bench_tls().ca_file.clone()
}

/// Removes the trust bundle written for this process, if any.
pub fn remove_ca_file() {
    if let Some(tls) = TLS.get() {
        let _ = std::fs::remove_file(&tls.ca_file);
    }
}

/// Serve `handler` on a free loopback port over `wire`; its URL.
async fn serve_on<F, Fut>(wire: Wire, handler: Arc<F>, counts: Option<Arc<Counts>>) -> (String, Listener)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = match wire {
        Wire::Http => {
            let server = serve(move |req| handler(req)).await;
            return (server.url.clone(), Listener::Plain { _server: server });
        }
        Wire::H2 | Wire::Http1 => TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port"),
    };
    let tls = bench_tls();
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())
        .expect("the bench certificate");
    config.alpn_protocols =
        if wire == Wire::H2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let (acceptor, handler, counts) = (acceptor.clone(), handler.clone(), counts.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                if let Some(c) = &counts {
                    c.ecs_connections.fetch_add(1, Ordering::Relaxed);
                    c.ecs_h2_connections.fetch_add(u64::from(h2), Ordering::Relaxed);
                }
                let svc = service_fn(move |req: Request<Incoming>| handler(req));
                let io = TokioIo::new(tls);
                if h2 {
                    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    builder.max_concurrent_streams(1000);
                    let _ = builder.serve_connection(io, svc).await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                }
            });
        }
    });
    (format!("https://{addr}"), Listener::Tls(task))
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
    pub async fn start(latency: Duration, wire: Wire) -> Responder {
        let counts = Arc::new(Counts::default());
        Responder::serving(wire, counts.clone(), Arc::new(handler(counts, latency))).await
    }

    /// `handler` (counting into `counts`) on two ports over `wire`.
    pub async fn serving<F, Fut>(wire: Wire, counts: Arc<Counts>, handler: Arc<F>) -> Responder
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
    {
        let (url, ddb) = serve_on(wire, handler.clone(), None).await;
        let (ecs_url, ecs) = serve_on(wire, handler, Some(counts.clone())).await;
        Responder { url, ecs_url, wire, counts, _servers: [ddb, ecs] }
    }

    /// `SSL_CERT_FILE` for a client of this responder.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.wire.tls().then(ca_file)
    }
}
