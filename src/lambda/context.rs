//! What an invocation's context says: the Lambda deadline and request id,
//! and from API Gateway's request context the caller and its source IP.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_in_the_past_is_no_deadline() {
        assert!(deadline_instant(600_000, Duration::ZERO).is_none());
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(deadline_instant(now_ms + 60_000, Duration::from_secs(1)).is_some());
    }
}
