//! Configuration read once per cold start, from the environment the template
//! (or `cargo lambda watch`) gives the function. A bad value stops the start
//! with a message naming the variable, instead of surfacing later as 500s.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

use crate::api::{ApiSettings, AuthMode};
use crate::service::FanOutLimits;

pub const DEFAULT_RUNS_TABLE: &str = "WorkflowRuns";

/// Set to `true` only for local runs. The deployed template never sets it.
pub const LOCAL_AUTH_VAR: &str = "ALLOW_UNAUTHENTICATED_LOCAL";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {why}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub why: &'static str,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub runs_table: String,
    pub fan_out: FanOutLimits,
    pub api: ApiSettings,
    pub sdk: SdkSettings,
}

/// Retry and timeout settings of the SDK clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkSettings {
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn number(&self, var: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(raw) = self.0.get(var) else { return Ok(default) };
        let n: u64 =
            raw.trim().parse().map_err(|_| ConfigError { var, value: raw.clone(), why: "not a whole number" })?;
        if n < min || n > max {
            return Err(ConfigError { var, value: raw.clone(), why: "out of range" });
        }
        Ok(n)
    }

    fn millis(&self, var: &'static str, default: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.number(var, default, min, max).map(Duration::from_millis)
    }

    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.0.get(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v.is_empty() || v == "false" || v == "0" => Ok(false),
            Some(v) if v == "true" || v == "1" => Ok(true),
            Some(_) => Err(ConfigError { var, value: self.0[var].clone(), why: "expected true or false" }),
        }
    }
}

impl ApiConfig {
    /// Read from a map, so tests need not touch the process environment.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<ApiConfig, ConfigError> {
        let env = Env(vars);
        let runs_table = vars.get("RUNS_TABLE").cloned().unwrap_or_else(|| DEFAULT_RUNS_TABLE.to_owned());
        if runs_table.len() < 3 || runs_table.len() > 255 {
            return Err(ConfigError {
                var: "RUNS_TABLE",
                value: runs_table,
                why: "a table name has 3 to 255 characters",
            });
        }
        Ok(ApiConfig {
            runs_table,
            fan_out: FanOutLimits {
                concurrency: env.number("STOP_CONCURRENCY", 32, 1, 1000)? as usize,
                budget: env.millis("STOP_BUDGET_MS", 10_000, 100, 900_000)?,
            },
            api: ApiSettings {
                auth: if env.flag(LOCAL_AUTH_VAR)? { AuthMode::AllowLocalUnauthenticated } else { AuthMode::Iam },
                deadline_margin: env.millis("DEADLINE_MARGIN_MS", 500, 0, 60_000)?,
            },
            sdk: SdkSettings {
                max_attempts: env.number("SDK_MAX_ATTEMPTS", 3, 1, 10)? as u32,
                connect_timeout: env.millis("SDK_CONNECT_TIMEOUT_MS", 2_000, 10, 60_000)?,
                attempt_timeout: env.millis("SDK_ATTEMPT_TIMEOUT_MS", 3_000, 10, 900_000)?,
                operation_timeout: env.millis("SDK_OPERATION_TIMEOUT_MS", 10_000, 10, 900_000)?,
            },
        })
    }

    pub fn from_env() -> Result<ApiConfig, ConfigError> {
        ApiConfig::from_map(&std::env::vars().collect())
    }
}

impl SdkSettings {
    /// The shared SDK configuration: region, credentials and endpoint (including
    /// `AWS_ENDPOINT_URL`, which points the clients at local stand-ins) come
    /// from the standard chain; retries and timeouts from these settings.
    pub async fn load(&self) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_attempt_timeout(self.attempt_timeout)
                    .operation_timeout(self.operation_timeout)
                    .build(),
            )
            .load()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_safe() {
        let c = ApiConfig::from_map(&HashMap::new()).unwrap();
        assert_eq!(c.runs_table, DEFAULT_RUNS_TABLE);
        assert_eq!(c.api.auth, AuthMode::Iam, "unauthenticated access must be opt-in");
        assert_eq!(c.fan_out.concurrency, 32);
    }

    #[test]
    fn local_mode_is_explicit() {
        let c = ApiConfig::from_map(&vars(&[(LOCAL_AUTH_VAR, "true")])).unwrap();
        assert_eq!(c.api.auth, AuthMode::AllowLocalUnauthenticated);
        assert_eq!(ApiConfig::from_map(&vars(&[(LOCAL_AUTH_VAR, "false")])).unwrap().api.auth, AuthMode::Iam);
        assert!(ApiConfig::from_map(&vars(&[(LOCAL_AUTH_VAR, "yes please")])).is_err());
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = ApiConfig::from_map(&vars(&[("STOP_CONCURRENCY", "0")])).unwrap_err();
        assert_eq!(err.var, "STOP_CONCURRENCY");
        let err = ApiConfig::from_map(&vars(&[("STOP_BUDGET_MS", "soon")])).unwrap_err();
        assert_eq!(err.var, "STOP_BUDGET_MS");
        assert!(err.to_string().contains("STOP_BUDGET_MS"));
        let c = ApiConfig::from_map(&vars(&[("STOP_CONCURRENCY", "7"), ("STOP_BUDGET_MS", "2500")])).unwrap();
        assert_eq!(c.fan_out, FanOutLimits { concurrency: 7, budget: Duration::from_millis(2500) });
    }
}
