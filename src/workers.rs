//! ECS worker control: the narrow interface the service needs, and its ECS
//! adapter.

use std::future::Future;

use aws_sdk_ecs::operation::describe_tasks::DescribeTasksError;
use aws_sdk_ecs::operation::list_tasks::ListTasksError;
use aws_sdk_ecs::operation::stop_task::StopTaskError;
use aws_sdk_ecs::types::DesiredStatus;

use crate::upstream::UpstreamError;

/// What one `StopTask` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStop {
    /// ECS accepted the stop; `last_status` is what it reported then.
    Accepted { last_status: Option<String> },
    /// ECS no longer knows the task (or its cluster): it is not running.
    Gone,
}

/// What the API needs from ECS.
pub trait WorkerControl: Send + Sync {
    fn stop_task(
        &self,
        cluster: &str,
        task: &str,
        reason: &str,
    ) -> impl Future<Output = Result<TaskStop, UpstreamError>> + Send;
}

/// ECS through the SDK.
#[derive(Debug, Clone)]
pub struct EcsWorkers {
    client: aws_sdk_ecs::Client,
}

impl EcsWorkers {
    pub fn new(client: aws_sdk_ecs::Client) -> Self {
        EcsWorkers { client }
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

fn is_not_found_message(message: Option<&str>) -> bool {
    message.is_some_and(|m| m.to_ascii_lowercase().contains("not found"))
}

impl WorkerControl for EcsWorkers {
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<TaskStop, UpstreamError> {
        match self.client.stop_task().cluster(cluster).task(task).reason(reason).send().await {
            Ok(out) => Ok(TaskStop::Accepted { last_status: out.task.and_then(|t| t.last_status) }),
            Err(err) if err.as_service_error().is_some_and(is_gone) => Ok(TaskStop::Gone),
            Err(err) => Err(UpstreamError::from_sdk("ecs", "StopTask", &err)),
        }
    }
}

/// One task as ECS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub arn: String,
    pub last_status: Option<String>,
    pub desired_status: Option<String>,
}

impl TaskState {
    pub fn is_stopped(&self) -> bool {
        self.last_status.as_deref() == Some("STOPPED")
    }

    /// ECS has been told to stop it (by the API or an earlier pass).
    pub fn stop_requested(&self) -> bool {
        self.desired_status.as_deref() == Some("STOPPED")
    }
}

/// A `DescribeTasks` answer: the tasks ECS knows, and those it does not
/// (reported as `MISSING` failures: long gone, so not running).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    pub found: Vec<TaskState>,
    pub missing: Vec<String>,
}

/// ECS's `DescribeTasks` limit.
pub const DESCRIBE_TASKS_MAX: usize = 100;

/// What the stop finalizer needs from ECS, beyond the API's `StopTask`.
pub trait WorkerFleet: WorkerControl {
    /// At most [`DESCRIBE_TASKS_MAX`] tasks of one cluster.
    fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> impl Future<Output = Result<Described, UpstreamError>> + Send;
    /// Every task of `cluster` started by `started_by` whose desired status is
    /// still `RUNNING` (all pages).
    fn list_running(
        &self,
        cluster: &str,
        started_by: &str,
    ) -> impl Future<Output = Result<Vec<String>, UpstreamError>> + Send;
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
            Err(err) => return Err(UpstreamError::from_sdk("ecs", "DescribeTasks", &err)),
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
                        crate::upstream::UpstreamKind::Fault,
                        format!("failure for {arn:?}: {reason:?}"),
                    ))
                }
            }
        }
        Ok(described)
    }

    async fn list_running(&self, cluster: &str, started_by: &str) -> Result<Vec<String>, UpstreamError> {
        let mut pages = self
            .client
            .list_tasks()
            .cluster(cluster)
            .started_by(started_by)
            .desired_status(DesiredStatus::Running)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => arns.extend(page.task_arns.unwrap_or_default()),
                Err(err) if matches!(err.as_service_error(), Some(ListTasksError::ClusterNotFoundException(_))) => {
                    return Ok(Vec::new())
                }
                Err(err) => return Err(UpstreamError::from_sdk("ecs", "ListTasks", &err)),
            }
        }
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
