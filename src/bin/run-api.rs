//! The StopWorkflowRun / GetWorkflowRun API function (API Gateway HTTP API →
//! Lambda).

use std::sync::Arc;

use lambda_http::{run_concurrent, service_fn, tracing, Error, Request};
use mwaa_stop::authz::Authz;
use mwaa_stop::aws::{sdk_config, DynamoRunStore, EcsWorkers, SsmPolicySource};
use mwaa_stop::config::{metrics_stack, ApiConfig, PolicySource};
use mwaa_stop::lambda::http::Api;
use mwaa_stop::lambda::policies::{keep_fresh, load};
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
    let ecs = EcsWorkers::from_conf_with(&sdk, config.ecs_direct_stop_task);
    ecs.open_connections(config.ecs_connections_at_init);
    let workers = Paced::new(ecs, config.ecs_rates.for_api());
    // The policy set: the shipped default, or a configured one read now and
    // refreshed in the background; one that cannot be used denies everything.
    let authz = match &config.policies {
        PolicySource::Default => {
            tracing::info!(policies = ?Authz::default().policy_ids(), "default policy set (today's rule)");
            Authz::default()
        }
        PolicySource::SsmParameter(name) => {
            let authz = Authz::fail_closed("not loaded yet");
            let ssm = SsmPolicySource::from_conf(&sdk, name);
            let read = move || {
                let ssm = ssm.clone();
                async move { ssm.read().await.map(|(text, _version)| text).map_err(|e| e.to_string()) }
            };
            let source = format!("ssm:{name}");
            let last = load(&authz, &source, &read).await;
            tokio::spawn(keep_fresh(authz.clone(), source, config.policy_refresh, last, read));
            authz
        }
        PolicySource::File(path) => {
            let authz = Authz::fail_closed("not loaded yet");
            let source = format!("file:{path}");
            let path = path.clone();
            // A small local file: read in place (local development only).
            let read = move || {
                let read = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"));
                async move { read }
            };
            let last = load(&authz, &source, &read).await;
            tokio::spawn(keep_fresh(authz.clone(), source, config.policy_refresh, last, read));
            authz
        }
    };
    let service = Service::new(store, workers, config.fan_out).with_authz(authz);
    let api = Arc::new(Api::new(service, config.api));
    // Sequential on classic Lambda; on Lambda Managed Instances
    // (AWS_LAMBDA_MAX_CONCURRENCY > 1) one instance serves that many requests
    // at once: the handler holds no per-request state.
    run_concurrent(service_fn(move |req: Request| {
        let api = api.clone();
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
