//! The six modeled errors of the service, and the one place that turns them
//! into AWS JSON 1.0 error responses.
//!
//! Everything that can go wrong ends as one of these. Messages are written for
//! the caller: they never carry SDK error text, other tenants' data or internals
//! (those go to the log where the error is raised).

use serde_json::{json, Map, Value};

use crate::model::FieldError;

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

    pub fn access_denied() -> ApiError {
        ApiError::AccessDenied { message: "You do not have sufficient permission to perform this action.".into() }
    }

    pub fn internal() -> ApiError {
        ApiError::InternalServer {
            message: "An unexpected server-side error occurred. Retry the request.".into(),
            retry_after_seconds: Some(2),
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

    /// The JSON body. botocore reads `__type` from the body, aws-sdk-rust from
    /// the header; both are always set and always agree.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("__type".into(), json!(self.type_name()));
        body.insert("Message".into(), json!(self.to_string()));
        match self {
            ApiError::Validation { reason, fields, .. } => {
                body.insert("Reason".into(), json!(reason.as_str()));
                if !fields.is_empty() {
                    let list: Vec<Value> =
                        fields.iter().map(|f| json!({"Name": f.name, "Message": f.message})).collect();
                    body.insert("FieldList".into(), Value::Array(list));
                }
            }
            ApiError::ResourceNotFound { resource_id, resource_type, .. } => {
                body.insert("ResourceId".into(), json!(resource_id));
                body.insert("ResourceType".into(), json!(resource_type));
            }
            ApiError::Throttling { service_code, quota_code, retry_after_seconds, .. } => {
                body.insert("ServiceCode".into(), json!(service_code));
                body.insert("QuotaCode".into(), json!(quota_code));
                if let Some(s) = retry_after_seconds {
                    body.insert("RetryAfterSeconds".into(), json!(s));
                }
            }
            ApiError::InternalServer { retry_after_seconds, .. } => {
                if let Some(s) = retry_after_seconds {
                    body.insert("RetryAfterSeconds".into(), json!(s));
                }
            }
            ApiError::AccessDenied { .. } | ApiError::OperationTimeout { .. } => {}
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
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
}
