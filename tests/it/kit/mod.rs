//! The test kit, one of each thing: a real moto server on a free loopback
//! port (DynamoDB, DynamoDB Streams, ECS over their wire protocols) with the
//! run table and a worker cluster ([`World`]), SDK clients pointed at it, the
//! in-memory fakes ([`fakes`]), the stream reader and delivery loop
//! ([`stream`]), the fault proxy ([`proxy`]), the Lambda Runtime API
//! ([`runtime_api`]), the SigV4 verifier ([`sigv4`]), the one loopback HTTP
//! server they are built on ([`serve`]), and the API Gateway HTTP API
//! (payload 2.0) event builder ([`http_event`], [`raw_http_event`]), and
//! the driver of `make local` / `make sam-local` ([`local_stack`]).
//!
//! moto comes from the project's virtualenv (`make venv`, which `make test`
//! runs first). If it is missing the tests fail with that instruction: an
//! integration test that silently skips proves nothing.
#![allow(dead_code)]

pub mod fakes;
pub mod local_stack;
pub mod proxy;
pub mod runtime_api;
pub mod serve;
pub mod sigv4;
pub mod stream;

pub use stream::{copy, deliver, StreamTail};

use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_ecs::types::{ContainerDefinition, LaunchType};
use base64::Engine;
use mwaa_stop::aws::{DynamoRunStore, EcsWorkers, SdkSettings};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits};
use mwaa_stop::lambda::http::{Api, ApiSettings, AuthMode};
use mwaa_stop::stop::{FanOutLimits, Service};
use serde_json::{json, Value};

pub const ACCOUNT: &str = "123456789012";
pub const OTHER_ACCOUNT: &str = "210987654321";
pub const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
pub const MALLORY: &str = "arn:aws:iam::210987654321:user/mallory";
pub const REGION: &str = "us-east-1";

pub fn workflow_arn(name: &str) -> String {
    format!("arn:aws:airflow-serverless:{REGION}:{ACCOUNT}:workflow/{name}-abcDEF1234")
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's virtualenv (override with `MWAA_STOP_VENV`).
pub fn venv() -> PathBuf {
    std::env::var_os("MWAA_STOP_VENV").map(PathBuf::from).unwrap_or_else(|| project_dir().join(".venv"))
}

/// A tool of the virtualenv. Plain `cargo test` on a fresh clone creates the
/// project's virtualenv itself (`make venv`, under a file lock so test
/// processes run side by side install it once); an `MWAA_STOP_VENV` given by
/// the caller is used as it is.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    if std::env::var_os("MWAA_STOP_VENV").is_none() && !venv_installed() {
        ensure_project_venv();
    }
    assert!(
        path.exists(),
        "{} is missing: run `make venv` (or `make test`, which does) to install the local AWS stand-ins",
        path.display()
    );
    path
}

/// `make venv` touches this stamp only after every tool is installed (its
/// `python` exists long before that).
fn venv_installed() -> bool {
    venv().join(".installed").exists()
}

fn ensure_project_venv() {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _in_process = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(project_dir().join("target")).expect("create target/");
    let lock = std::fs::File::create(project_dir().join("target/.venv-install.lock")).expect("create the venv lock");
    lock.lock().expect("lock the venv install");
    if venv_installed() {
        return; // another thread or test process finished it while this one waited
    }
    eprintln!("creating the project's virtualenv with `make venv` (first time only)");
    let status = Command::new("make")
        .args(["--no-print-directory", "venv"])
        .current_dir(project_dir())
        .status()
        .expect("run `make venv` (GNU make is needed to create the test tools' virtualenv)");
    assert!(status.success(), "`make venv` failed: see its message above");
}

/// `cmd` with the environment of a developer's shell rather than of a test
/// process. `cargo test` hands its tests the package's build-time variables
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). A `cargo build` started under
/// them (by `cargo lambda watch`) sees the build scripts that track those
/// variables (ring's, rustls') as changed and rebuilds most of the dependency
/// tree again, in every test binary that starts it: minutes of CPU on a
/// clean run, for a build that is not the one a user gets.
pub fn as_from_a_shell(cmd: &mut Command) -> &mut Command {
    const SET_BY_CARGO_FOR_A_RUN: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if SET_BY_CARGO_FOR_A_RUN.contains(&name)
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || name.starts_with("CARGO_CFG_")
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

pub fn log_dir() -> PathBuf {
    let dir = project_dir().join("target").join("test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed (and reaped) when the test ends, pass or fail.
pub struct Guard {
    pub child: Child,
    pub log: PathBuf,
}

impl Guard {
    pub fn spawn(mut cmd: Command, log_name: &str) -> Guard {
        let log = log_dir().join(log_name);
        let out = File::create(&log).unwrap();
        cmd.stdout(Stdio::from(out.try_clone().unwrap())).stderr(Stdio::from(out)).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Guard { child, log }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `url` until it answers with `want`, or panic with the log's tail.
pub async fn wait_for(url: &str, want: u16, within: Duration, guard: &mut Guard) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!("process exited with {status} before {url} answered:\n{}", guard.log_tail());
        }
        if let Ok(resp) = http.get(url).send().await {
            if resp.status().as_u16() == want {
                return;
            }
        }
        if start.elapsed() > within {
            panic!("{url} did not answer {want} within {within:?}:\n{}", guard.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// moto's server, serialized per request (see `tools/moto_serial.py`).
pub struct Moto {
    pub guard: Guard,
    pub url: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let mut cmd = Command::new(venv_bin("python"));
        cmd.args(["-m", "localdev.moto_serial", "-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut guard = Guard::spawn(cmd, &format!("moto-{port}.log"));
        let url = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{url}/moto-api/"), 200, Duration::from_secs(60), &mut guard).await;
        let moto = Moto { guard, url };
        moto.hold_tasks_running().await;
        moto
    }

    /// By default moto advances an ECS task one lifecycle state each time it
    /// is described, so a worker would "stop" by being looked at. Real tasks
    /// run until stopped: make moto do the same.
    pub async fn hold_tasks_running(&self) {
        let resp = reqwest::Client::new()
            .post(format!("{}/moto-api/state-manager/set-transition", self.url))
            .json(&json!({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000_000}}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "set-transition: {}", resp.status());
    }

    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.url).await
    }
}

pub async fn sdk_config_for(url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// moto plus the run table, a worker cluster and a worker task definition.
pub struct World {
    pub moto: Moto,
    pub ddb: aws_sdk_dynamodb::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub table: String,
    pub cluster: String,
}

impl World {
    pub async fn new() -> World {
        let moto = Moto::start().await;
        let conf = moto.sdk_config().await;
        let world = World {
            ddb: aws_sdk_dynamodb::Client::new(&conf),
            ecs: aws_sdk_ecs::Client::new(&conf),
            streams: aws_sdk_dynamodbstreams::Client::new(&conf),
            moto,
            table: "WorkflowRuns".into(),
            cluster: "workers".into(),
        };
        create_run_table(&world.ddb, &world.table).await;
        world.ecs.create_cluster().cluster_name(&world.cluster).send().await.unwrap();
        world
            .ecs
            .register_task_definition()
            .family("worker")
            .container_definitions(
                // moto needs `memory` on every container definition.
                ContainerDefinition::builder().name("worker").image("airflow-worker:latest").memory(512).build(),
            )
            .send()
            .await
            .unwrap();
        world
    }

    /// Start `n` real ECS tasks (Fargate needs no container instance in moto
    /// when the task definition does not use awsvpc networking).
    pub async fn start_workers(&self, n: usize) -> Vec<String> {
        let mut arns = Vec::new();
        while arns.len() < n {
            // RunTask starts at most 10 tasks a call.
            arns.extend(self.launch("mwaa-scheduler", (n - arns.len()).min(10)).await);
        }
        arns
    }

    /// `lastStatus` of each task, in the order given.
    pub async fn task_statuses(&self, arns: &[String]) -> Vec<String> {
        let mut by_arn = HashMap::new();
        for chunk in arns.chunks(100) {
            let out =
                self.ecs.describe_tasks().cluster(&self.cluster).set_tasks(Some(chunk.to_vec())).send().await.unwrap();
            for t in out.tasks() {
                by_arn.insert(t.task_arn().unwrap().to_owned(), t.last_status().unwrap_or("?").to_owned());
            }
        }
        arns.iter().map(|a| by_arn.get(a).cloned().unwrap_or_else(|| "MISSING".into())).collect()
    }

    /// Write a run item the way a scheduler would.
    pub async fn put_run(&self, arn: &str, run_id: &str, status: &str, workers: &[String]) {
        let mut item = HashMap::from([
            ("WorkflowArn".to_owned(), s(arn)),
            ("RunId".to_owned(), s(run_id)),
            ("Status".to_owned(), s(status)),
            ("WorkflowVersion".to_owned(), s("v3")),
            ("RunType".to_owned(), s("ON_DEMAND")),
            ("CreatedAt".to_owned(), s("2026-11-20T10:00:00.000Z")),
            ("StartedOn".to_owned(), s("2026-11-20T10:00:05.000Z")),
            ("ModifiedAt".to_owned(), s("2026-11-20T10:00:05.000Z")),
            (
                "History".to_owned(),
                AttributeValue::L(vec![AttributeValue::M(HashMap::from([
                    ("Event".to_owned(), s("Started")),
                    ("At".to_owned(), s("2026-11-20T10:00:05.000Z")),
                ]))]),
            ),
        ]);
        if !workers.is_empty() {
            item.insert(
                "Workers".to_owned(),
                AttributeValue::M(workers.iter().map(|w| (w.clone(), s(&self.cluster))).collect()),
            );
        }
        self.ddb.put_item().table_name(&self.table).set_item(Some(item)).send().await.unwrap();
    }

    pub async fn get_item(&self, arn: &str, run_id: &str) -> Option<HashMap<String, AttributeValue>> {
        get_run(&self.ddb, &self.table, arn, run_id).await
    }

    /// Every item in the table, for "nothing changed" checks.
    pub async fn scan(&self) -> Vec<HashMap<String, AttributeValue>> {
        let mut items = self.ddb.scan().table_name(&self.table).send().await.unwrap().items.unwrap_or_default();
        items.sort_by_key(|i| format!("{:?}{:?}", i.get("WorkflowArn"), i.get("RunId")));
        items
    }

    /// `(old Status, new Status)` of every MODIFY record in the table's stream.
    pub async fn status_changes(&self) -> Vec<(String, String)> {
        self.stream_changes().await.into_iter().map(|(_, old, new)| (old, new)).collect()
    }

    /// The API handler in process, with real SDK clients talking to moto.
    pub async fn api(&self, auth: AuthMode) -> Api<DynamoRunStore, EcsWorkers> {
        self.api_via(auth, &self.moto.url).await
    }

    /// The API handler with its ECS client sent through `ecs_url` (a proxy).
    pub async fn api_via(&self, auth: AuthMode, ecs_url: &str) -> Api<DynamoRunStore, EcsWorkers> {
        let conf = self.moto.sdk_config().await;
        let store = DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&conf), &self.table);
        let workers = EcsWorkers::from_conf(&sdk_config_for(ecs_url).await);
        let limits = FanOutLimits { concurrency: 8, budget: Duration::from_secs(20) };
        Api::new(
            Service::new(store, workers, limits),
            ApiSettings { auth, deadline_margin: Duration::from_millis(200) },
        )
    }
}

/// Finalizer bounds for tests: quick polls, generous waits (a slow machine
/// must never make a run look stuck).
pub fn test_finalizer_limits() -> FinalizerLimits {
    FinalizerLimits {
        wait: Duration::from_secs(60),
        poll_initial: Duration::from_millis(50),
        poll_max: Duration::from_millis(400),
        run_concurrency: 8,
        stop_concurrency: 8,
    }
}

/// Deliver the stream to the finalizer until it is quiet ([`deliver`]),
/// asserting no batch reports a failure. Returns how many records were
/// delivered.
pub async fn drain_stream(
    world: &World,
    tail: &mut StreamTail,
    finalizer: &Finalizer<DynamoRunStore, EcsWorkers>,
) -> usize {
    let delivery = deliver(&world.streams, tail, finalizer, 0).await;
    assert!(delivery.retries == 0 && delivery.failed_to_destination.is_empty(), "unexpected failures: {delivery:?}");
    delivery.records
}

impl World {
    /// The finalizer in process, every AWS call sent through `url` (moto or a
    /// proxy in front of it).
    pub async fn finalizer_via(&self, url: &str, limits: FinalizerLimits) -> Finalizer<DynamoRunStore, EcsWorkers> {
        let conf = sdk_config_for(url).await;
        Finalizer::new(
            DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&conf), &self.table),
            EcsWorkers::from_conf(&conf),
            limits,
        )
    }

    /// A reader of the table's stream from its start.
    pub async fn tail(&self) -> StreamTail {
        let desc = self.ddb.describe_table().table_name(&self.table).send().await.unwrap();
        StreamTail::new(desc.table().unwrap().latest_stream_arn().unwrap().to_owned())
    }

    /// Put any extra attributes on a run (contract fields the scheduler sets).
    pub async fn set(&self, arn: &str, run_id: &str, name: &str, value: AttributeValue) {
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("WorkflowArn", s(arn))
            .key("RunId", s(run_id))
            .update_expression("SET #n = :v")
            .expression_attribute_names("#n", name)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .unwrap();
    }
}

/// The run's item in `table`, read consistently.
pub async fn get_run(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    arn: &str,
    run_id: &str,
) -> Option<HashMap<String, AttributeValue>> {
    ddb.get_item()
        .table_name(table)
        .key("WorkflowArn", s(arn))
        .key("RunId", s(run_id))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub async fn create_run_table(ddb: &aws_sdk_dynamodb::Client, table: &str) {
    ddb.create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr_def("WorkflowArn"))
        .attribute_definitions(attr_def("RunId"))
        .attribute_definitions(attr_def("StoppingShard"))
        .attribute_definitions(attr_def("StoppingSince"))
        .key_schema(key("WorkflowArn", KeyType::Hash))
        .key_schema(key("RunId", KeyType::Range))
        // The reconciler's sparse index of STOPPING runs, as in template.yaml.
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("StoppingRuns")
                .key_schema(key("StoppingShard", KeyType::Hash))
                .key_schema(key("StoppingSince", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .unwrap(),
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn attr_def(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
}

fn key(name: &str, kt: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kt).build().unwrap()
}

/// Who sends an event.
#[derive(Clone, Copy)]
pub enum As {
    /// SigV4-signed by this principal in this account (IAM authorizer context).
    Iam(&'static str, &'static str),
    /// No authorizer context (a local, unauthenticated call).
    Nobody,
}

/// An API Gateway HTTP API (payload format 2.0) event, as Lambda receives it.
pub fn http_event(target: Option<&str>, body: &[u8], who: As) -> Value {
    let mut headers = serde_json::Map::new();
    if let Some(t) = target {
        headers.insert("x-amz-target".into(), json!(t));
    }
    let identity = match who {
        As::Iam(account, user) => Some((account, user)),
        As::Nobody => None,
    };
    raw_http_event("POST", headers, body, identity)
}

/// The same event with everything chosen by the caller: the method, extra
/// headers (on top of the JSON content type and a host) and the IAM identity
/// `(account, principal ARN)`, if any. Bodies that are not UTF-8 are sent
/// base64-encoded, as API Gateway does.
pub fn raw_http_event(
    method: &str,
    extra_headers: serde_json::Map<String, Value>,
    body: &[u8],
    identity: Option<(&str, &str)>,
) -> Value {
    let mut headers = json!({"content-type": "application/x-amz-json-1.0", "host": "api.example"});
    for (k, v) in extra_headers {
        headers[k] = v;
    }
    let (body, b64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut ctx = json!({
        "accountId": ACCOUNT, "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "tests"},
        "requestId": "req-1", "routeKey": "POST /", "stage": "$default", "time": "21/Nov/2026:10:00:00 +0000",
        "timeEpoch": 1_795_000_000_000_i64
    });
    if let Some((account, user)) = identity {
        ctx["authorizer"] = json!({"iam": {
            "accessKey": "AKIAEXAMPLE", "accountId": account, "callerId": "AIDAEXAMPLE",
            "principalOrgId": null, "userArn": user, "userId": "AIDAEXAMPLE"
        }});
    }
    json!({
        "version": "2.0", "routeKey": "POST /", "rawPath": "/", "rawQueryString": "",
        "headers": headers, "requestContext": ctx, "body": body, "isBase64Encoded": b64
    })
}

pub fn request(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid HTTP API event")
}

pub fn stop_body(arn: &str, run_id: &str) -> Vec<u8> {
    json!({"WorkflowArn": arn, "RunId": run_id}).to_string().into_bytes()
}

pub const STOP: &str = "AmazonMWAAServerless.StopWorkflowRun";
pub const GET: &str = "AmazonMWAAServerless.GetWorkflowRun";

/// A response split into what the tests look at.
pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub json: Value,
}

pub async fn call(api: &Api<DynamoRunStore, EcsWorkers>, event: &Value) -> Reply {
    call_request(api, request(event)).await
}

/// The same event sent `n` times at once; the replies in sending order.
pub async fn call_concurrently(
    api: &std::sync::Arc<Api<DynamoRunStore, EcsWorkers>>,
    event: &Value,
    n: usize,
) -> Vec<Reply> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (api, event) = (api.clone(), event.clone());
            tokio::spawn(async move { call(&api, &event).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for c in calls {
        replies.push(c.await.unwrap());
    }
    replies
}

// ---------------------------------------------------------------------------
// Helpers for the reliability tier (reliability::)
// ---------------------------------------------------------------------------

/// An SDK configuration for `url` with the product's retry and timeout
/// settings, applied by the product's own `SdkSettings::apply` (region, credentials
/// and endpoint are set here instead of read from the environment, so tests
/// running in parallel need not touch the process environment).
pub async fn sdk_config_with(url: &str, sdk: &SdkSettings) -> SdkConfig {
    sdk.apply(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// The product's defaults (`SDK_*` unset).
pub fn default_sdk_settings() -> SdkSettings {
    mwaa_stop::config::ApiConfig::from_map(&HashMap::new()).unwrap().sdk
}

impl World {
    /// The API handler with DynamoDB through `ddb_url` and ECS through
    /// `ecs_url` (moto or proxies), with the given SDK settings and fan-out.
    pub async fn api_with(
        &self,
        ddb_url: &str,
        ecs_url: &str,
        sdk: &SdkSettings,
        fan_out: FanOutLimits,
        auth: AuthMode,
    ) -> Api<DynamoRunStore, EcsWorkers> {
        let store =
            DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&sdk_config_with(ddb_url, sdk).await), &self.table);
        let workers = EcsWorkers::from_conf(&sdk_config_with(ecs_url, sdk).await);
        Api::new(
            Service::new(store, workers, fan_out),
            ApiSettings { auth, deadline_margin: Duration::from_millis(200) },
        )
    }

    /// Launch `n` tasks with this `startedBy`, as a scheduler does (not registered anywhere).
    pub async fn launch(&self, started_by: &str, n: usize) -> Vec<String> {
        let out = self
            .ecs
            .run_task()
            .cluster(&self.cluster)
            .task_definition("worker")
            .launch_type(LaunchType::Fargate)
            .count(n as i32)
            .started_by(started_by)
            .send()
            .await
            .unwrap();
        out.tasks().iter().map(|t| t.task_arn().unwrap().to_owned()).collect()
    }

    /// Tasks with this `startedBy` whose desired status is still RUNNING.
    pub async fn running_started_by(&self, started_by: &str) -> Vec<String> {
        let out = self
            .ecs
            .list_tasks()
            .cluster(&self.cluster)
            .started_by(started_by)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .send()
            .await
            .unwrap();
        out.task_arns().to_vec()
    }

    /// `(RunId, old Status, new Status)` of every MODIFY record in the stream.
    pub async fn stream_changes(&self) -> Vec<(String, String, String)> {
        let event = self.tail().await.rest(&self.streams).await;
        let get = |m: &serde_dynamo::Item, k: &str| -> String {
            match m.get(k) {
                Some(serde_dynamo::AttributeValue::S(s)) => s.clone(),
                _ => String::new(),
            }
        };
        event
            .records
            .iter()
            .filter(|r| r.event_name == "MODIFY")
            .map(|r| {
                (get(&r.change.keys, "RunId"), get(&r.change.old_image, "Status"), get(&r.change.new_image, "Status"))
            })
            .collect()
    }
}

/// A request carrying a Lambda context whose deadline is `in_ms` from now.
pub fn with_deadline(req: lambda_http::Request, in_ms: u64) -> lambda_http::Request {
    use lambda_http::RequestExt;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut ctx = lambda_http::lambda_runtime::Context::default();
    ctx.request_id = format!("deadline-{now_ms}");
    ctx.deadline = now_ms + in_ms;
    req.with_lambda_context(ctx)
}

/// Like [`call`], for a prepared request.
pub async fn call_request(api: &Api<DynamoRunStore, EcsWorkers>, req: lambda_http::Request) -> Reply {
    let resp = api.handle(req).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let json: Value = serde_json::from_slice(resp.body().as_ref()).expect("every response body is JSON");
    Reply { status, headers, json }
}

/// History event names of an item.
pub fn history_of(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    item.get("History")
        .and_then(|h| h.as_l().ok())
        .map(|l| l.iter().filter_map(|e| e.as_m().ok()?.get("Event")?.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

/// The invariant "unchanged or consistently STOPPING, never half-written":
/// `after` is `before` exactly, or `before` plus exactly the stop transition.
pub fn unchanged_or_consistently_stopping(
    before: &HashMap<String, AttributeValue>,
    after: &HashMap<String, AttributeValue>,
) -> Result<&'static str, String> {
    if before == after {
        return Ok("unchanged");
    }
    let st = |i: &HashMap<String, AttributeValue>| i.get("Status").and_then(|v| v.as_s().ok()).cloned();
    if st(after).as_deref() != Some("STOPPING") {
        return Err(format!("changed but not STOPPING: {after:?}"));
    }
    let mut hist_before = history_of(before);
    hist_before.push("StopRequested".into());
    if history_of(after) != hist_before {
        return Err(format!("history is not the old one plus one StopRequested: {:?}", history_of(after)));
    }
    let at = after.get("StopRequestedAt").and_then(|v| v.as_s().ok()).ok_or("no StopRequestedAt")?;
    if after.get("ModifiedAt").and_then(|v| v.as_s().ok()) != Some(at) || !after.contains_key("StopRequestedBy") {
        return Err(format!("half-written stop: {after:?}"));
    }
    for (k, v) in before {
        if !matches!(k.as_str(), "Status" | "ModifiedAt" | "History") && after.get(k) != Some(v) {
            return Err(format!("{k} changed: {v:?} → {:?}", after.get(k)));
        }
    }
    Ok("stopping")
}
