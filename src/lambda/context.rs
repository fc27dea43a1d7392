//! What an invocation's context says: the Lambda deadline and request id,
//! and from API Gateway's request context the caller and its source IP.

use std::time::Duration;

use lambda_http::aws_lambda_events::apigw::ApiGatewayRequestAuthorizerIamDescription;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use tokio::time::Instant;

use crate::domain::Caller;
use crate::error::ApiError;

/// How requests without an IAM identity are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Deployed: every request must carry the IAM authorizer's identity.
    Iam,
    /// Local development only (`cargo lambda watch`, tests): a request with no
    /// identity is served as `local:unauthenticated`. One that does carry an
    /// identity is still checked.
    AllowLocalUnauthenticated,
}

/// A Lambda deadline (epoch milliseconds) as a tokio instant, less `margin`.
/// A deadline that is not in the future is no deadline: real Lambda never
/// sends one, but emulators do (`cargo lambda watch` sends the timeout, not an
/// epoch time), and treating it as "already late" would refuse every request.
/// The SDK's timeouts and the configured budgets still bound the work then.
pub fn deadline_instant(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    if deadline_ms <= now_ms {
        tracing::debug!(deadline_ms, now_ms, "Lambda deadline not in the future; ignored");
        return None;
    }
    let left = Duration::from_millis(deadline_ms - now_ms).saturating_sub(margin);
    Some(Instant::now() + left)
}

/// The Lambda request id (a fresh one where no runtime gave one).
pub(crate) fn request_id_of(req: &Request) -> String {
    req.lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub(crate) fn deadline_of(req: &Request, margin: Duration) -> Option<Instant> {
    deadline_instant(req.lambda_context_ref()?.deadline, margin)
}

pub(crate) fn source_ip(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The caller as API Gateway's IAM authorizer saw it.
pub(crate) fn caller_of(req: &Request, auth: AuthMode) -> Result<Caller, ApiError> {
    let iam = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref()),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    match iam {
        // A Cognito identity pool's guest (unauthenticated) identity holds
        // credentials anyone can get from the pool: never a caller here,
        // whatever the policies and the pool's role allow.
        Some(iam) if is_cognito_unauthenticated(iam) => {
            tracing::warn!(
                pool = iam.cognito_identity.as_ref().and_then(|c| c.identity_pool_id.as_deref()).unwrap_or(""),
                "Cognito unauthenticated identity refused"
            );
            Err(ApiError::access_denied())
        }
        Some(iam) => {
            let account = iam.account_id.as_deref().filter(|a| !a.is_empty());
            let principal = iam.user_arn.as_deref().or(iam.caller_id.as_deref()).filter(|p| !p.is_empty());
            match (account, principal) {
                (Some(account), Some(principal)) => {
                    Ok(Caller::Iam { account: account.to_owned(), principal: principal.to_owned() })
                }
                _ => {
                    tracing::warn!("IAM authorizer context without account or principal");
                    Err(ApiError::access_denied())
                }
            }
        }
        None if auth == AuthMode::AllowLocalUnauthenticated => Ok(Caller::LocalUnauthenticated),
        None => {
            tracing::warn!("request without an IAM identity refused");
            Err(ApiError::access_denied())
        }
    }
}

/// Whether the IAM authorizer context names a Cognito identity authenticated
/// as a guest (`amr` carries `unauthenticated`), or one whose `amr` says
/// nothing of how it was authenticated.
fn is_cognito_unauthenticated(iam: &ApiGatewayRequestAuthorizerIamDescription) -> bool {
    match &iam.cognito_identity {
        None => false,
        Some(c) => c.amr.is_empty() || c.amr.iter().any(|m| m.trim().eq_ignore_ascii_case("unauthenticated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_in_the_past_is_no_deadline() {
        assert!(deadline_instant(600_000, Duration::ZERO).is_none());
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(deadline_instant(now_ms + 60_000, Duration::from_secs(1)).is_some());
    }

    fn event(cognito: Option<serde_json::Value>) -> Request {
        let mut iam = serde_json::json!({
            "accessKey": "ASIAEXAMPLE", "accountId": "123456789012", "callerId": "AROAEXAMPLE:CognitoIdentityCredentials",
            "principalOrgId": null, "userId": "AROAEXAMPLE:CognitoIdentityCredentials",
            "userArn": "arn:aws:sts::123456789012:assumed-role/Cognito_PoolUnauth_Role/CognitoIdentityCredentials"
        });
        if let Some(c) = cognito {
            iam["cognitoIdentity"] = c;
        }
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "POST /", "rawPath": "/", "rawQueryString": "",
            "headers": {"content-type": "application/x-amz-json-1.0"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc123", "requestId": "r", "routeKey": "POST /", "stage": "$default",
                "time": "21/Nov/2026:10:00:00 +0000", "timeEpoch": 1_795_000_000_000_i64,
                "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "t"},
                "authorizer": {"iam": iam}
            },
            "body": "{}", "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[test]
    fn cognito_unauthenticated_identities_are_refused() {
        let pool = "us-east-1:00000000-0000-0000-0000-000000000000";
        for amr in
            [serde_json::json!(["unauthenticated"]), serde_json::json!(["Unauthenticated "]), serde_json::json!([])]
        {
            let req = event(Some(serde_json::json!({"amr": amr, "identityId": "x", "identityPoolId": pool})));
            for mode in [AuthMode::Iam, AuthMode::AllowLocalUnauthenticated] {
                assert_eq!(caller_of(&req, mode).unwrap_err().type_name(), "AccessDeniedException", "{amr}");
            }
        }
        let authenticated = serde_json::json!({
            "amr": ["authenticated", "cognito-idp.us-east-1.amazonaws.com/us-east-1_x"], "identityId": "x", "identityPoolId": pool
        });
        assert!(matches!(caller_of(&event(Some(authenticated)), AuthMode::Iam), Ok(Caller::Iam { .. })));
        assert!(matches!(caller_of(&event(None), AuthMode::Iam), Ok(Caller::Iam { .. })));
        assert_eq!(source_ip(&event(None)).as_deref(), Some("203.0.113.7"));
    }
}
