//! The run-events publisher (DynamoDB stream of the run table → Lambda →
//! EventBridge): one event per status transition of a run.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run_concurrent, service_fn, tracing, Error, LambdaEvent};
use mwaa_stop::aws::{sdk_config, EventBridgePublisher};
use mwaa_stop::config::{metrics_stack, RunEventsConfig};
use mwaa_stop::lambda::run_events::handle_batch;
use mwaa_stop::metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = RunEventsConfig::from_env()?;
    metrics::set_stack(&metrics_stack());
    let sdk = sdk_config(&config.sdk).await;
    let publisher = Arc::new(EventBridgePublisher::from_conf(&sdk, &config.bus, &config.source));
    run_concurrent(service_fn(move |event: LambdaEvent<Event>| {
        let publisher = publisher.clone();
        async move { Ok::<_, Error>(handle_batch(&*publisher, event.payload).await) }
    }))
    .await
}
