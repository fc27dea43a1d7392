//! ECS through the SDK: the [`WorkerControl`] and [`WorkerFleet`] ports.

use aws_sdk_ecs::operation::describe_tasks::DescribeTasksError;
use aws_sdk_ecs::operation::list_tasks::ListTasksError;
use aws_sdk_ecs::operation::stop_task::StopTaskError;
use aws_sdk_ecs::types::DesiredStatus;

use super::upstream::from_sdk;
use crate::ports::{Described, TaskState, TaskStop, UpstreamError, UpstreamKind, WorkerControl, WorkerFleet};

/// ECS through the SDK.
#[derive(Debug, Clone)]
pub struct EcsWorkers {
    client: aws_sdk_ecs::Client,
}

impl EcsWorkers {
    pub fn new(client: aws_sdk_ecs::Client) -> Self {
        EcsWorkers { client }
    }

    /// A client built from the shared SDK configuration ([`super::sdk_config`]).
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        EcsWorkers::new(aws_sdk_ecs::Client::new(conf))
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
                Err(err) => return Err(from_sdk("ecs", "ListTasks", &err)),
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
