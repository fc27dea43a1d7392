//! The stop finalizer (DynamoDB stream of the run table → Lambda).

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run_concurrent, service_fn, tracing, Error, LambdaEvent};
use mwaa_stop::aws::{sdk_config, DynamoRunStore, EcsWorkers};
use mwaa_stop::config::{metrics_stack, FinalizerConfig};
use mwaa_stop::finalize::Finalizer;
use mwaa_stop::lambda::context::deadline_instant;
use mwaa_stop::lambda::stream::handle_batch;
use mwaa_stop::metrics;
use mwaa_stop::pacing::Paced;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = FinalizerConfig::from_env()?;
    metrics::set_stack(&metrics_stack());
    let sdk = sdk_config(&config.sdk).await;
    let store = DynamoRunStore::from_conf(&sdk, &config.runs_table);
    // ECS's refill rate, starting empty (the API's wave has just spent the
    // burst), shared by every run of every invocation of this process.
    let fleet =
        Paced::new(EcsWorkers::from_conf_with(&sdk, config.ecs_direct_stop_task), config.ecs_rates.for_finalizer());
    let finalizer = Arc::new(Finalizer::new(store, fleet, config.limits));
    let margin = config.deadline_margin;
    run_concurrent(service_fn(move |event: LambdaEvent<Event>| {
        let finalizer = finalizer.clone();
        async move {
            let deadline = deadline_instant(event.context.deadline, margin);
            Ok::<_, Error>(handle_batch(&finalizer, event.payload, deadline).await)
        }
    }))
    .await
}
