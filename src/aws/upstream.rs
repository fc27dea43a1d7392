//! SDK failures (after the SDK's own retries) classified into the port's
//! [`UpstreamError`]: throttling, timeout or fault. The only place that reads
//! an `SdkError`.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::ports::{UpstreamError, UpstreamKind};

/// Error codes AWS services use for "too many requests".
pub(crate) const THROTTLING_CODES: &[&str] = &[
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

/// Error codes of a request the service refuses as invalid: retrying the
/// same request cannot help.
pub(crate) const REJECTED_CODES: &[&str] =
    &["ValidationException", "SerializationException", "InvalidParameterException"];

/// Is this DynamoDB's refusal of a write that would pass the item size limit?
pub(crate) fn is_item_too_large<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => {
            se.err().code() == Some("ValidationException")
                && se.err().message().is_some_and(|m| m.contains("Item size") && m.contains("maximum allowed size"))
        }
        _ => false,
    }
}

/// Did DynamoDB refuse the request as invalid (`ValidationException`)?
pub(crate) fn is_validation<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(se) if se.err().code() == Some("ValidationException"))
}

/// Classify any SDK error. Generic over the operation error so the DynamoDB
/// and ECS adapters share it (the `SdkError` type is the same smithy type
/// re-exported by every SDK crate).
pub(crate) fn from_sdk<E, R>(service: &'static str, operation: &'static str, err: &SdkError<E, R>) -> UpstreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let kind = match err {
        SdkError::TimeoutError(_) => UpstreamKind::Timeout,
        SdkError::ServiceError(se) => {
            if se.err().code().is_some_and(|c| THROTTLING_CODES.contains(&c)) {
                UpstreamKind::Throttled
            } else if se.err().code().is_some_and(|c| REJECTED_CODES.contains(&c)) {
                UpstreamKind::Rejected
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
