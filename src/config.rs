//! The composition root: configuration read once per cold start, from the
//! environment the template (or `cargo lambda watch`) gives the function, into
//! the settings each part takes. Nothing in the crate depends on this module;
//! only the entry points (`src/bin/`) read it. A bad value stops the start
//! with a message naming the variable, instead of surfacing later as 500s.

use std::collections::HashMap;
use std::time::Duration;

use crate::aws::SdkSettings;
use crate::finalize::FinalizerLimits;
use crate::lambda::http::{ApiSettings, AuthMode};
use crate::pacing::EcsRates;
use crate::stop::FanOutLimits;

pub(crate) const DEFAULT_RUNS_TABLE: &str = "WorkflowRuns";

/// `false` turns the direct `StopTask` off: every call through the SDK client.
pub const DIRECT_STOP_TASK_VAR: &str = "ECS_DIRECT_STOP_TASK";

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
    pub ecs_rates: EcsRates,
    /// `ECS_DIRECT_STOP_TASK` (default on): `StopTask` sent first without
    /// the SDK's orchestrator, on its connector (`aws::EcsWorkers`).
    pub ecs_direct_stop_task: bool,
    /// `ECS_CONNECTIONS_AT_INIT` (default 1): connections to ECS opened in
    /// the background at init, for a cold process's first wave (one is
    /// enough where ECS negotiates `h2`: every call then shares it).
    pub ecs_connections_at_init: usize,
    pub policies: PolicySource,
    /// How often a configured policy set is read again.
    pub policy_refresh: Duration,
}

/// The SSM parameter that holds the policy set (deployed; the template's
/// `AuthzPolicyParameter`).
pub const POLICY_PARAMETER_VAR: &str = "AUTHZ_POLICY_PARAMETER";
/// A file that holds the policy set (local: `make local AUTHZ_POLICY_FILE=…`).
pub const POLICY_FILE_VAR: &str = "AUTHZ_POLICY_FILE";

/// Where the API's policy set comes from (docs/authorization.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Nothing configured: the shipped default policy (today's rule).
    Default,
    /// An SSM parameter, by name or ARN.
    SsmParameter(String),
    /// A file (local development).
    File(String),
}

/// An SSM parameter name (`/a/b`, `a.b-c_d`) or ARN, as `GetParameter` takes it.
fn policy_source(vars: &HashMap<String, String>) -> Result<PolicySource, ConfigError> {
    let get = |var| vars.get(var).map(|v: &String| v.trim().to_owned()).filter(|v| !v.is_empty());
    match (get(POLICY_PARAMETER_VAR), get(POLICY_FILE_VAR)) {
        (Some(_), Some(file)) => Err(ConfigError {
            var: POLICY_FILE_VAR,
            value: file,
            why: "set either AUTHZ_POLICY_PARAMETER or AUTHZ_POLICY_FILE, not both",
        }),
        (Some(name), None) => {
            let ok = name.len() <= 2048
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_.-:".contains(c))
                && !name.starts_with("aws")
                && !name.starts_with("ssm");
            if ok {
                Ok(PolicySource::SsmParameter(name))
            } else {
                Err(ConfigError { var: POLICY_PARAMETER_VAR, value: name, why: "not an SSM parameter name or ARN" })
            }
        }
        (None, Some(file)) => Ok(PolicySource::File(file)),
        (None, None) => Ok(PolicySource::Default),
    }
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

    fn seconds(&self, var: &'static str, default: Duration, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.number(var, default.as_secs(), min, max).map(Duration::from_secs)
    }

    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        self.flag_or(var, false)
    }

    /// `true`/`1` or `false`/`0`; unset or empty: `default`.
    fn flag_or(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.0.get(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v.is_empty() => Ok(default),
            Some(v) if v == "false" || v == "0" => Ok(false),
            Some(v) if v == "true" || v == "1" => Ok(true),
            Some(_) => Err(ConfigError { var, value: self.0[var].clone(), why: "expected true or false" }),
        }
    }
}

impl ApiConfig {
    /// Read from a map, so tests need not touch the process environment.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<ApiConfig, ConfigError> {
        let env = Env(vars);
        Ok(ApiConfig {
            runs_table: runs_table(vars)?,
            fan_out: FanOutLimits {
                concurrency: env.number("STOP_CONCURRENCY", 100, 1, 1000)? as usize,
                budget: env.millis("STOP_BUDGET_MS", 10_000, 100, 900_000)?,
            },
            api: ApiSettings {
                auth: if env.flag(LOCAL_AUTH_VAR)? { AuthMode::AllowLocalUnauthenticated } else { AuthMode::Iam },
                deadline_margin: env.millis("DEADLINE_MARGIN_MS", 500, 0, 60_000)?,
            },
            sdk: sdk_settings(&env)?,
            ecs_rates: ecs_rates(&env)?,
            ecs_direct_stop_task: env.flag_or(DIRECT_STOP_TASK_VAR, true)?,
            ecs_connections_at_init: env.number("ECS_CONNECTIONS_AT_INIT", 1, 0, 1000)? as usize,
            policies: policy_source(vars)?,
            policy_refresh: Duration::from_secs(env.number("AUTHZ_REFRESH_SECONDS", 60, 1, 86_400)?),
        })
    }

    pub fn from_env() -> Result<ApiConfig, ConfigError> {
        ApiConfig::from_map(&std::env::vars().collect())
    }
}

/// Configuration of the stop finalizer.
#[derive(Debug, Clone)]
pub struct FinalizerConfig {
    pub runs_table: String,
    pub limits: FinalizerLimits,
    pub deadline_margin: Duration,
    pub sdk: SdkSettings,
    pub ecs_rates: EcsRates,
    /// As [`ApiConfig::ecs_direct_stop_task`].
    pub ecs_direct_stop_task: bool,
}

impl FinalizerConfig {
    pub fn from_map(vars: &HashMap<String, String>) -> Result<FinalizerConfig, ConfigError> {
        let env = Env(vars);
        let defaults = FinalizerLimits::default();
        Ok(FinalizerConfig {
            runs_table: runs_table(vars)?,
            limits: FinalizerLimits {
                wait: env.millis("FINALIZER_WAIT_MS", defaults.wait.as_millis() as u64, 100, 900_000)?,
                poll_initial: env.millis("FINALIZER_POLL_MS", defaults.poll_initial.as_millis() as u64, 10, 60_000)?,
                poll_max: env.millis("FINALIZER_POLL_MAX_MS", defaults.poll_max.as_millis() as u64, 10, 300_000)?,
                run_concurrency: env.number("FINALIZER_RUN_CONCURRENCY", defaults.run_concurrency as u64, 1, 1000)?
                    as usize,
                stop_concurrency: env.number("STOP_CONCURRENCY", defaults.stop_concurrency as u64, 1, 1000)? as usize,
                stop_deadline: env.seconds("STOP_DEADLINE_SECONDS", defaults.stop_deadline, 60, 86_400)?,
                sweep_settle: env.seconds("SWEEP_SETTLE_SECONDS", defaults.sweep_settle, 0, 300)?,
                missing_confirm: env.seconds("MISSING_CONFIRM_SECONDS", defaults.missing_confirm, 1, 300)?,
                post_stop_sweep: env.seconds("POST_STOP_SWEEP_SECONDS", defaults.post_stop_sweep, 0, 3_600)?,
            },
            deadline_margin: env.millis("DEADLINE_MARGIN_MS", 2_000, 0, 60_000)?,
            sdk: sdk_settings(&env)?,
            ecs_rates: ecs_rates(&env)?,
            ecs_direct_stop_task: env.flag_or(DIRECT_STOP_TASK_VAR, true)?,
        })
    }

    pub fn from_env() -> Result<FinalizerConfig, ConfigError> {
        FinalizerConfig::from_map(&std::env::vars().collect())
    }
}

/// Configuration of the reconciler: the finalizer's, plus which runs count
/// as stranded and where to find them.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    pub finalizer: FinalizerConfig,
    /// Runs `STOPPING` longer than this are finalized by the reconciler.
    pub reconcile_after: Duration,
    pub stopping_index: String,
}

impl ReconcilerConfig {
    pub fn from_map(vars: &HashMap<String, String>) -> Result<ReconcilerConfig, ConfigError> {
        let env = Env(vars);
        let stopping_index = vars.get("STOPPING_INDEX").cloned().unwrap_or_else(|| "StoppingRuns".to_owned());
        if stopping_index.len() < 3 || stopping_index.len() > 255 {
            return Err(ConfigError {
                var: "STOPPING_INDEX",
                value: stopping_index,
                why: "an index name has 3 to 255 characters",
            });
        }
        Ok(ReconcilerConfig {
            finalizer: FinalizerConfig::from_map(vars)?,
            reconcile_after: env.millis("RECONCILE_AFTER_MS", 60_000, 1_000, 86_400_000)?,
            stopping_index,
        })
    }

    pub fn from_env() -> Result<ReconcilerConfig, ConfigError> {
        ReconcilerConfig::from_map(&std::env::vars().collect())
    }
}

/// Configuration of the run-events function: the bus and the source of its
/// events.
#[derive(Debug, Clone)]
pub struct RunEventsConfig {
    /// `EVENT_BUS_NAME`: a bus name or ARN (default: the account's `default`).
    pub bus: String,
    /// `EVENT_SOURCE` (default `mwaa-stop`). EventBridge refuses custom
    /// events whose source starts with `aws.`, so that is refused here, at
    /// the start, rather than as a failed entry of every `PutEvents`.
    pub source: String,
    pub sdk: SdkSettings,
}

impl RunEventsConfig {
    pub fn from_map(vars: &HashMap<String, String>) -> Result<RunEventsConfig, ConfigError> {
        let env = Env(vars);
        let text = |var: &'static str, default: &str| {
            vars.get(var).map(|v| v.trim().to_owned()).unwrap_or_else(|| default.to_owned())
        };
        let bus = text("EVENT_BUS_NAME", "default");
        if bus.is_empty() || bus.len() > 1600 {
            return Err(ConfigError {
                var: "EVENT_BUS_NAME",
                value: bus,
                why: "a bus name or ARN has 1 to 1,600 characters",
            });
        }
        let source = text("EVENT_SOURCE", "mwaa-stop");
        if source.is_empty() || source.len() > 256 || source.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(ConfigError {
                var: "EVENT_SOURCE",
                value: source,
                why: "an event source has 1 to 256 printable characters",
            });
        }
        if source.to_ascii_lowercase().starts_with("aws.") {
            return Err(ConfigError {
                var: "EVENT_SOURCE",
                value: source,
                why: "EventBridge refuses custom events whose source starts with aws.",
            });
        }
        Ok(RunEventsConfig { bus, source, sdk: sdk_settings(&env)? })
    }

    pub fn from_env() -> Result<RunEventsConfig, ConfigError> {
        RunEventsConfig::from_map(&std::env::vars().collect())
    }
}

/// The `Stack` dimension of the function's metrics (`METRICS_STACK`; the
/// template sets the stack name), `local` when unset.
pub fn metrics_stack() -> String {
    std::env::var("METRICS_STACK").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "local".to_owned())
}

fn runs_table(vars: &HashMap<String, String>) -> Result<String, ConfigError> {
    let runs_table = vars.get("RUNS_TABLE").cloned().unwrap_or_else(|| DEFAULT_RUNS_TABLE.to_owned());
    if runs_table.len() < 3 || runs_table.len() > 255 {
        return Err(ConfigError { var: "RUNS_TABLE", value: runs_table, why: "a table name has 3 to 255 characters" });
    }
    Ok(runs_table)
}

fn sdk_settings(env: &Env) -> Result<SdkSettings, ConfigError> {
    Ok(SdkSettings {
        max_attempts: env.number("SDK_MAX_ATTEMPTS", 3, 1, 10)? as u32,
        connect_timeout: env.millis("SDK_CONNECT_TIMEOUT_MS", 2_000, 10, 60_000)?,
        attempt_timeout: env.millis("SDK_ATTEMPT_TIMEOUT_MS", 3_000, 10, 900_000)?,
        operation_timeout: env.millis("SDK_OPERATION_TIMEOUT_MS", 10_000, 10, 900_000)?,
        max_connections_per_host: match env.number("HTTP_MAX_CONNECTIONS_PER_HOST", 0, 0, 10_000)? {
            0 => None,
            n => Some(n as usize),
        },
    })
}

/// The account's ECS buckets (defaults: the published ones) and the share
/// of the `StopTask` refill left to the schedulers' `RunTask`.
fn ecs_rates(env: &Env) -> Result<EcsRates, ConfigError> {
    let d = EcsRates::default();
    Ok(EcsRates {
        stop_burst: env.number("ECS_STOP_BURST", u64::from(d.stop_burst), 1, 10_000)? as u32,
        stop_rate: env.number("ECS_STOP_RATE", d.stop_rate as u64, 1, 10_000)? as f64,
        read_burst: env.number("ECS_READ_BURST", u64::from(d.read_burst), 1, 10_000)? as u32,
        read_rate: env.number("ECS_READ_RATE", d.read_rate as u64, 1, 10_000)? as f64,
        reserve: env.number("ECS_RUNTASK_RESERVE_PERCENT", (d.reserve * 100.0).round() as u64, 0, 90)? as f64 / 100.0,
    })
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
        assert_eq!(c.fan_out.concurrency, 100, "one wave up to ECS's burst");
        assert_eq!(c.ecs_rates, EcsRates::default());
    }

    #[test]
    fn the_direct_stop_task_is_on_unless_turned_off() {
        assert!(ApiConfig::from_map(&HashMap::new()).unwrap().ecs_direct_stop_task);
        assert!(FinalizerConfig::from_map(&vars(&[(DIRECT_STOP_TASK_VAR, "")])).unwrap().ecs_direct_stop_task);
        assert!(!ApiConfig::from_map(&vars(&[(DIRECT_STOP_TASK_VAR, "false")])).unwrap().ecs_direct_stop_task);
        assert!(!FinalizerConfig::from_map(&vars(&[(DIRECT_STOP_TASK_VAR, "0")])).unwrap().ecs_direct_stop_task);
        assert_eq!(ApiConfig::from_map(&vars(&[(DIRECT_STOP_TASK_VAR, "off")])).unwrap_err().var, DIRECT_STOP_TASK_VAR);
        let c =
            ApiConfig::from_map(&vars(&[("ECS_CONNECTIONS_AT_INIT", "20"), ("HTTP_MAX_CONNECTIONS_PER_HOST", "16")]));
        let c = c.unwrap();
        assert_eq!((c.ecs_connections_at_init, c.sdk.max_connections_per_host), (20, Some(16)));
        let c = ApiConfig::from_map(&HashMap::new()).unwrap();
        assert_eq!((c.ecs_connections_at_init, c.sdk.max_connections_per_host), (1, None), "one opened, no bound");
    }

    #[test]
    fn ecs_rates_are_read_and_checked() {
        let c = FinalizerConfig::from_map(&vars(&[
            ("ECS_STOP_RATE", "20"),
            ("ECS_READ_BURST", "50"),
            ("ECS_RUNTASK_RESERVE_PERCENT", "0"),
        ]))
        .unwrap();
        assert_eq!((c.ecs_rates.stop_rate, c.ecs_rates.read_burst, c.ecs_rates.reserve), (20.0, 50, 0.0));
        assert_eq!(c.ecs_rates.stop_burst, 100);
        for (var, bad) in [("ECS_RUNTASK_RESERVE_PERCENT", "95"), ("ECS_STOP_RATE", "0"), ("ECS_READ_RATE", "fast")] {
            assert_eq!(ApiConfig::from_map(&vars(&[(var, bad)])).unwrap_err().var, var);
        }
    }

    #[test]
    fn the_policy_source_is_one_place_or_the_default() {
        let c = ApiConfig::from_map(&HashMap::new()).unwrap();
        assert_eq!((c.policies, c.policy_refresh), (PolicySource::Default, Duration::from_secs(60)));
        let c = ApiConfig::from_map(&vars(&[
            (POLICY_PARAMETER_VAR, "/mwaa-stop/policies"),
            ("AUTHZ_REFRESH_SECONDS", "300"),
        ]))
        .unwrap();
        assert_eq!(
            (c.policies, c.policy_refresh),
            (PolicySource::SsmParameter("/mwaa-stop/policies".into()), Duration::from_secs(300))
        );
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/mwaa-stop/policies";
        assert_eq!(
            ApiConfig::from_map(&vars(&[(POLICY_PARAMETER_VAR, arn)])).unwrap().policies,
            PolicySource::SsmParameter(arn.into())
        );
        assert_eq!(
            ApiConfig::from_map(&vars(&[(POLICY_FILE_VAR, "/tmp/p.cedar")])).unwrap().policies,
            PolicySource::File("/tmp/p.cedar".into())
        );
        assert_eq!(
            ApiConfig::from_map(&vars(&[(POLICY_PARAMETER_VAR, "  ")])).unwrap().policies,
            PolicySource::Default
        );
        let both = vars(&[(POLICY_PARAMETER_VAR, "/p"), (POLICY_FILE_VAR, "/tmp/p.cedar")]);
        assert_eq!(ApiConfig::from_map(&both).unwrap_err().var, POLICY_FILE_VAR);
        for bad in ["/p q", "/p;rm", "awsx"] {
            assert_eq!(
                ApiConfig::from_map(&vars(&[(POLICY_PARAMETER_VAR, bad)])).unwrap_err().var,
                POLICY_PARAMETER_VAR
            );
        }
        assert_eq!(
            ApiConfig::from_map(&vars(&[("AUTHZ_REFRESH_SECONDS", "0")])).unwrap_err().var,
            "AUTHZ_REFRESH_SECONDS"
        );
    }

    #[test]
    fn local_mode_is_explicit() {
        let c = ApiConfig::from_map(&vars(&[(LOCAL_AUTH_VAR, "true")])).unwrap();
        assert_eq!(c.api.auth, AuthMode::AllowLocalUnauthenticated);
        assert_eq!(ApiConfig::from_map(&vars(&[(LOCAL_AUTH_VAR, "false")])).unwrap().api.auth, AuthMode::Iam);
        assert!(ApiConfig::from_map(&vars(&[(LOCAL_AUTH_VAR, "yes please")])).is_err());
    }

    #[test]
    fn finalizer_config_reads_its_bounds() {
        let c = FinalizerConfig::from_map(&vars(&[("FINALIZER_WAIT_MS", "30000"), ("RUNS_TABLE", "Runs")])).unwrap();
        assert_eq!(c.limits.wait, Duration::from_secs(30));
        assert_eq!(c.runs_table, "Runs");
        assert_eq!(
            FinalizerConfig::from_map(&vars(&[("FINALIZER_POLL_MS", "x")])).unwrap_err().var,
            "FINALIZER_POLL_MS"
        );
    }

    #[test]
    fn the_stop_deadline_and_the_verdict_bounds_are_read_and_checked() {
        let c = FinalizerConfig::from_map(&HashMap::new()).unwrap();
        assert_eq!(c.limits.stop_deadline, Duration::from_secs(600), "Fargate's 120 s stopTimeout and deprovisioning");
        assert_eq!(c.limits.sweep_settle, Duration::from_secs(10));
        assert_eq!(c.limits.missing_confirm, Duration::from_secs(5));
        assert_eq!(c.limits.post_stop_sweep, Duration::from_secs(300));
        let c = FinalizerConfig::from_map(&vars(&[
            ("STOP_DEADLINE_SECONDS", "900"),
            ("SWEEP_SETTLE_SECONDS", "0"),
            ("MISSING_CONFIRM_SECONDS", "8"),
            ("POST_STOP_SWEEP_SECONDS", "0"),
        ]))
        .unwrap();
        assert_eq!(
            (c.limits.stop_deadline, c.limits.sweep_settle, c.limits.missing_confirm, c.limits.post_stop_sweep),
            (Duration::from_secs(900), Duration::ZERO, Duration::from_secs(8), Duration::ZERO)
        );
        for (var, bad) in
            [("STOP_DEADLINE_SECONDS", "10"), ("MISSING_CONFIRM_SECONDS", "0"), ("SWEEP_SETTLE_SECONDS", "x")]
        {
            assert_eq!(FinalizerConfig::from_map(&vars(&[(var, bad)])).unwrap_err().var, var);
        }
    }

    #[test]
    fn reconciler_config_reads_its_threshold_and_index() {
        let c = ReconcilerConfig::from_map(&HashMap::new()).unwrap();
        assert_eq!((c.reconcile_after, c.stopping_index.as_str()), (Duration::from_secs(60), "StoppingRuns"));
        let c = ReconcilerConfig::from_map(&vars(&[("RECONCILE_AFTER_MS", "5000"), ("FINALIZER_WAIT_MS", "40000")]))
            .unwrap();
        assert_eq!((c.reconcile_after, c.finalizer.limits.wait), (Duration::from_secs(5), Duration::from_secs(40)));
        assert_eq!(
            ReconcilerConfig::from_map(&vars(&[("RECONCILE_AFTER_MS", "10")])).unwrap_err().var,
            "RECONCILE_AFTER_MS"
        );
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

    #[test]
    fn run_events_go_to_the_default_bus_from_mwaa_stop_and_never_from_an_aws_source() {
        let c = RunEventsConfig::from_map(&HashMap::new()).unwrap();
        assert_eq!((c.bus.as_str(), c.source.as_str()), ("default", "mwaa-stop"));
        let c = RunEventsConfig::from_map(&vars(&[("EVENT_BUS_NAME", "ops"), ("EVENT_SOURCE", "acme.stops")])).unwrap();
        assert_eq!((c.bus.as_str(), c.source.as_str()), ("ops", "acme.stops"));
        // EventBridge refuses custom events from `aws.` sources (moto does
        // not check): refused at the start, naming the variable.
        for bad in ["aws.airflow-serverless", "AWS.x", "", "has space", &"x".repeat(257)] {
            let err = RunEventsConfig::from_map(&vars(&[("EVENT_SOURCE", bad)])).unwrap_err();
            assert_eq!(err.var, "EVENT_SOURCE", "{bad}");
        }
        assert_eq!(RunEventsConfig::from_map(&vars(&[("EVENT_BUS_NAME", "")])).unwrap_err().var, "EVENT_BUS_NAME");
    }
}
