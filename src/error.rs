//! The six modeled errors of the service, and the one place that maps
//! everything that can go wrong to them: port failures ([`UpstreamError`],
//! [`StoreError`]) become errors here, and each error becomes its AWS JSON 1.0
//! shape ([`ErrorShape`]) here.
//!
//! Messages are written for the caller: they never carry SDK error text, other
//! tenants' data or internals (those go to the log where the error is raised).

use serde::Serialize;
use serde_json::Value;

use crate::domain::{FieldError, RunStatus};
use crate::ports::{StoreError, UpstreamError, UpstreamKind};

/// `ValidationExceptionReason` from the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationReason {
    UnknownOperation,
    CannotParse,
    FieldValidationFailed,
    Other,
}

impl ValidationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationReason::UnknownOperation => "unknownOperation",
            ValidationReason::CannotParse => "cannotParse",
            ValidationReason::FieldValidationFailed => "fieldValidationFailed",
            ValidationReason::Other => "other",
        }
    }
}

/// The service's error shapes, each with every member the model requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation { message: String, reason: ValidationReason, fields: Vec<FieldError> },
    #[error("{message}")]
    ResourceNotFound { message: String, resource_id: String, resource_type: &'static str },
    #[error("{message}")]
    AccessDenied { message: String },
    #[error("{message}")]
    Throttling {
        message: String,
        service_code: &'static str,
        quota_code: &'static str,
        retry_after_seconds: Option<i32>,
    },
    #[error("{message}")]
    InternalServer { message: String, retry_after_seconds: Option<i32> },
    #[error("{message}")]
    OperationTimeout { message: String },
}

/// `ServiceCode` reported with throttling: the service's own signing name.
pub const SERVICE_CODE: &str = "airflow-serverless";

impl ApiError {
    pub fn validation(reason: ValidationReason, message: impl Into<String>) -> ApiError {
        ApiError::Validation { message: message.into(), reason, fields: Vec::new() }
    }

    /// Every bad field at once, so a caller fixes its request in one go.
    pub fn fields(fields: Vec<FieldError>) -> ApiError {
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        ApiError::Validation {
            message: format!("{} validation error(s) detected: {}", fields.len(), names.join(", ")),
            reason: ValidationReason::FieldValidationFailed,
            fields,
        }
    }

    pub fn run_not_found(run_id: &str) -> ApiError {
        ApiError::ResourceNotFound {
            message: format!("Workflow run {run_id} was not found."),
            resource_id: run_id.to_owned(),
            resource_type: "WorkflowRun",
        }
    }

    /// A stop of a run that finished on its own: the real service's answer
    /// (apache/airflow#67578 works around exactly this). A `ValidationException`
    /// with reason `other`: retrying can never succeed.
    pub fn run_finished(status: RunStatus) -> ApiError {
        ApiError::validation(
            ValidationReason::Other,
            format!("The workflow run is already {status}; only STARTING, QUEUED or RUNNING runs can be stopped."),
        )
    }

    pub fn access_denied() -> ApiError {
        ApiError::AccessDenied { message: "You do not have sufficient permission to perform this action.".into() }
    }

    pub fn internal() -> ApiError {
        ApiError::InternalServer {
            message: "An unexpected server-side error occurred. Retry the request.".into(),
            retry_after_seconds: Some(2),
        }
    }

    /// A fault of ours that retrying cannot mend (an item outside the table
    /// contract, a write DynamoDB refuses as invalid): a 500 without a retry
    /// hint.
    pub fn internal_permanent() -> ApiError {
        ApiError::InternalServer {
            message: "The request cannot be completed because of a server-side problem with this run's stored data. \
                      Retrying will not help; the problem has been logged for the service's operators."
                .into(),
            retry_after_seconds: None,
        }
    }

    pub fn throttled(quota_code: &'static str) -> ApiError {
        ApiError::Throttling {
            message: "Rate exceeded. Retry the request with exponential backoff.".into(),
            service_code: SERVICE_CODE,
            quota_code,
            retry_after_seconds: Some(1),
        }
    }

    pub fn timeout() -> ApiError {
        ApiError::OperationTimeout {
            message: "The operation timed out. It is safe to retry: StopWorkflowRun is idempotent.".into(),
        }
    }

    /// The shape name: `__type` in the body and `x-amzn-ErrorType` in the header.
    pub fn type_name(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "ValidationException",
            ApiError::ResourceNotFound { .. } => "ResourceNotFoundException",
            ApiError::AccessDenied { .. } => "AccessDeniedException",
            ApiError::Throttling { .. } => "ThrottlingException",
            ApiError::InternalServer { .. } => "InternalServerException",
            ApiError::OperationTimeout { .. } => "OperationTimeoutException",
        }
    }

    /// Client errors are 400 (the API reference lists AccessDenied as 400 too);
    /// the model's faults are 500.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::InternalServer { .. } | ApiError::OperationTimeout { .. } => 500,
            _ => 400,
        }
    }

    /// The error's shape as the model defines it. botocore reads `__type`
    /// from the body, aws-sdk-rust `x-amzn-ErrorType` from the header; both
    /// are always set and always agree.
    pub fn shape(&self) -> ErrorShape<'_> {
        let mut shape = ErrorShape { type_name: self.type_name(), message: self.to_string(), ..ErrorShape::default() };
        match self {
            ApiError::Validation { reason, fields, .. } => {
                shape.reason = Some(reason.as_str());
                shape.field_list = (!fields.is_empty())
                    .then(|| fields.iter().map(|f| FieldShape { name: f.name, message: &f.message }).collect());
            }
            ApiError::ResourceNotFound { resource_id, resource_type, .. } => {
                shape.resource_id = Some(resource_id);
                shape.resource_type = Some(resource_type);
            }
            ApiError::Throttling { service_code, quota_code, retry_after_seconds, .. } => {
                shape.service_code = Some(service_code);
                shape.quota_code = Some(quota_code);
                shape.retry_after_seconds = *retry_after_seconds;
            }
            ApiError::InternalServer { retry_after_seconds, .. } => shape.retry_after_seconds = *retry_after_seconds,
            ApiError::AccessDenied { .. } | ApiError::OperationTimeout { .. } => {}
        }
        shape
    }

    /// The JSON body: [`ApiError::shape`] serialized.
    pub fn body(&self) -> Value {
        serde_json::to_value(self.shape()).expect("an error shape serializes")
    }
}

/// The members of the model's six error structures (each uses the ones it
/// defines), plus `__type`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorShape<'a> {
    #[serde(rename = "__type")]
    pub type_name: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_list: Option<Vec<FieldShape<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<i32>,
}

/// `ValidationExceptionField`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldShape<'a> {
    pub name: &'static str,
    pub message: &'a str,
}

/// A port failure as the caller sees it: throttled, timed out or our fault.
impl From<UpstreamError> for ApiError {
    fn from(err: UpstreamError) -> ApiError {
        match err.kind {
            UpstreamKind::Throttled => ApiError::throttled(match err.service {
                "dynamodb" => "RunTableThroughput",
                _ => "WorkerControlRate",
            }),
            UpstreamKind::Timeout => ApiError::timeout(),
            UpstreamKind::Fault => ApiError::internal(),
            UpstreamKind::Rejected => ApiError::internal_permanent(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Upstream(u) => u.into(),
            StoreError::Corrupt { .. } => ApiError::internal_permanent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Required members per error shape, copied from the service model.
    fn required(type_name: &str) -> &'static [&'static str] {
        match type_name {
            "ValidationException" => &["Message", "Reason"],
            "ResourceNotFoundException" => &["Message", "ResourceId", "ResourceType"],
            "AccessDeniedException" => &["Message"],
            "ThrottlingException" => &["Message", "ServiceCode", "QuotaCode"],
            "InternalServerException" => &["Message"],
            "OperationTimeoutException" => &[],
            other => panic!("unexpected {other}"),
        }
    }

    fn all() -> Vec<ApiError> {
        vec![
            ApiError::validation(ValidationReason::UnknownOperation, "Unknown operation"),
            ApiError::fields(vec![
                FieldError { name: "RunId", message: "bad".into() },
                FieldError { name: "WorkflowArn", message: "worse".into() },
            ]),
            ApiError::run_not_found("r1"),
            ApiError::access_denied(),
            ApiError::throttled("RunTableWriteThroughput"),
            ApiError::internal(),
            ApiError::timeout(),
        ]
    }

    #[test]
    fn every_error_carries_its_required_members_and_type() {
        for err in all() {
            let body = err.body();
            assert_eq!(body["__type"], err.type_name());
            for member in required(err.type_name()) {
                assert!(body.get(*member).is_some(), "{} lacks {member}: {body}", err.type_name());
            }
        }
    }

    #[test]
    fn statuses_match_the_model() {
        let statuses: Vec<(&str, u16)> = all().iter().map(|e| (e.type_name(), e.http_status())).collect();
        for (name, status) in statuses {
            let want = if matches!(name, "InternalServerException" | "OperationTimeoutException") { 500 } else { 400 };
            assert_eq!(status, want, "{name}");
        }
    }

    #[test]
    fn validation_body_lists_every_field() {
        let body = ApiError::fields(vec![
            FieldError { name: "RunId", message: "bad".into() },
            FieldError { name: "WorkflowArn", message: "worse".into() },
        ])
        .body();
        assert_eq!(body["Reason"], "fieldValidationFailed");
        assert_eq!(
            body["FieldList"],
            json!([{"Name": "RunId", "Message": "bad"}, {"Name": "WorkflowArn", "Message": "worse"}])
        );
        assert!(body["Message"].as_str().unwrap().contains("RunId, WorkflowArn"));
    }

    #[test]
    fn throttling_and_internal_tell_when_to_retry() {
        let t = ApiError::throttled("RunTableWriteThroughput").body();
        assert_eq!(t["ServiceCode"], SERVICE_CODE);
        assert_eq!(t["QuotaCode"], "RunTableWriteThroughput");
        assert!(t["RetryAfterSeconds"].as_i64().unwrap() >= 1);
        assert!(ApiError::internal().body()["RetryAfterSeconds"].as_i64().unwrap() >= 1);
        assert_eq!(ApiError::run_not_found("r1").body()["ResourceType"], "WorkflowRun");
    }

    #[test]
    fn upstream_failures_map_to_modeled_errors_without_detail() {
        let secret = "arn:aws:iam::999999999999:role/internal stack trace";
        let throttled: ApiError = UpstreamError::new("dynamodb", "UpdateItem", UpstreamKind::Throttled, secret).into();
        assert_eq!(throttled.type_name(), "ThrottlingException");
        assert_eq!(throttled.body()["QuotaCode"], "RunTableThroughput");
        let timeout: ApiError = UpstreamError::new("ecs", "StopTask", UpstreamKind::Timeout, secret).into();
        assert_eq!(timeout.type_name(), "OperationTimeoutException");
        let fault: ApiError = UpstreamError::new("dynamodb", "GetItem", UpstreamKind::Fault, secret).into();
        assert_eq!(fault.type_name(), "InternalServerException");
        let rejected: ApiError = UpstreamError::new("dynamodb", "UpdateItem", UpstreamKind::Rejected, secret).into();
        assert_eq!((rejected.type_name(), rejected.http_status()), ("InternalServerException", 500));
        assert!(
            rejected.body().get("RetryAfterSeconds").is_none(),
            "a request that cannot succeed is not told to retry"
        );
        assert!(!rejected.to_string().contains("Retry the request"));
        for e in [throttled, timeout, fault, rejected] {
            assert!(!e.body().to_string().contains("999999999999"), "detail leaked: {}", e.body());
        }
    }
}
