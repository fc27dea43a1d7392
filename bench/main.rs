//! `make bench`: what a stop costs, measured in one run on this machine.
//!
//! 1. Stop latency vs workers (the real handler and SDK clients against an
//!    AWS-protocol responder with a fixed service latency D), p50/p99 and the
//!    ratio to the round-trip floor D × (1 + ceil(N / concurrency)); then the
//!    same through the Lambda runtime, driving the release binary.
//! 2. Requests per stop, counted at the responder.
//! 3. Cold start of the release binary under a minimal Lambda Runtime API.
//! 4. Binary sizes and peak RSS during an N = 500 stop.
//! 5. Finalizer throughput: 100 STOPPING runs × 10 workers in one batch.
//! 6. Server-side throughput of one `run-api` process with managed concurrency.
//! 7. The release binary under Lambda's CPU share of a memory size (a cgroup
//!    CPU quota), over HTTP and HTTPS, warm and cold (bench/lambda_cpu.rs).
//! 8. Stops of 250 to 2,000 workers, and 100 runs at once, under ECS's real
//!    rate limits (a responder enforcing its buckets, bench/throttled.rs).
//! 9. Authorization: a Cedar decision per request and the load of a policy
//!    set, for the default, the three examples and 100 policies (bench/authz.rs).
//!
//! Sections 1, 7 and 8 run against each responder wire (bench/responder.rs):
//! plain HTTP, HTTPS offering `h2` (ALPN `h2`, `http/1.1`) and HTTPS offering
//! `http/1.1` only, side by side; section 1 also with `StopTask` through the
//! SDK client alone (`ECS_DIRECT_STOP_TASK=false`) and through an SDK client
//! with the SDK's defaults.
//!
//! `--smoke` runs one tiny configuration (for `make test`); it never judges a
//! number. `--only 1,7,8` runs only the sections named (of 1, 7, 8 and 9),
//! printed and written to `only.{md,json}` in `--out`; `--wires http,h2,http1`
//! picks the wires of sections 1 and 8. `--latency-only` is `--only 1`,
//! `--throttled-only` `--only 8`, `--authz-only` `--only 9`;
//! `--lambda-cpu-only` runs section 7 alone into `lambda_cpu.{md,json}`;
//! `--latency-ms D` sets D. Results: printed, and written to
//! bench/results/latest.{md,json}.

mod authz;
mod lambda_cpu;
mod responder;
mod throttled;
// Shared with the crash tests, which drive the same binaries.
#[path = "../tests/it/kit/runtime_api.rs"]
mod runtime_api;
#[path = "../tests/it/kit/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use hyper::body::Bytes;
use mwaa_stop::aws::{DynamoRunStore, EcsWorkers};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits};
use mwaa_stop::lambda::http::{Api, ApiSettings, AuthMode};
use mwaa_stop::lambda::stream::handle_batch;
use mwaa_stop::pacing::{EcsRates, Paced};
use mwaa_stop::stop::{FanOutLimits, Service};
use responder::{workers_of, Responder, Wire};
use runtime_api::RuntimeApi;
use serde_json::{json, Value};

const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/bench-abcDEF1234";
/// The API's `StopTask` wave: ECS's burst.
const CONCURRENCY: usize = 100;
/// The latency rows measure a stop that meets a rested ECS bucket: the
/// pacing is in the path, its refill made fast enough that back-to-back
/// stops of the row never wait for it (the throttled section measures the
/// published rates).
const RESTED_STOP_RATE: u32 = 10_000;

struct Opts {
    smoke: bool,
    /// Only these sections (of 1, 7, 8, 9), printed and written to
    /// `only.{md,json}`: the quick loop for investigating a ratio.
    only: Option<Vec<u32>>,
    /// The wires of sections 1 and 8.
    wires: Vec<Wire>,
    latency: Duration,
    out: PathBuf,
}

impl Opts {
    fn runs(&self, section: u32) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&section))
    }
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let only = value("--only")
        .map(|v| v.split(',').map(|s| s.trim().parse().expect("--only 1,7,8")).collect())
        .or(flag("--latency-only").then(|| vec![1]))
        .or(flag("--throttled-only").then(|| vec![8]))
        .or(flag("--authz-only").then(|| vec![9]));
    let smoke = flag("--smoke");
    let wires = match value("--wires") {
        Some(v) => v.split(',').map(Wire::parse).collect(),
        None if smoke => vec![Wire::Http],
        None => vec![Wire::Http, Wire::H2, Wire::Http1],
    };
    Opts {
        smoke,
        only,
        wires,
        latency: Duration::from_millis(value("--latency-ms").map_or(10, |v| v.parse().expect("--latency-ms N"))),
        out: PathBuf::from(value("--out").unwrap_or_else(|| "bench/results".into())),
    }
}

/// The SDK configuration of a function of the bench (the product's SDK
/// settings: its one HTTP client, retries and timeouts) against `r`:
/// (DynamoDB's, ECS's), two endpoints on one HTTP client as on AWS.
async fn sdk(r: &Responder) -> (aws_config::SdkConfig, aws_config::SdkConfig) {
    let settings = mwaa_stop::config::ApiConfig::from_map(&Default::default()).expect("the defaults").sdk;
    let conf = settings
        .apply(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new("us-east-1"))
        .endpoint_url(&r.url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await;
    let ecs = conf.to_builder().endpoint_url(&r.ecs_url).build();
    (conf, ecs)
}

/// How a bench function sends `StopTask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopPath {
    /// The direct path, then the SDK client (the product's default).
    Direct,
    /// The product's SDK client alone (`ECS_DIRECT_STOP_TASK=false`: its
    /// endpoint resolved once, stalled-stream protection off).
    Sdk,
    /// An SDK client with the SDK's defaults (endpoint rules on every call,
    /// stalled-stream protection on).
    SdkDefaults,
}

impl StopPath {
    fn key(self) -> &'static str {
        match self {
            StopPath::Direct => "direct",
            StopPath::Sdk => "sdk",
            StopPath::SdkDefaults => "sdk-defaults",
        }
    }

    fn workers(self, ecs: &aws_config::SdkConfig) -> EcsWorkers {
        match self {
            StopPath::Direct => EcsWorkers::from_conf_with(ecs, true),
            StopPath::Sdk => EcsWorkers::from_conf_with(ecs, false),
            StopPath::SdkDefaults => EcsWorkers::new(aws_sdk_ecs::Client::from_conf(
                mwaa_stop::aws::no_sdk_retry_of_throttles(aws_sdk_ecs::config::Builder::from(ecs)).build(),
            )),
        }
    }
}

/// An HTTP API (payload 2.0) stop event with an IAM identity.
fn stop_event(run_id: &str) -> Value {
    json!({
        "version": "2.0", "routeKey": "POST /", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "application/x-amz-json-1.0", "x-amz-target": "AmazonMWAAServerless.StopWorkflowRun"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench", "domainPrefix": "bench",
            "authorizer": {"iam": {"accountId": "123456789012", "userArn": "arn:aws:iam::123456789012:user/bench",
                                    "callerId": "AIDA", "accessKey": "AKIA", "userId": "AIDA"}},
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": "POST /", "stage": "$default", "time": "21/Nov/2026:00:00:00 +0000", "timeEpoch": 0
        },
        "body": json!({"WorkflowArn": ARN, "RunId": run_id}).to_string(),
        "isBase64Encoded": false
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// user + system CPU time of this process so far (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.get(stat.rfind(')').map_or(0, |i| i + 2)..).unwrap_or("").split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean_injected(before: (u64, u64), after: (u64, u64)) -> Duration {
    Duration::from_nanos((after.0 - before.0) / (after.1 - before.1).max(1))
}

struct LatencyRow {
    n: usize,
    runs: usize,
    p50: Duration,
    p99: Duration,
    /// The latency the responder really injected during this row.
    d_eff: Duration,
    /// CPU time of the bench process per stop (handler, SDK clients and the
    /// responder together; 10 ms tick resolution over the whole row).
    cpu_per_stop: Duration,
    /// The old floor: D × (1 + ceil(N / 32)), waves of the old concurrency.
    floor: Duration,
    /// The physical floor: D × (1 + ceil(N / 100)), one write and ECS's burst.
    physical_floor: Duration,
    naive_floor: Duration,
    dynamodb_requests: u64,
    ecs_requests: u64,
}

impl LatencyRow {
    /// The cells N, runs, p50, p99, injected D, physical floor, p50 / floor
    /// and p99 / floor of a Markdown row.
    fn physical_cells(&self) -> String {
        format!(
            "{} | {} | {:.2} | {:.2} | {:.3} | {:.1} | {:.3} | {:.3}",
            self.n,
            self.runs,
            ms(self.p50),
            ms(self.p99),
            ms(self.d_eff),
            ms(self.physical_floor),
            ms(self.p50) / ms(self.physical_floor),
            ms(self.p99) / ms(self.physical_floor)
        )
    }
}

/// (workers, runs) of each latency row.
fn latency_plan(o: &Opts) -> &'static [(usize, usize)] {
    if o.smoke {
        &[(0, 3), (3, 3)]
    } else {
        &[(0, 400), (1, 400), (10, 300), (100, 150)]
    }
}

/// The rows of the variants (wire, path) beside the plain direct one: no
/// N = 0 row (it sends no StopTask).
fn variant_plan(o: &Opts) -> &'static [(usize, usize)] {
    if o.smoke {
        &[(3, 3)]
    } else {
        &[(1, 400), (10, 300), (100, 150)]
    }
}

/// One row per N: `stop(run_id)` performs one stop of the run the responder
/// gives N workers, and returns how long it took.
async fn latency_rows<F, Fut>(o: &Opts, responder: &Responder, stop: F) -> Vec<LatencyRow>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    latency_rows_of(o, latency_plan(o), responder, stop).await
}

async fn latency_rows_of<F, Fut>(
    o: &Opts,
    plan: &[(usize, usize)],
    responder: &Responder,
    mut stop: F,
) -> Vec<LatencyRow>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut rows = Vec::new();
    for &(n, runs) in plan {
        // Warm the connection pools first: the steady state is what is measured.
        for i in 0..5 {
            stop(format!("n{n}-warm{i}")).await;
        }
        let mut samples = Vec::with_capacity(runs);
        let (mut ddb, mut ecs) = (0, 0);
        let before = responder.counts.injected();
        let cpu_before = process_cpu();
        for i in 0..runs {
            let (d0, e0, _) = responder.counts.snapshot();
            samples.push(stop(format!("n{n}-{i}")).await);
            let (d1, e1, _) = responder.counts.snapshot();
            (ddb, ecs) = (d1 - d0, e1 - e0);
            assert_eq!(workers_of(&format!("n{n}-{i}")), n);
        }
        let cpu = process_cpu().saturating_sub(cpu_before);
        samples.sort();
        let waves = n.div_ceil(CONCURRENCY) as u32;
        let old_waves = n.div_ceil(32) as u32;
        rows.push(LatencyRow {
            cpu_per_stop: cpu / runs as u32,
            n,
            runs,
            p50: percentile(&samples, 0.5),
            p99: percentile(&samples, 0.99),
            d_eff: mean_injected(before, responder.counts.injected()),
            floor: o.latency * (1 + old_waves),
            physical_floor: o.latency * (1 + waves),
            naive_floor: o.latency * (2 + n as u32),
            dynamodb_requests: ddb,
            ecs_requests: ecs,
        });
    }
    rows
}

fn rested_rates() -> EcsRates {
    EcsRates { stop_rate: f64::from(RESTED_STOP_RATE), ..EcsRates::default() }
}

/// The handler in process, with the real SDK clients: what the code costs.
async fn stop_latency(o: &Opts, responder: &Responder) -> Vec<LatencyRow> {
    stop_latency_of(o, latency_plan(o), responder, StopPath::Direct).await
}

async fn stop_latency_of(o: &Opts, plan: &[(usize, usize)], responder: &Responder, path: StopPath) -> Vec<LatencyRow> {
    let (conf, ecs) = sdk(responder).await;
    let api = Api::new(
        Service::new(
            DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&conf), "Runs"),
            Paced::new(path.workers(&ecs), rested_rates().for_api()),
            FanOutLimits { concurrency: CONCURRENCY, budget: Duration::from_secs(30) },
        ),
        ApiSettings { auth: AuthMode::Iam, deadline_margin: Duration::from_millis(500) },
    );
    let api = &api;
    latency_rows_of(o, plan, responder, |run_id| async move {
        let req = lambda_http::request::from_str(&stop_event(&run_id).to_string()).unwrap();
        let t = Instant::now();
        let resp = api.handle(req).await;
        let took = t.elapsed();
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
        took
    })
    .await
}

/// The release `run-api` binary as Lambda runs it: each stop is an event
/// handed out by a Runtime API, timed until the function posts its response
/// (event decoding, the handler, response encoding and the runtime's two
/// local HTTP hops included).
async fn stop_latency_via_runtime(o: &Opts, responder: &Responder) -> Vec<LatencyRow> {
    let runtime = RuntimeApi::start().await;
    let mut child = spawn_function(&binary("run-api"), &runtime, responder, 1);
    wait_first_poll(&runtime).await;
    let runtime = &runtime;
    let rows = latency_rows(o, responder, |run_id| async move {
        let event = Bytes::from(stop_event(&run_id).to_string());
        let t = Instant::now();
        let (done, body) = runtime.invoke(format!("lat-{run_id}"), event).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("STOPPING"), "{body:?}");
        done - t
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    rows
}

/// The Markdown table of latency rows, and the same rows as JSON.
fn latency_table(md: &mut String, rows: &[LatencyRow]) -> Value {
    md.push_str("| workers N | runs | p50 ms | p99 ms | injected D ms | physical floor ms | p50 / physical | p99 / physical | old floor ms | p50 / old | naive floor ms | DynamoDB req | ECS req | bench CPU per stop ms |\n");
    md.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut jrows = Vec::new();
    for r in rows {
        md.push_str(&format!(
            "| {} | {:.1} | {:.3} | {:.0} | {} | {} | {:.2} |\n",
            r.physical_cells(),
            ms(r.floor),
            ms(r.p50) / ms(r.floor),
            ms(r.naive_floor),
            r.dynamodb_requests,
            r.ecs_requests,
            ms(r.cpu_per_stop)
        ));
        jrows.push(json!({"workers": r.n, "runs": r.runs, "p50_ms": ms(r.p50), "p99_ms": ms(r.p99),
            "injected_d_ms": ms(r.d_eff), "physical_floor_ms": ms(r.physical_floor),
            "p50_physical_ratio": ms(r.p50) / ms(r.physical_floor), "p99_physical_ratio": ms(r.p99) / ms(r.physical_floor),
            "floor_ms": ms(r.floor), "p50_ratio": ms(r.p50) / ms(r.floor), "p99_ratio": ms(r.p99) / ms(r.floor),
            "naive_floor_ms": ms(r.naive_floor),
            "dynamodb_requests": r.dynamodb_requests, "ecs_requests": r.ecs_requests, "bench_cpu_per_stop_ms": ms(r.cpu_per_stop)}));
    }
    json!(jrows)
}

struct FinalizerRow {
    runs: usize,
    workers_each: usize,
    elapsed: Duration,
    floor: Duration,
}

async fn finalizer_throughput(o: &Opts, responder: &Responder) -> FinalizerRow {
    let (conf, ecs) = sdk(responder).await;
    let limits = FinalizerLimits::default();
    let f = Finalizer::new(
        DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&conf), "Runs"),
        Paced::new(EcsWorkers::from_conf(&ecs), EcsRates::default().for_finalizer()),
        limits,
    );
    let (runs, workers_each): (usize, usize) = if o.smoke { (4, 2) } else { (100, 10) };
    let batch = |tag: &str| {
        let ids: Vec<String> = (0..runs).map(|i| format!("n{workers_each}-{tag}{i}")).collect();
        stopping_batch(&ids)
    };
    let _ = handle_batch(&f, batch("warm"), None).await;
    let t = Instant::now();
    let resp = handle_batch(&f, batch("run"), None).await;
    let elapsed = t.elapsed();
    assert!(resp.batch_item_failures.is_empty());
    // GetItem, DescribeTasks, UpdateItem per run, `run_concurrency` runs at a time.
    let floor = o.latency * 3 * runs.div_ceil(limits.run_concurrency) as u32;
    FinalizerRow { runs, workers_each, elapsed, floor }
}

/// A stream batch with one `STOPPING` record per run id, as the table's
/// stream delivers them to the finalizer.
fn stopping_batch(run_ids: &[String]) -> aws_lambda_events::event::dynamodb::Event {
    let records: Vec<Value> = run_ids
        .iter()
        .enumerate()
        .map(|(i, run_id)| {
            let key = json!({"WorkflowArn": {"S": ARN}, "RunId": {"S": run_id}});
            let mut image = key.clone();
            image["Status"] = json!({"S": "STOPPING"});
            json!({"eventID": format!("{i}"), "eventName": "MODIFY", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                   "dynamodb": {"ApproximateCreationDateTime": 0, "Keys": key, "NewImage": image,
                                "SequenceNumber": format!("{i}"), "SizeBytes": 1, "StreamViewType": "NEW_AND_OLD_IMAGES"}})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn binary(name: &str) -> PathBuf {
    binary_in("release", name)
}

/// A binary built with a cargo profile (`release`, or a candidate profile).
fn binary_in(profile: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(profile).join(name)
}

fn spawn_function(
    bin: &Path,
    runtime: &RuntimeApi,
    responder: &Responder,
    max_concurrency: usize,
) -> std::process::Child {
    function_command(bin, runtime, responder, max_concurrency)
        .spawn()
        .expect("start the release binary (make bench builds it)")
}

/// The function's command line and environment, its AWS endpoint `endpoint_url`.
fn function_command(bin: &Path, runtime: &RuntimeApi, responder: &Responder, max_concurrency: usize) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &runtime.addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", "run-api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_LAMBDA_MAX_CONCURRENCY", max_concurrency.to_string())
        .env("AWS_ENDPOINT_URL", &responder.url)
        .env("AWS_ENDPOINT_URL_ECS", &responder.ecs_url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("RUNS_TABLE", "Runs")
        .env("ECS_STOP_RATE", RESTED_STOP_RATE.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(ca) = responder.ca_file() {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd
}

async fn wait_first_poll(runtime: &RuntimeApi) -> Instant {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(t) = runtime.first_poll() {
            return t;
        }
        assert!(Instant::now() < give_up, "the function never polled the runtime API");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

struct ColdStart {
    starts: usize,
    init_median: Duration,
    first_invoke_median: Duration,
}

async fn cold_start(bin: &Path, responder: &Responder, starts: usize) -> ColdStart {
    let (mut inits, mut firsts) = (Vec::new(), Vec::new());
    for i in 0..starts {
        let runtime = RuntimeApi::start().await;
        let t0 = Instant::now();
        let mut child = spawn_function(bin, &runtime, responder, 1);
        let polled = wait_first_poll(&runtime).await;
        let sent = Instant::now();
        let (done, body) = runtime
            .invoke(format!("cold{i}"), Bytes::from(stop_event(&format!("n1-cold{i}")).to_string()))
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("STOPPING"), "{body:?}");
        inits.push(polled - t0);
        firsts.push(done - sent);
        let _ = child.kill();
        let _ = child.wait();
    }
    inits.sort();
    firsts.sort();
    ColdStart { starts, init_median: percentile(&inits, 0.5), first_invoke_median: percentile(&firsts, 0.5) }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn peak_rss_kib(bin: &Path, responder: &Responder, n: usize) -> (u64, u64) {
    let runtime = RuntimeApi::start().await;
    let mut child = spawn_function(bin, &runtime, responder, 1);
    wait_first_poll(&runtime).await;
    let idle = vm_hwm_kib(child.id());
    let (_, body) =
        runtime.invoke("rss".into(), Bytes::from(stop_event(&format!("n{n}-rss")).to_string())).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("STOPPING"), "{body:?}");
    let peak = vm_hwm_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (idle, peak)
}

/// Stops per second from one process: `requests` stops of one worker each,
/// with `max_concurrency` invocations in flight (Lambda Managed Instances).
async fn process_throughput(responder: &Responder, max_concurrency: usize, requests: usize) -> f64 {
    let runtime = RuntimeApi::start().await;
    let mut child = spawn_function(&binary("run-api"), &runtime, responder, max_concurrency);
    wait_first_poll(&runtime).await;
    let t = Instant::now();
    let waits: Vec<_> = (0..requests)
        .map(|i| {
            runtime.invoke(format!("t{max_concurrency}-{i}"), Bytes::from(stop_event(&format!("n1-t{i}")).to_string()))
        })
        .collect();
    for w in waits {
        w.await.unwrap();
    }
    let rate = requests as f64 / t.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    rate
}

/// Section 8: the throttled scenarios, as a Markdown table and JSON rows.
async fn throttled_section(o: &Opts, md: &mut String) -> Value {
    let d = o.latency;
    let none = Duration::ZERO;
    let scenario = |workers, runs, drain, reserve| throttled::Scenario {
        workers,
        runs,
        drain,
        reserve,
        api_processes: 1,
        wire: Wire::Http,
    };
    let plan: Vec<throttled::Scenario> = if o.smoke {
        vec![scenario(120, 1, none, 0.0)]
    } else {
        vec![
            scenario(250, 1, none, 0.0),
            scenario(500, 1, none, 0.0),
            scenario(1000, 1, none, 0.0),
            scenario(2000, 1, none, 0.0),
            scenario(10, 100, none, 0.0),
            throttled::Scenario { api_processes: 10, ..scenario(10, 100, none, 0.0) },
            scenario(1000, 1, none, EcsRates::default().reserve),
            // One stream batch of the template's BatchSize (16), tasks that
            // take 3 s to drain: the lag from the last exit to STOPPED.
            scenario(10, 16, Duration::from_secs(3), 0.0),
        ]
    };
    md.push_str("\n## 8. Under ECS's rate limits (throttled responder)\n\n");
    md.push_str("The responder enforces ECS's per-account buckets (StopTask 100 + 40/s, DescribeTasks/ListTasks 100 + 20/s; HTTP 400 ThrottlingException without a token) and tasks drain for the given time after StopTask. The API (every stop of the scenario at once, in one process unless \"API processes\" says more: classic Lambda runs concurrent invocations in separate environments, each with its own bucket) and the finalizer (one stream batch of every run) have their own SDK clients and buckets. Floor = D + (workers beyond the burst of 100) / 40 s; reserve = the share of the refill left to RunTask. Lag = STOPPED minus the exit of the run's last worker.\n\n");
    let plan: Vec<throttled::Scenario> =
        o.wires.iter().flat_map(|&wire| plan.iter().map(move |s| throttled::Scenario { wire, ..*s })).collect();
    md.push_str("| wire | workers | runs | API processes | drain s | reserve | all told s | STOPPED s | floor s | told / floor | STOPPED / floor | throttled calls | per worker | StopTask calls | workers left running | caller errors | lag p50 ms | lag p99 ms |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut rows = Vec::new();
    for s in &plan {
        let out = throttled::run(s, d).await;
        let mut lags = out.lags.clone();
        lags.sort();
        let (p50, p99) =
            if lags.is_empty() { (None, None) } else { (Some(percentile(&lags, 0.5)), Some(percentile(&lags, 0.99))) };
        let total = s.workers * s.runs;
        let secs = |d: Duration| d.as_secs_f64();
        let fmt = |v: Option<Duration>| v.map_or("n/a".into(), |v| format!("{:.0}", ms(v)));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {} | {:.3} | {} | {} | {} | {} | {} |\n",
            s.wire.label(),
            s.workers,
            s.runs,
            s.api_processes,
            secs(s.drain),
            s.reserve * 100.0,
            secs(out.all_told),
            secs(out.stopped),
            secs(out.floor),
            secs(out.all_told) / secs(out.floor),
            secs(out.stopped) / secs(out.floor),
            out.throttled_calls,
            out.throttled_calls as f64 / total as f64,
            out.stop_calls,
            out.workers_left_running,
            out.caller_errors,
            fmt(p50),
            fmt(p99)
        ));
        rows.push(json!({"wire": s.wire.key(), "workers": s.workers, "runs": s.runs, "api_processes": s.api_processes, "drain_s": secs(s.drain), "reserve": s.reserve,
            "all_told_s": secs(out.all_told), "stopped_s": secs(out.stopped), "floor_s": secs(out.floor),
            "throttled_calls": out.throttled_calls, "stop_task_calls": out.stop_calls,
            "workers_left_running": out.workers_left_running, "caller_errors": out.caller_errors,
            "runs_not_stopped": out.runs_not_stopped,
            "lag_p50_ms": p50.map(ms), "lag_p99_ms": p99.map(ms)}));
    }
    json!(rows)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}, {}", std::env::consts::ARCH)
}

fn today() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().ok();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

fn size_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Section 1: the plain-HTTP rows as before, then each wire and StopTask
/// path side by side.
async fn latency_section(o: &Opts, responder: &Responder, md: &mut String, js: &mut Value) {
    let rows = stop_latency(o, responder).await;
    md.push_str("## 1–2. Stop latency vs workers, and requests per stop (the handler in process)\n\n");
    md.push_str(&format!("Physical floor = D × (1 + ceil(N / {CONCURRENCY})): one write, then ECS's burst of 100 StopTasks at once; the old floor, D × (1 + ceil(N / 32)), was the old concurrency's. Both with the nominal D; \"injected D\" is the mean latency the responder really added (it sleeps on a blocking thread: tokio's millisecond timer would add up to 1 ms per round trip). Naive = 2 + N round trips (read, write, one StopTask after another). Each stop meets a rested ECS bucket (refill {RESTED_STOP_RATE}/s); section 8 has the published rates.\n\n"));
    js["stop_latency"] = latency_table(md, &rows);
    js["stop_latency_wires"] = wire_rows(o, md).await;
}

/// Section 1 by wire (plain HTTP, HTTPS with `h2`, HTTPS with `http/1.1`
/// only) and StopTask path (direct, the product's SDK client alone, an SDK
/// client with the SDK's defaults), warm, in process.
async fn wire_rows(o: &Opts, md: &mut String) -> Value {
    md.push_str("\n### 1c. By wire and StopTask path (in process, warm)\n\nThe same stops with DynamoDB and ECS on two ports (two hosts' connections, as on AWS), over plain HTTP, over HTTPS offering `h2` (the product's one connection pool negotiates HTTP/2: every call to a host on one connection) and over HTTPS offering `http/1.1` only. StopTask path: `direct` (the product's default), `sdk` (`ECS_DIRECT_STOP_TASK=false`: the product's SDK client, its endpoint resolved once and stalled-stream protection off), `sdk-defaults` (an SDK client with the SDK's defaults). Floor = D × (1 + ceil(N / 100)); \"/ direct\" = p50 over the `direct` row of the same wire and N.\n\n");
    md.push_str("| wire | StopTask path | workers N | runs | p50 ms | p99 ms | injected D ms | floor ms | p50 / floor | p99 / floor | p50 / direct | bench CPU per stop ms |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut out = Vec::new();
    for &wire in &o.wires {
        let responder = Responder::start(o.latency, wire).await;
        let mut direct: Vec<(usize, Duration)> = Vec::new();
        for path in [StopPath::Direct, StopPath::Sdk, StopPath::SdkDefaults] {
            let rows = stop_latency_of(o, variant_plan(o), &responder, path).await;
            for r in &rows {
                if path == StopPath::Direct {
                    direct.push((r.n, r.p50));
                }
                let vs = direct.iter().find(|(n, _)| *n == r.n).map_or(f64::NAN, |(_, d)| ms(r.p50) / ms(*d));
                md.push_str(&format!(
                    "| {} | {} | {} | {vs:.3} | {:.2} |\n",
                    wire.label(),
                    path.key(),
                    r.physical_cells(),
                    ms(r.cpu_per_stop)
                ));
                out.push(json!({"wire": wire.key(), "path": path.key(), "workers": r.n, "runs": r.runs,
                    "p50_ms": ms(r.p50), "p99_ms": ms(r.p99), "injected_d_ms": ms(r.d_eff),
                    "floor_ms": ms(r.physical_floor), "p50_ratio": ms(r.p50) / ms(r.physical_floor),
                    "p99_ratio": ms(r.p99) / ms(r.physical_floor), "p50_vs_direct": vs,
                    "bench_cpu_per_stop_ms": ms(r.cpu_per_stop)}));
            }
        }
    }
    json!(out)
}

#[tokio::main]
async fn main() {
    let o = opts();
    // The in-process SDK clients of the HTTPS rows trust the bench's CA as
    // the functions do: set before any client exists.
    std::env::set_var("SSL_CERT_FILE", responder::ca_file());
    let responder = Arc::new(Responder::start(o.latency, Wire::Http).await);
    if lambda_cpu::only() {
        let header = format!("# Benchmark results (section 7 alone)\n\n{} — {}.\n", today(), machine());
        lambda_cpu::standalone(&responder, o.latency, &o.out, &header).await;
        responder::remove_ca_file();
        return;
    }
    let mut md = String::new();
    let mut js = json!({"machine": machine(), "date": today(), "service_latency_ms": ms(o.latency), "smoke": o.smoke});
    md.push_str(&format!(
        "# Benchmark results\n\n{} — {}; injected service latency D = {} ms; StopTask concurrency {CONCURRENCY}.\n\n",
        today(),
        machine(),
        ms(o.latency)
    ));

    if o.runs(1) {
        latency_section(&o, &responder, &mut md, &mut js).await;
    }
    if o.only.is_some() {
        if o.runs(7) {
            if let Some(sec) = lambda_cpu::section(&responder, o.latency).await {
                md.push_str(&sec.md);
                js["stop_latency_lambda_cpu"] = sec.warm;
                js["cold_start_lambda_cpu"] = sec.cold;
            }
        }
        if o.runs(8) {
            js["throttled"] = throttled_section(&o, &mut md).await;
        }
        if o.runs(9) {
            let (authz_md, authz_js) = authz::section(o.smoke);
            md.push_str(&authz_md);
            js["authz"] = authz_js;
        }
        println!("{md}");
        std::fs::create_dir_all(&o.out).unwrap();
        std::fs::write(o.out.join("only.md"), &md).unwrap();
        std::fs::write(o.out.join("only.json"), serde_json::to_string_pretty(&js).unwrap()).unwrap();
        println!("written: {}/only.md and only.json", o.out.display());
        responder::remove_ca_file();
        return;
    }

    let fin = finalizer_throughput(&o, &responder).await;
    let rate = fin.runs as f64 / fin.elapsed.as_secs_f64();
    md.push_str(&format!(
        "\n## 5. Finalizer throughput\n\n{} STOPPING runs × {} workers in one batch: {:.1} ms, {:.0} records/s; floor {:.0} ms (3 round trips per run, {} runs at a time), ratio {:.2}.\n",
        fin.runs,
        fin.workers_each,
        ms(fin.elapsed),
        rate,
        ms(fin.floor),
        FinalizerLimits::default().run_concurrency,
        ms(fin.elapsed) / ms(fin.floor)
    ));
    js["finalizer"] = json!({"runs": fin.runs, "workers_each": fin.workers_each, "elapsed_ms": ms(fin.elapsed),
        "records_per_s": rate, "floor_ms": ms(fin.floor), "ratio": ms(fin.elapsed) / ms(fin.floor)});

    js["throttled"] = throttled_section(&o, &mut md).await;

    let (authz_md, authz_js) = authz::section(o.smoke);
    md.push_str(&authz_md);
    js["authz"] = authz_js;

    if o.smoke {
        println!("{md}");
        println!(
            "smoke: the benchmark compiles and runs; binaries, cold start and memory are measured by `make bench`"
        );
        return;
    }

    let rows = stop_latency_via_runtime(&o, &responder).await;
    md.push_str("\n## 1b. The same through the Lambda runtime (release `run-api` binary)\n\n");
    md.push_str("Each stop is an event handed out by a minimal Runtime API and timed until the function posts its response: event decoding, response encoding and two local HTTP hops on top of the handler. Same floor.\n\n");
    js["stop_latency_via_runtime"] = latency_table(&mut md, &rows);

    if let Some(sec) = lambda_cpu::section(&responder, o.latency).await {
        md.push_str(&sec.md);
        js["stop_latency_lambda_cpu"] = sec.warm;
        js["cold_start_lambda_cpu"] = sec.cold;
    }

    let sizes: Vec<(String, Option<u64>, Option<u64>)> = ["run-api", "stop-finalizer"]
        .iter()
        .map(|b| {
            // `make bench` builds arm64 through the SAM build (cargo-lambda + zig).
            let dir = if *b == "run-api" { "RunApiFunction" } else { "StopFinalizerFunction" };
            let arm = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sam/build").join(dir).join("bootstrap");
            (b.to_string(), size_of(&binary(b)), size_of(&arm))
        })
        .collect();
    md.push_str("\n## 4. Size and memory\n\n| binary | x86-64 stripped | arm64 stripped |\n|---|---:|---:|\n");
    for (b, x, a) in &sizes {
        let fmt =
            |v: &Option<u64>| v.map_or("not built here".to_owned(), |v| format!("{:.2} MiB", v as f64 / 1048576.0));
        md.push_str(&format!("| {b} | {} | {} |\n", fmt(x), fmt(a)));
    }
    js["sizes"] = json!(sizes
        .iter()
        .map(|(b, x, a)| json!({"binary": b, "x86_64_bytes": x, "arm64_bytes": a}))
        .collect::<Vec<_>>());
    let (idle, peak) = peak_rss_kib(&binary("run-api"), &responder, 500).await;
    md.push_str(&format!(
        "\nPeak RSS of `run-api`: {:.1} MiB after init, {:.1} MiB during an N = 500 stop.\n",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    ));
    js["rss"] = json!({"after_init_kib": idle, "peak_n500_kib": peak});

    let cold = cold_start(&binary("run-api"), &responder, 25).await;
    md.push_str(&format!(
        "\n## 3. Cold start (release `run-api`, {} starts, medians)\n\nexec → first poll of the Runtime API (init, SDK clients built): {:.1} ms; first invoke (N = 1 stop, 2 × D of it service latency): {:.1} ms.\n",
        cold.starts,
        ms(cold.init_median),
        ms(cold.first_invoke_median)
    ));
    js["cold_start"] = json!({"starts": cold.starts, "init_median_ms": ms(cold.init_median), "first_invoke_median_ms": ms(cold.first_invoke_median)});

    let seq = process_throughput(&responder, 1, 150).await;
    let conc = process_throughput(&responder, 64, 3000).await;
    md.push_str(&format!(
        "\n## 6. Server-side throughput of one process (N = 1 stops, floor 2 × D each)\n\nsequential (classic Lambda, one invocation at a time): {seq:.0} stops/s (floor-bound: {:.0}/s); AWS_LAMBDA_MAX_CONCURRENCY=64 (Lambda Managed Instances, `run_concurrent`): {conc:.0} stops/s, {:.1}× sequential.\n",
        1000.0 / (2.0 * ms(o.latency)),
        conc / seq
    ));
    js["process_throughput"] = json!({"sequential_per_s": seq, "concurrency_64_per_s": conc});

    // The profile choice: the same measurements for each candidate profile
    // that `make bench` built (see [profile.*] in Cargo.toml).
    md.push_str("\n## Profile choice (`run-api`)\n\n| profile | stripped size | init median ms | first invoke median ms | peak RSS N=500 MiB |\n|---|---:|---:|---:|---:|\n");
    let mut profiles = Vec::new();
    for profile in ["release", "release-speed"] {
        let bin = binary_in(profile, "run-api");
        let Some(size) = size_of(&bin) else { continue };
        let c = cold_start(&bin, &responder, 15).await;
        let (_, peak) = peak_rss_kib(&bin, &responder, 500).await;
        md.push_str(&format!(
            "| {profile} | {:.2} MiB | {:.1} | {:.1} | {:.1} |\n",
            size as f64 / 1048576.0,
            ms(c.init_median),
            ms(c.first_invoke_median),
            peak as f64 / 1024.0
        ));
        profiles.push(json!({"profile": profile, "bytes": size, "init_median_ms": ms(c.init_median),
            "first_invoke_median_ms": ms(c.first_invoke_median), "peak_rss_kib": peak}));
    }
    js["profiles"] = json!(profiles);

    println!("{md}");
    std::fs::create_dir_all(&o.out).unwrap();
    std::fs::write(o.out.join("latest.md"), &md).unwrap();
    std::fs::write(o.out.join("latest.json"), serde_json::to_string_pretty(&js).unwrap()).unwrap();
    println!("written: {}/latest.md and latest.json", o.out.display());
    responder::remove_ca_file();
}
