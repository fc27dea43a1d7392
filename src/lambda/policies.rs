//! Keeping the process's policy set ([`Authz`]) current: loaded once at
//! init, then read again every refresh interval by a task of the runtime.
//! Lambda freezes the process between invocations; the task's timer fires
//! on the first thaw after it is due, so a refresh runs beside a request,
//! never in front of it (the request decides with the set in place).
//!
//! - a read that fails (network, throttle, a missing parameter) keeps the set
//!   in place, logged; at init there is none (and the init read is bounded
//!   to 4 s, inside Lambda's 10 s init phase), so the function fails closed
//!   until a read succeeds (retried after 1 s, doubling up to the interval);
//! - a text that does not validate replaces the set with "deny everything"
//!   and logs why (fail closed, never back to an older set or to allow);
//! - an unchanged text is not parsed again.

use std::future::Future;
use std::time::Duration;

use crate::authz::Authz;

/// How long the init read may take.
pub const INIT_READ_TIMEOUT: Duration = Duration::from_secs(4);

/// Read `read` once and install it; the outcome is logged, and a failure
/// leaves `authz` failing closed. Returns the text installed, if any.
pub async fn load<F, Fut>(authz: &Authz, source: &str, read: &F) -> Option<String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let started = std::time::Instant::now();
    // Bounded well inside Lambda's 10 s init phase: a read that hangs fails
    // closed now and is retried by the refresh task a second later.
    let read = tokio::time::timeout(INIT_READ_TIMEOUT, read()).await.unwrap_or_else(|_| Err("timed out".into()));
    match read {
        Ok(text) => {
            install(authz, source, &text, started);
            Some(text)
        }
        Err(e) => {
            tracing::error!(source, error = %e, "policy set not read: every request is denied until it is");
            authz.fail(&format!("policy set at {source} not read: {e}"));
            None
        }
    }
}

fn install(authz: &Authz, source: &str, text: &str, started: std::time::Instant) {
    match authz.install(text) {
        Ok(()) => tracing::info!(
            source,
            policies = ?authz.policy_ids(),
            load_us = started.elapsed().as_micros() as u64,
            "policy set loaded"
        ),
        Err(e) => tracing::error!(source, error = %e, "policy set invalid: every request is denied (fail closed)"),
    }
}

/// Refresh `authz` from `read` every `every`, forever (spawn it). `last` is
/// the text [`load`] installed, if any.
pub async fn keep_fresh<F, Fut>(authz: Authz, source: String, every: Duration, mut last: Option<String>, read: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let first_retry = Duration::from_secs(1).min(every);
    let mut wait = if authz.is_usable() || last.is_some() { every } else { first_retry };
    loop {
        tokio::time::sleep(wait).await;
        match read().await {
            Ok(text) if last.as_deref() == Some(text.as_str()) => {
                tracing::debug!(source, "policy set unchanged");
                wait = every;
            }
            Ok(text) => {
                install(&authz, &source, &text, std::time::Instant::now());
                last = Some(text);
                wait = every;
            }
            Err(e) if last.is_some() => {
                tracing::warn!(source, error = %e, "policy set not read; the one in place is kept");
                wait = every;
            }
            Err(e) => {
                tracing::error!(source, error = %e, "policy set still not read: every request is denied");
                wait = (wait * 2).min(every);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::authz::{Action, Question, DEFAULT_POLICY};
    use crate::domain::{Caller, WorkflowArn};

    fn allowed(authz: &Authz) -> bool {
        let wf =
            WorkflowArn::parse("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/etl-abcDEF1234").unwrap();
        let caller =
            Caller::Iam { account: "123456789012".into(), principal: "arn:aws:iam::123456789012:user/a".into() };
        authz
            .decide(&Question { caller: &caller, action: Action::StopWorkflowRun, workflow: &wf, source_ip: None })
            .allowed
    }

    #[tokio::test(start_paused = true)]
    async fn reads_fail_closed_then_recover_keep_and_fail_closed_again() {
        let answers: Arc<Mutex<Vec<Result<String, String>>>> = Arc::new(Mutex::new(vec![
            Err("network".into()),         // init
            Err("still down".into()),      // retry after 1 s
            Ok(DEFAULT_POLICY.to_owned()), // retry after 2 s: loaded
            Err("blip".into()),            // kept
            Ok("permit (".into()),         // invalid: fail closed
            Ok(DEFAULT_POLICY.to_owned()), // good again
        ]));
        let read = {
            let answers = answers.clone();
            move || {
                let next = answers.lock().unwrap().remove(0);
                async move { next }
            }
        };
        let authz = Authz::fail_closed("not loaded yet");
        let last = load(&authz, "test", &read).await;
        assert!(last.is_none() && !allowed(&authz));
        tokio::spawn(keep_fresh(authz.clone(), "test".into(), Duration::from_secs(60), last, read));
        let step = |s| tokio::time::sleep(Duration::from_millis(s));
        step(1_100).await;
        assert!(!allowed(&authz), "still not read");
        step(2_000).await;
        assert!(allowed(&authz), "loaded on the second retry");
        step(60_000).await;
        assert!(allowed(&authz), "a failed read keeps the set in place");
        step(60_000).await;
        assert!(!allowed(&authz), "an invalid set fails closed");
        step(60_000).await;
        assert!(allowed(&authz), "and a valid one is used again");
    }
}
