//! ECS through the SDK: the [`WorkerControl`] and [`WorkerFleet`] ports.

use std::time::{Duration, Instant};

use aws_sdk_ecs::config::endpoint::{Params, ResolveEndpoint};
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::config::timeout::TimeoutConfig;
use aws_sdk_ecs::config::StalledStreamProtectionConfig;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksError;
use aws_sdk_ecs::operation::list_tasks::ListTasksError;
use aws_sdk_ecs::operation::stop_task::StopTaskError;
use aws_sdk_ecs::types::DesiredStatus;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::endpoint::EndpointFuture;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_types::endpoint::Endpoint;
use aws_types::service_config::ServiceConfigKey;
use futures::FutureExt;

use super::ecs_direct::{Attempt, DirectStopTask, Fallback};
use super::upstream::{from_sdk, THROTTLING_CODES};
use crate::metrics::{self, Unit};
use crate::ports::{Described, TaskState, TaskStop, UpstreamError, UpstreamKind, WorkerControl, WorkerFleet};

/// The metric counted each time a direct `StopTask` goes on to the SDK
/// client (property `Reason`: [`Fallback::reason`]).
pub const DIRECT_FALLBACK_METRIC: &str = "DirectStopTaskFallbacks";

/// ECS through the SDK, and `StopTask` first without its per-call
/// orchestration where the configuration allows it ([`super::ecs_direct`]).
#[derive(Debug, Clone)]
pub struct EcsWorkers {
    client: aws_sdk_ecs::Client,
    direct: Option<DirectStopTask>,
    /// The direct sender whether or not `StopTask` uses it: it opens
    /// connections at init ([`EcsWorkers::open_connections`]).
    sender: Option<DirectStopTask>,
    budget: Budget,
}

/// The SDK client's retry and timeout budget of one call, of which a direct
/// attempt that goes on to the SDK has spent one attempt and its time.
#[derive(Debug, Clone)]
struct Budget {
    retry: Option<RetryConfig>,
    timeouts: Option<TimeoutConfig>,
}

impl EcsWorkers {
    /// Every call through `client` (the tests' mocked clients).
    pub fn new(client: aws_sdk_ecs::Client) -> Self {
        EcsWorkers { client, direct: None, sender: None, budget: Budget { retry: None, timeouts: None } }
    }

    /// [`EcsWorkers::from_conf_with`], the direct `StopTask` on.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self::from_conf_with(conf, true)
    }

    /// A client built from the shared SDK configuration ([`super::sdk_config`]),
    /// which never retries a throttled call itself: throttling is
    /// back-pressure for the pacing (`crate::pacing`), which waits for its
    /// bucket and sends the call again. The SDK's own retry of a throttle
    /// would go out unpaced and spend the retry quota that timeouts and 5xx
    /// need, leaving every later call a single attempt.
    ///
    /// The client's endpoint is resolved once, here, by ECS's own rules (its
    /// parameters never change between calls), and its stalled-stream
    /// protection is off (every answer is small and the attempt timeout
    /// bounds it): two per-call costs of the orchestrator with no effect.
    /// With `direct_stop_task`, `StopTask` is first sent without the
    /// orchestrator ([`super::ecs_direct`]) on the client's own connector.
    pub fn from_conf_with(conf: &aws_config::SdkConfig, direct_stop_task: bool) -> Self {
        let mut builder = no_sdk_retry_of_throttles(aws_sdk_ecs::config::Builder::from(conf))
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        let endpoint = resolve_endpoint(conf)
            .inspect_err(|why| tracing::warn!(%why, "the ECS endpoint is resolved on every call"))
            .ok();
        if let Some(endpoint) = &endpoint {
            builder = builder.endpoint_resolver(FixedEndpoint(endpoint.clone()));
        }
        let config = builder.build();
        let sender = match &endpoint {
            None => Err("no endpoint".to_string()),
            Some(endpoint) => DirectStopTask::new(conf, &config, endpoint),
        };
        let sender = sender
            .inspect_err(|why| {
                if direct_stop_task {
                    tracing::warn!(%why, "StopTask goes through the SDK client only")
                }
            })
            .ok();
        let direct = sender.clone().filter(|_| direct_stop_task);
        let budget = Budget { retry: config.retry_config().cloned(), timeouts: config.timeout_config().cloned() };
        EcsWorkers { client: aws_sdk_ecs::Client::from_conf(config), direct, sender, budget }
    }

    /// Opens `connections` connections to ECS now, in the background, for
    /// the first `StopTask` wave of a cold process (ECS's endpoint, on the
    /// shared pool, which the SDK client uses too).
    pub fn open_connections(&self, connections: usize) {
        if let Some(sender) = &self.sender {
            sender.open_connections(connections);
        }
    }

    /// Whether `StopTask` is first sent directly.
    pub fn direct_stop_task(&self) -> bool {
        self.direct.is_some()
    }
}

impl Budget {
    /// The SDK's configuration for the rest of a call whose direct attempt
    /// took `spent`: one attempt fewer, the operation timeout less `spent`.
    /// `None` when nothing is left.
    fn after_direct(&self, spent: Duration) -> Option<aws_sdk_ecs::config::Builder> {
        let retry = self.retry.clone().unwrap_or_else(RetryConfig::standard);
        let attempts = retry.max_attempts().saturating_sub(1);
        if attempts == 0 {
            return None;
        }
        let mut timeouts = self.timeouts.clone().unwrap_or_else(TimeoutConfig::disabled).to_builder();
        if let Some(total) = self.timeouts.as_ref().and_then(|t| t.operation_timeout()) {
            timeouts = timeouts.operation_timeout(total.checked_sub(spent).filter(|left| !left.is_zero())?);
        }
        Some(
            aws_sdk_ecs::config::Builder::new()
                .retry_config(retry.with_max_attempts(attempts))
                .timeout_config(timeouts.build()),
        )
    }
}

/// The ECS endpoint the SDK client would resolve: `AWS_ENDPOINT_URL_ECS` (or
/// the profile's), else `AWS_ENDPOINT_URL`, through ECS's own endpoint rules
/// (FIPS, dual-stack, partitions).
pub(super) fn resolve_endpoint(conf: &aws_config::SdkConfig) -> Result<Endpoint, String> {
    let region = conf.region().ok_or("no region")?.to_string();
    let configured = if conf.get_origin("endpoint_url").is_client_config() {
        conf.endpoint_url().map(str::to_string)
    } else {
        conf.service_config()
            .and_then(|sc| {
                let key = ServiceConfigKey::builder()
                    .service_id("ECS")
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .ok()?;
                sc.load_config(key)
            })
            .or_else(|| conf.endpoint_url().map(str::to_string))
    };
    let mut params = Params::builder()
        .region(region)
        .use_fips(conf.use_fips().unwrap_or(false))
        .use_dual_stack(conf.use_dual_stack().unwrap_or(false));
    if let Some(url) = configured {
        params = params.endpoint(url);
    }
    let params = params.build().map_err(|e| format!("endpoint parameters: {e}"))?;
    aws_sdk_ecs::config::endpoint::DefaultResolver::new()
        .resolve_endpoint(&params)
        .now_or_never()
        .ok_or("the endpoint resolver did not answer at once")?
        .map_err(|e| format!("endpoint: {e}"))
}

/// An endpoint resolved once, by ECS's rules ([`resolve_endpoint`]).
#[derive(Debug)]
struct FixedEndpoint(Endpoint);

impl ResolveEndpoint for FixedEndpoint {
    fn resolve_endpoint<'a>(&'a self, _: &'a Params) -> EndpointFuture<'a> {
        EndpointFuture::ready(Ok(self.0.clone()))
    }
}

/// An ECS client configuration whose SDK retries never resend a throttled
/// `StopTask`, `DescribeTasks` or `ListTasks` (timeouts and 5xx are still
/// retried as configured).
pub fn no_sdk_retry_of_throttles(builder: aws_sdk_ecs::config::Builder) -> aws_sdk_ecs::config::Builder {
    builder
        .retry_classifier(NoThrottleRetry::<StopTaskError>::new())
        .retry_classifier(NoThrottleRetry::<DescribeTasksError>::new())
        .retry_classifier(NoThrottleRetry::<ListTasksError>::new())
}

/// Forbids the SDK's retry of an ECS operation error whose code is a
/// throttle (any one classifier's `RetryForbidden` wins over the SDK's own).
#[derive(Debug)]
struct NoThrottleRetry<E>(std::marker::PhantomData<fn() -> E>);

impl<E> NoThrottleRetry<E> {
    fn new() -> Self {
        NoThrottleRetry(std::marker::PhantomData)
    }
}

impl<E> ClassifyRetry for NoThrottleRetry<E>
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let code = match ctx.output_or_error() {
            Some(Err(err)) => err.as_operation_error().and_then(|e| e.downcast_ref::<E>()).and_then(|e| e.code()),
            _ => None,
        };
        if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "no SDK retry of ECS throttling (paced instead)"
    }
}

/// ECS answers `InvalidParameterException: The referenced task was not found`
/// for a task it no longer knows (stopped tasks are forgotten after about an
/// hour), and `ClusterNotFoundException` when the cluster is gone. Both mean
/// nothing is running. (moto answers an unknown task with a bare HTTP 500; that
/// stays a failure, which the finalizer re-checks with `DescribeTasks`.)
fn is_gone(err: &StopTaskError) -> bool {
    match err {
        StopTaskError::ClusterNotFoundException(_) => true,
        StopTaskError::InvalidParameterException(e) => is_not_found_message(e.message()),
        _ => false,
    }
}

pub(super) fn is_not_found_message(message: Option<&str>) -> bool {
    message.is_some_and(|m| m.to_ascii_lowercase().contains("not found"))
}

impl WorkerControl for EcsWorkers {
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<TaskStop, UpstreamError> {
        let call = || self.client.stop_task().cluster(cluster).task(task).reason(reason);
        if let Some(direct) = &self.direct {
            let started = Instant::now();
            let fallback = match direct.stop_task(cluster, task, reason).await {
                Attempt::Final(result) => return result,
                Attempt::Fallback(f) => f,
            };
            let reason_code = fallback.reason();
            metrics::emit(&[(DIRECT_FALLBACK_METRIC, Unit::Count, 1.0)], &[("Reason", reason_code)]);
            tracing::info!(%task, why = %fallback.why, request_id = ?fallback.request_id, reason = reason_code,
                "StopTask goes on to the SDK client");
            if fallback.sent {
                match self.budget.after_direct(started.elapsed()) {
                    Some(rest) => return sdk_stop(call().customize().config_override(rest).send().await),
                    None => return Err(Fallback::into_error(fallback)),
                }
            }
        }
        sdk_stop(call().send().await)
    }
}

/// The SDK client's answer to `StopTask`, read as the port's.
fn sdk_stop(
    result: Result<
        aws_sdk_ecs::operation::stop_task::StopTaskOutput,
        aws_sdk_ecs::error::SdkError<StopTaskError, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    >,
) -> Result<TaskStop, UpstreamError> {
    match result {
        Ok(out) => Ok(TaskStop::Accepted { last_status: out.task.and_then(|t| t.last_status) }),
        Err(err) if err.as_service_error().is_some_and(is_gone) => Ok(TaskStop::Gone),
        Err(err) => Err(from_sdk("ecs", "StopTask", &err)),
    }
}

impl WorkerFleet for EcsWorkers {
    async fn describe_tasks(&self, cluster: &str, tasks: &[String]) -> Result<Described, UpstreamError> {
        let result = self.client.describe_tasks().cluster(cluster).set_tasks(Some(tasks.to_vec())).send().await;
        let out = match result {
            Ok(out) => out,
            // A deleted cluster has no running task.
            Err(err) if matches!(err.as_service_error(), Some(DescribeTasksError::ClusterNotFoundException(_))) => {
                return Ok(Described { found: Vec::new(), missing: tasks.to_vec() });
            }
            Err(err) => return Err(from_sdk("ecs", "DescribeTasks", &err)),
        };
        let mut described = Described::default();
        for t in out.tasks.unwrap_or_default() {
            let Some(arn) = t.task_arn else { continue };
            described.found.push(TaskState { arn, last_status: t.last_status, desired_status: t.desired_status });
        }
        for f in out.failures.unwrap_or_default() {
            match (f.arn, f.reason.as_deref()) {
                (Some(arn), Some("MISSING")) => described.missing.push(arn),
                (arn, reason) => {
                    return Err(UpstreamError::new(
                        "ecs",
                        "DescribeTasks",
                        UpstreamKind::Fault,
                        format!("failure for {arn:?}: {reason:?}"),
                    ))
                }
            }
        }
        Ok(described)
    }

    /// `ListTasks` by `startedBy`, desired status `RUNNING` and then
    /// `STOPPED`: a task told to stop is listed under `STOPPED` at once, while
    /// its containers may still run (a hung agent), so it must be described
    /// until its last status is `STOPPED` too.
    async fn list_running(&self, cluster: &str, started_by: &str) -> Result<Vec<String>, UpstreamError> {
        let mut arns = Vec::new();
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut pages = self
                .client
                .list_tasks()
                .cluster(cluster)
                .started_by(started_by)
                .desired_status(desired)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                match page {
                    Ok(page) => arns.extend(page.task_arns.unwrap_or_default()),
                    Err(err) if matches!(err.as_service_error(), Some(ListTasksError::ClusterNotFoundException(_))) => {
                        return Ok(Vec::new())
                    }
                    Err(err) => return Err(from_sdk("ecs", "ListTasks", &err)),
                }
            }
        }
        arns.sort();
        arns.dedup();
        Ok(arns)
    }
}

#[cfg(test)]
mod tests {
    use super::{is_not_found_message, resolve_endpoint};

    #[test]
    fn only_not_found_means_gone() {
        assert!(is_not_found_message(Some("The referenced task was not found.")));
        assert!(!is_not_found_message(Some("reason too long")));
        assert!(!is_not_found_message(None));
    }

    #[test]
    fn the_endpoint_is_the_one_the_sdk_would_use() {
        let conf = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        assert_eq!(resolve_endpoint(&conf).unwrap().url(), "https://ecs.eu-west-1.amazonaws.com");
        let local = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:5000")
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        assert_eq!(resolve_endpoint(&local).unwrap().url(), "http://127.0.0.1:5000");
        let fips = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .use_fips(true)
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        assert_eq!(resolve_endpoint(&fips).unwrap().url(), "https://ecs-fips.us-east-1.amazonaws.com");
    }
}
