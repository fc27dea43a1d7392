//! ECS worker control: the narrow interface the service needs, and its ECS
//! adapter.

use std::future::Future;

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
fn is_gone(code: Option<&str>, message: Option<&str>) -> bool {
    match code {
        Some("ClusterNotFoundException") => true,
        Some("InvalidParameterException") => message.is_some_and(|m| m.to_ascii_lowercase().contains("not found")),
        _ => false,
    }
}

impl WorkerControl for EcsWorkers {
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<TaskStop, UpstreamError> {
        use aws_sdk_ecs::error::ProvideErrorMetadata;
        match self.client.stop_task().cluster(cluster).task(task).reason(reason).send().await {
            Ok(out) => Ok(TaskStop::Accepted { last_status: out.task.and_then(|t| t.last_status) }),
            Err(err) => {
                if let Some(se) = err.as_service_error() {
                    if is_gone(se.code(), se.message()) {
                        return Ok(TaskStop::Gone);
                    }
                }
                Err(UpstreamError::from_sdk("ecs", "StopTask", &err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_gone;

    #[test]
    fn gone_is_only_not_found() {
        assert!(is_gone(Some("InvalidParameterException"), Some("The referenced task was not found.")));
        assert!(is_gone(Some("ClusterNotFoundException"), Some("Cluster not found.")));
        assert!(!is_gone(Some("InvalidParameterException"), Some("reason too long")));
        assert!(!is_gone(Some("ServerException"), None));
        assert!(!is_gone(None, None));
    }
}
