//! The AWS SDK edge: the only folder that names `aws_sdk_*` (and
//! `aws_config`). The adapters implement the [`crate::ports`] with the SDK
//! (and `ssm.rs` reads the policy set's text for `crate::authz`);
//! [`SdkSettings`] is how every client here retries and times out.

mod dynamo;
mod ecs;
mod ecs_direct;
mod eventbridge;
mod http;
mod item;
mod ssm;
mod upstream;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

pub use aws_config::SdkConfig;
pub use dynamo::DynamoRunStore;
pub use ecs::{no_sdk_retry_of_throttles, EcsWorkers, DIRECT_FALLBACK_METRIC};
pub use eventbridge::EventBridgePublisher;
pub use ssm::SsmPolicySource;

/// Retry and timeout settings of the SDK clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkSettings {
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    /// Live connections to one host at most (`None`: no bound); calls beyond
    /// it wait for a connection (`http.rs`).
    pub max_connections_per_host: Option<usize>,
}

impl SdkSettings {
    /// These settings on an SDK configuration loader, with one HTTP client
    /// for every client built from it (`http.rs`: one pool and trust store,
    /// which the direct `StopTask` shares).
    pub fn apply(&self, loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
        let loader = match http::shared_client(self.max_connections_per_host) {
            Ok(client) => loader.http_client(client),
            Err(why) => {
                tracing::warn!(%why, "each SDK client builds its own HTTP client; StopTask goes through the SDK only");
                loader
            }
        };
        loader.retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts)).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(self.connect_timeout)
                .operation_attempt_timeout(self.attempt_timeout)
                .operation_timeout(self.operation_timeout)
                .build(),
        )
    }
}

/// The shared SDK configuration of a function: region, credentials and
/// endpoint (including `AWS_ENDPOINT_URL`, which points the clients at local
/// stand-ins) from the standard chain; retries and timeouts from `settings`.
pub async fn sdk_config(settings: &SdkSettings) -> SdkConfig {
    settings.apply(aws_config::defaults(BehaviorVersion::latest())).load().await
}
