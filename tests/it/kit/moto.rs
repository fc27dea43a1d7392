//! moto's server (DynamoDB, DynamoDB Streams, ECS), SDK clients pointed at
//! it, and the run table as the template creates it.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use super::*;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use mwaa_stop::aws::SdkSettings;
use serde_json::json;

/// moto's server, serialized per request (see `localdev.moto_serial`).
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
