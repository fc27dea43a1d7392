//! Failures of the AWS services this control plane depends on, after the SDK's
//! own retries, reduced to what the caller can act on.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::ApiError;

/// What kind of upstream failure happened. The full SDK text stays in
/// `detail`, which is logged and never sent to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// The service said slow down, and the SDK's retries did not get through.
    Throttled,
    /// The SDK's operation or attempt timeout fired.
    Timeout,
    /// Anything else: a 5xx, a connection failure, a response we cannot read.
    Fault,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {operation} failed ({kind:?}): {detail}")]
pub struct UpstreamError {
    pub service: &'static str,
    pub operation: &'static str,
    pub kind: UpstreamKind,
    pub detail: String,
}

/// Error codes AWS services use for "too many requests".
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
];

impl UpstreamError {
    pub fn new(service: &'static str, operation: &'static str, kind: UpstreamKind, detail: impl Into<String>) -> Self {
        UpstreamError { service, operation, kind, detail: detail.into() }
    }

    /// Classify any SDK error. Generic over the operation error so the DynamoDB
    /// and ECS adapters share it (the `SdkError` type is the same smithy type
    /// re-exported by every SDK crate).
    pub fn from_sdk<E, R>(service: &'static str, operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let kind = match err {
            SdkError::TimeoutError(_) => UpstreamKind::Timeout,
            SdkError::ServiceError(se) => {
                if se.err().code().is_some_and(|c| THROTTLING_CODES.contains(&c)) {
                    UpstreamKind::Throttled
                } else {
                    UpstreamKind::Fault
                }
            }
            SdkError::DispatchFailure(df) if df.is_timeout() => UpstreamKind::Timeout,
            _ => UpstreamKind::Fault,
        };
        let detail = format!("{}", aws_smithy_types::error::display::DisplayErrorContext(err));
        UpstreamError::new(service, operation, kind, detail)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(err: UpstreamError) -> ApiError {
        match err.kind {
            UpstreamKind::Throttled => ApiError::throttled(match err.service {
                "dynamodb" => "RunTableThroughput",
                _ => "WorkerControlRate",
            }),
            UpstreamKind::Timeout => ApiError::timeout(),
            UpstreamKind::Fault => ApiError::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_modeled_errors_without_detail() {
        let secret = "arn:aws:iam::999999999999:role/internal stack trace";
        let throttled: ApiError = UpstreamError::new("dynamodb", "UpdateItem", UpstreamKind::Throttled, secret).into();
        assert_eq!(throttled.type_name(), "ThrottlingException");
        assert_eq!(throttled.body()["QuotaCode"], "RunTableThroughput");
        let timeout: ApiError = UpstreamError::new("ecs", "StopTask", UpstreamKind::Timeout, secret).into();
        assert_eq!(timeout.type_name(), "OperationTimeoutException");
        let fault: ApiError = UpstreamError::new("dynamodb", "GetItem", UpstreamKind::Fault, secret).into();
        assert_eq!(fault.type_name(), "InternalServerException");
        for e in [throttled, timeout, fault] {
            assert!(!e.body().to_string().contains("999999999999"), "detail leaked: {}", e.body());
        }
    }
}
