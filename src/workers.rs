//! ECS worker control: the narrow interface the service needs, and its ECS
//! adapter.

use std::future::Future;

use aws_sdk_ecs::operation::stop_task::StopTaskError;

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
