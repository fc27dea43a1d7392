//! ECS through the SDK: the [`WorkerControl`] and [`WorkerFleet`] ports.

use aws_sdk_ecs::operation::describe_tasks::DescribeTasksError;
use aws_sdk_ecs::operation::list_tasks::ListTasksError;
use aws_sdk_ecs::operation::stop_task::StopTaskError;
use aws_sdk_ecs::types::DesiredStatus;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};

use super::ecs_direct::{Attempt, DirectStopTask};
use super::upstream::{from_sdk, THROTTLING_CODES};
use crate::ports::{Described, TaskState, TaskStop, UpstreamError, UpstreamKind, WorkerControl, WorkerFleet};

/// ECS through the SDK, and `StopTask` first without its per-call
/// orchestration where the configuration allows it ([`super::ecs_direct`]).
#[derive(Debug, Clone)]
pub struct EcsWorkers {
    client: aws_sdk_ecs::Client,
    direct: Option<DirectStopTask>,
}

impl EcsWorkers {
    /// Every call through `client` (the tests' mocked clients).
    pub fn new(client: aws_sdk_ecs::Client) -> Self {
        EcsWorkers { client, direct: None }
    }

    /// A client built from the shared SDK configuration ([`super::sdk_config`]),
    /// which never retries a throttled call itself: throttling is
    /// back-pressure for the pacing (`crate::pacing`), which waits for its
    /// bucket and sends the call again. The SDK's own retry of a throttle
    /// would go out unpaced and spend the retry quota that timeouts and 5xx
    /// need, leaving every later call a single attempt.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        let config = no_sdk_retry_of_throttles(aws_sdk_ecs::config::Builder::from(conf)).build();
        let direct = DirectStopTask::from_conf(conf)
            .inspect_err(|why| tracing::warn!(%why, "StopTask goes through the SDK client only"))
            .ok();
        EcsWorkers { client: aws_sdk_ecs::Client::from_conf(config), direct }
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
        if let Some(direct) = &self.direct {
            match direct.stop_task(cluster, task, reason).await {
                Attempt::Final(result) => return result,
                Attempt::Transient(why) => {
                    tracing::debug!(%task, %why, "StopTask sent again through the SDK client");
                }
            }
        }
        match self.client.stop_task().cluster(cluster).task(task).reason(reason).send().await {
            Ok(out) => Ok(TaskStop::Accepted { last_status: out.task.and_then(|t| t.last_status) }),
            Err(err) if err.as_service_error().is_some_and(is_gone) => Ok(TaskStop::Gone),
            Err(err) => Err(from_sdk("ecs", "StopTask", &err)),
        }
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
    use super::is_not_found_message;

    #[test]
    fn only_not_found_means_gone() {
        assert!(is_not_found_message(Some("The referenced task was not found.")));
        assert!(!is_not_found_message(Some("reason too long")));
        assert!(!is_not_found_message(None));
    }
}
