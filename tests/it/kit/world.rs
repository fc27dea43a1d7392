//! [`World`]: moto plus the run table, a worker cluster and a worker task
//! definition; the product's handlers built against it; what the tests
//! assert of a run's item.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ecs::types::{ContainerDefinition, LaunchType};
use mwaa_stop::aws::{DynamoRunStore, EcsWorkers, SdkSettings};
use mwaa_stop::finalize::{Finalizer, FinalizerLimits};
use mwaa_stop::lambda::http::{Api, ApiSettings, AuthMode};
use mwaa_stop::stop::{FanOutLimits, Service};

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

    /// Write a run item the way a scheduler would ([`run_item`]).
    pub async fn put_run(&self, arn: &str, run_id: &str, status: &str, workers: &[String]) {
        let item = run_item(arn, run_id, status, workers, &self.cluster);
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

/// Finalizer bounds for tests: quick polls, generous waits (a slow machine
/// must never make a run look stuck).
/// A run item as a scheduler writes it: `status`, started 2026-11-20, its
/// `workers` (task ARNs) in `cluster`.
pub fn run_item(
    arn: &str,
    run_id: &str,
    status: &str,
    workers: &[String],
    cluster: &str,
) -> HashMap<String, AttributeValue> {
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
        item.insert("Workers".to_owned(), AttributeValue::M(workers.iter().map(|w| (w.clone(), s(cluster))).collect()));
    }
    item
}

pub fn test_finalizer_limits() -> FinalizerLimits {
    FinalizerLimits {
        wait: Duration::from_secs(60),
        poll_initial: Duration::from_millis(50),
        poll_max: Duration::from_millis(400),
        run_concurrency: 8,
        stop_concurrency: 8,
        // Short, so moto tests stay quick: the product's defaults are 10 s
        // and 5 s; no post-stop watch unless a test asks for one.
        sweep_settle: Duration::from_secs(1),
        missing_confirm: Duration::from_secs(1),
        post_stop_sweep: Duration::ZERO,
        ..FinalizerLimits::default()
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
