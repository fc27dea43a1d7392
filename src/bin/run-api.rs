//! The StopWorkflowRun / GetWorkflowRun API function (API Gateway HTTP API →
//! Lambda).

use std::sync::Arc;

use lambda_http::{run_concurrent, service_fn, tracing, Error, Request};
use mwaa_stop::api::Api;
use mwaa_stop::config::ApiConfig;
use mwaa_stop::service::Service;
use mwaa_stop::store::DynamoRunStore;
use mwaa_stop::workers::EcsWorkers;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = ApiConfig::from_env()?;
    let sdk = config.sdk.load().await;
    let store = DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.runs_table);
    let workers = EcsWorkers::new(aws_sdk_ecs::Client::new(&sdk));
    let api = Arc::new(Api::new(Service::new(store, workers, config.fan_out), config.api));
    // Sequential on classic Lambda; on Lambda Managed Instances
    // (AWS_LAMBDA_MAX_CONCURRENCY > 1) one instance serves that many requests
    // at once: the handler holds no per-request state.
    run_concurrent(service_fn(move |req: Request| {
        let api = api.clone();
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
