//! The stop reconciler (a schedule → Lambda): finalizes every run that has
//! been `STOPPING` for longer than `RECONCILE_AFTER_MS`, whatever happened to
//! its stream records.

use std::sync::Arc;

use lambda_runtime::{run_concurrent, service_fn, tracing, Error, LambdaEvent};
use mwaa_stop::aws::{sdk_config, DynamoRunStore, EcsWorkers};
use mwaa_stop::config::{metrics_stack, ReconcilerConfig};
use mwaa_stop::finalize::Finalizer;
use mwaa_stop::lambda::context::deadline_instant;
use mwaa_stop::lambda::schedule::handle_tick;
use mwaa_stop::metrics;
use mwaa_stop::pacing::Paced;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = ReconcilerConfig::from_env()?;
    metrics::set_stack(&metrics_stack());
    let f = &config.finalizer;
    let sdk = sdk_config(&f.sdk).await;
    let store = DynamoRunStore::from_conf(&sdk, &f.runs_table).with_stopping_index(&config.stopping_index);
    let fleet = Paced::new(EcsWorkers::from_conf_with(&sdk, f.ecs_direct_stop_task), f.ecs_rates.for_finalizer());
    let finalizer = Arc::new(Finalizer::new(store, fleet, f.limits));
    let (margin, after) = (f.deadline_margin, config.reconcile_after);
    run_concurrent(service_fn(move |event: LambdaEvent<Value>| {
        let finalizer = finalizer.clone();
        async move {
            let deadline = deadline_instant(event.context.deadline, margin);
            Ok::<_, Error>(handle_tick(&finalizer, after, deadline).await)
        }
    }))
    .await
}
