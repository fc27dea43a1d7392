//! The StopWorkflowRun / GetWorkflowRun API function (API Gateway HTTP API →
//! Lambda).

use std::sync::Arc;

use lambda_http::{run_concurrent, service_fn, tracing, Error, Request};
use mwaa_stop::aws::{sdk_config, DynamoRunStore, EcsWorkers};
use mwaa_stop::config::{metrics_stack, ApiConfig};
use mwaa_stop::lambda::http::Api;
use mwaa_stop::metrics;
use mwaa_stop::pacing::Paced;
use mwaa_stop::stop::Service;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = ApiConfig::from_env()?;
    metrics::set_stack(&metrics_stack());
    let sdk = sdk_config(&config.sdk).await;
    let store = DynamoRunStore::from_conf(&sdk, &config.runs_table);
    // One wave up to ECS's burst, never a wait: what has no token is the
    // finalizer's. The bucket is process-wide, shared by every invocation.
    let workers = Paced::new(EcsWorkers::from_conf(&sdk), config.ecs_rates.for_api());
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
