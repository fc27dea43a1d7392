//! The stop finalizer (DynamoDB stream of the run table → Lambda).

use std::sync::Arc;

use lambda_runtime::{run_concurrent, service_fn, tracing, Error, LambdaEvent};
use mwaa_stop::config::FinalizerConfig;
use mwaa_stop::finalizer::Finalizer;
use mwaa_stop::store::DynamoRunStore;
use mwaa_stop::workers::EcsWorkers;

type StreamEvent = aws_lambda_events::event::dynamodb::Event;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = FinalizerConfig::from_env()?;
    let sdk = config.sdk.load().await;
    let store = DynamoRunStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.runs_table);
    let fleet = EcsWorkers::new(aws_sdk_ecs::Client::new(&sdk));
    let finalizer = Arc::new(Finalizer::new(store, fleet, config.limits));
    let margin = config.deadline_margin;
    run_concurrent(service_fn(move |event: LambdaEvent<StreamEvent>| {
        let finalizer = finalizer.clone();
        async move {
            let deadline = mwaa_stop::config::deadline_instant(event.context.deadline, margin);
            Ok::<_, Error>(finalizer.handle_batch(event.payload, deadline).await)
        }
    }))
    .await
}
