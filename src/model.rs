//! The run state machine and the request constraints of the published model.
//!
//! Everything here is pure: no I/O, no SDK types. The adapters translate to and
//! from DynamoDB items; the handler translates to and from the wire.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use time::OffsetDateTime;

/// `WorkflowRunStatus` from the service model. The string forms are pinned by
/// the run table contract: schedulers write them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Starting,
    Queued,
    Running,
    Success,
    Failed,
    Timeout,
    Stopping,
    Stopped,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Starting,
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::Stopping,
        RunStatus::Stopped,
    ];

    /// The statuses a stop may move to `STOPPING`: the one definition that
    /// [`RunStatus::is_stoppable`] and the DynamoDB condition expressions
    /// (built from it in `aws::dynamo`) share.
    pub const STOPPABLE: [RunStatus; 3] = [RunStatus::Starting, RunStatus::Queued, RunStatus::Running];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Starting => "STARTING",
            RunStatus::Queued => "QUEUED",
            RunStatus::Running => "RUNNING",
            RunStatus::Success => "SUCCESS",
            RunStatus::Failed => "FAILED",
            RunStatus::Timeout => "TIMEOUT",
            RunStatus::Stopping => "STOPPING",
            RunStatus::Stopped => "STOPPED",
        }
    }

    /// Active runs may still launch or run workers; only they can be stopped.
    pub fn is_stoppable(self) -> bool {
        Self::STOPPABLE.contains(&self)
    }

    /// A run that will never change status again.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Success | RunStatus::Failed | RunStatus::Timeout | RunStatus::Stopped)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What a stop request found and did. The response status is derived from it,
/// so "already finished" can never be reported as "stopping".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopDecision {
    /// This request made the one `active → STOPPING` transition.
    Transitioned,
    /// Another request (or the finalizer) got there first, or the run had
    /// already finished: report its real status, change nothing.
    AlreadyFinal(RunStatus),
}

impl StopDecision {
    /// Decide from the status found by a failed conditional write. `None` means
    /// the status is one the condition should have accepted, which can only be
    /// a corrupted item or a bug; the caller treats that as an internal fault.
    pub fn from_failed_condition(found: RunStatus) -> Option<StopDecision> {
        (!found.is_stoppable()).then_some(StopDecision::AlreadyFinal(found))
    }
}

// ---------------------------------------------------------------------------
// Request constraints (service model: IdString and WorkflowArn shapes)
// ---------------------------------------------------------------------------

pub const RUN_ID_MAX: usize = 255;
pub const WORKFLOW_ARN_MAX: usize = 2048;

/// The model's patterns, anchored: Smithy patterns are searches, but the issue
/// (and real validation) want full-string matches so nothing can trail.
const RUN_ID_PATTERN: &str = r"[a-zA-Z0-9]+[a-zA-Z0-9\.\-_]*";
const WORKFLOW_ARN_PATTERN: &str = r"arn:aws(?:-(?:cn|us-gov|iso|iso-b|iso-e|iso-f))?:airflow-serverless:([a-z]{2}-(?:[a-z]+-)+[0-9]{1}):([0-9]{12}):workflow/([a-zA-Z0-9][a-zA-Z0-9\.\-_]{0,254}-[a-zA-Z0-9]{10})";

static RUN_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^(?:{RUN_ID_PATTERN})$")).expect("valid regex"));
static WORKFLOW_ARN_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^(?:{WORKFLOW_ARN_PATTERN})$")).expect("valid regex"));

/// One failed constraint, named as the model names the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub name: &'static str,
    pub message: String,
}

/// Smithy counts string length in Unicode scalar values, not bytes.
fn length_error(name: &'static str, value: &str, max: usize) -> Option<FieldError> {
    let len = value.chars().count();
    if len < 1 || len > max {
        Some(FieldError {
            name,
            message: format!(
                "Value at '{name}' failed to satisfy constraint: Member must have length between 1 and {max} (got {len})"
            ),
        })
    } else {
        None
    }
}

fn pattern_error(name: &'static str, pattern: &str) -> FieldError {
    FieldError {
        name,
        message: format!(
            "Value at '{name}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
        ),
    }
}

/// Validate a `RunId` against the `IdString` shape.
pub fn check_run_id(value: &str) -> Option<FieldError> {
    length_error("RunId", value, RUN_ID_MAX)
        .or_else(|| (!RUN_ID_RE.is_match(value)).then(|| pattern_error("RunId", RUN_ID_PATTERN)))
}

/// A `WorkflowArn` that passed the model's constraints, with the parts the
/// service needs (the account decides who may touch the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowArn {
    arn: String,
    region: String,
    account: String,
    workflow: String,
}

impl WorkflowArn {
    pub fn parse(value: &str) -> Result<WorkflowArn, FieldError> {
        if let Some(err) = length_error("WorkflowArn", value, WORKFLOW_ARN_MAX) {
            return Err(err);
        }
        let caps = WORKFLOW_ARN_RE.captures(value).ok_or_else(|| pattern_error("WorkflowArn", WORKFLOW_ARN_PATTERN))?;
        Ok(WorkflowArn {
            arn: value.to_owned(),
            region: caps[1].to_owned(),
            account: caps[2].to_owned(),
            workflow: caps[3].to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }
    pub fn region(&self) -> &str {
        &self.region
    }
    pub fn account(&self) -> &str {
        &self.account
    }
    pub fn workflow_name(&self) -> &str {
        &self.workflow
    }
}

impl fmt::Display for WorkflowArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// The run table's primary key, both parts validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    pub workflow_arn: WorkflowArn,
    pub run_id: String,
}

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workflow_arn, self.run_id)
    }
}

/// Who is calling, as API Gateway's IAM authorizer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A SigV4-authenticated IAM principal.
    Iam { account: String, principal: String },
    /// No identity, accepted only when the function is configured for local
    /// use (the deployed template never sets that).
    LocalUnauthenticated,
}

impl Caller {
    /// The principal recorded in the run's history as the one who stopped it.
    pub fn principal(&self) -> &str {
        match self {
            Caller::Iam { principal, .. } => principal,
            Caller::LocalUnauthenticated => "local:unauthenticated",
        }
    }

    /// Runs belong to the account in their workflow ARN; nobody else may stop,
    /// read or even learn of them.
    pub fn may_access(&self, arn: &WorkflowArn) -> bool {
        match self {
            Caller::Iam { account, .. } => account == arn.account(),
            Caller::LocalUnauthenticated => true,
        }
    }
}

/// What finalizing a stop does to the run's open child runs (SWF's
/// `childPolicy` of TerminateWorkflowExecution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildPolicy {
    /// Each active child is stopped the way the API stops a run (default).
    Terminate,
    /// Each active child is marked `CancelRequested` with a history event;
    /// its scheduler decides what to do.
    RequestCancel,
    /// Children keep running.
    Abandon,
}

impl ChildPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildPolicy::Terminate => "TERMINATE",
            ChildPolicy::RequestCancel => "REQUEST_CANCEL",
            ChildPolicy::Abandon => "ABANDON",
        }
    }

    /// The stored policy. Absent means `TERMINATE`; an unknown value is an
    /// error the caller logs before falling back to `TERMINATE`, because a
    /// child left running by a typo keeps billing.
    pub fn from_stored(value: Option<&str>) -> Result<ChildPolicy, UnknownStatus> {
        match value {
            None | Some("TERMINATE") => Ok(ChildPolicy::Terminate),
            Some("REQUEST_CANCEL") => Ok(ChildPolicy::RequestCancel),
            Some("ABANDON") => Ok(ChildPolicy::Abandon),
            Some(other) => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// How many partitions the reconciler's index of stopping runs is spread
/// over (`StoppingShard` = "0".."7"), so no single index partition takes
/// every stop.
pub const STOPPING_SHARDS: u32 = 8;

/// The `StoppingShard` of a run: FNV-1a of its key, stable across versions
/// and machines.
pub fn stopping_shard(key: &RunKey) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.workflow_arn.as_str().bytes().chain([b'/']).chain(key.run_id.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % STOPPING_SHARDS).to_string()
}

/// A time as the run table stores it: RFC 3339, UTC, with milliseconds.
pub fn timestamp(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).expect("UTC timestamp formats")
}

/// Cut `s` to at most `max` bytes on a character boundary (ECS `reason` and the
/// model's `GenericString` have hard limits).
pub fn truncate_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234";

    #[test]
    fn status_round_trips_and_classifies() {
        for st in RunStatus::ALL {
            assert_eq!(st.as_str().parse::<RunStatus>().unwrap(), st);
        }
        assert!("running".parse::<RunStatus>().is_err());
        let stoppable: Vec<_> = RunStatus::ALL.into_iter().filter(|s| s.is_stoppable()).collect();
        assert_eq!(stoppable, RunStatus::STOPPABLE.to_vec());
        let terminal: Vec<_> = RunStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, vec![RunStatus::Success, RunStatus::Failed, RunStatus::Timeout, RunStatus::Stopped]);
        assert!(!RunStatus::Stopping.is_terminal() && !RunStatus::Stopping.is_stoppable());
    }

    #[test]
    fn failed_condition_reports_the_real_status() {
        for st in [RunStatus::Stopping, RunStatus::Stopped, RunStatus::Success, RunStatus::Failed, RunStatus::Timeout] {
            assert_eq!(StopDecision::from_failed_condition(st), Some(StopDecision::AlreadyFinal(st)));
        }
        for st in RunStatus::STOPPABLE {
            assert_eq!(StopDecision::from_failed_condition(st), None);
        }
    }

    #[test]
    fn run_id_constraints() {
        assert!(check_run_id("a").is_none());
        assert!(check_run_id("Run-1.2_3").is_none());
        assert!(check_run_id(&"a".repeat(255)).is_none());
        assert_eq!(check_run_id(&"a".repeat(256)).unwrap().name, "RunId");
        assert!(check_run_id(&"a".repeat(256)).unwrap().message.contains("length between 1 and 255"));
        assert!(check_run_id("").unwrap().message.contains("length"));
        for bad in ["-abc", ".abc", "_a", "a b", "a/b", "a\n", "ab\u{e9}", "a:b", "\u{ff41}"] {
            let err = check_run_id(bad).unwrap_or_else(|| panic!("{bad:?} must be rejected"));
            assert!(err.message.contains("regular expression"), "{bad:?}: {}", err.message);
        }
        // 255 multi-byte characters is within the length limit but not the pattern.
        assert!(check_run_id(&"\u{e9}".repeat(255)).unwrap().message.contains("regular expression"));
        assert!(check_run_id(&"\u{e9}".repeat(256)).unwrap().message.contains("length"));
    }

    #[test]
    fn workflow_arn_parts() {
        let arn = WorkflowArn::parse(ARN).unwrap();
        assert_eq!(arn.account(), "123456789012");
        assert_eq!(arn.region(), "us-east-1");
        assert_eq!(arn.workflow_name(), "my-flow-abcDEF1234");
        for ok in [
            "arn:aws-cn:airflow-serverless:cn-north-1:123456789012:workflow/a-0123456789",
            "arn:aws-us-gov:airflow-serverless:us-gov-west-1:123456789012:workflow/a-0123456789",
            "arn:aws-iso-b:airflow-serverless:us-isob-east-1:123456789012:workflow/a.b_c-0123456789",
            // the model (not the prose reference) allows multi-part region names
            "arn:aws:airflow-serverless:ap-southeast-east-1:123456789012:workflow/a-0123456789",
        ] {
            assert!(WorkflowArn::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn workflow_arn_rejects_tricks() {
        for bad in [
            "",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234 ",
            " arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234\n",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234/x",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF123",
            "ARN:AWS:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:US-EAST-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws-xx:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:12345678901:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:1234567890123:workflow/my-flow-abcDEF1234",
            // fullwidth digits and a Cyrillic 'а' look alike but are not the pattern's ASCII
            "arn:aws:airflow-serverless:us-east-1:１23456789012:workflow/my-flow-abcDEF1234",
            "\u{430}rn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/-flow-abcDEF1234",
        ] {
            assert!(WorkflowArn::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        let long =
            format!("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/{}-abcDEF1234", "a".repeat(2100));
        assert!(WorkflowArn::parse(&long).unwrap_err().message.contains("length between 1 and 2048"));
        // a name of 255 characters before the suffix is one too many for {0,254}
        let name256 =
            format!("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/{}-abcDEF1234", "a".repeat(256));
        assert!(WorkflowArn::parse(&name256).is_err());
        let name255 =
            format!("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/{}-abcDEF1234", "a".repeat(255));
        assert!(WorkflowArn::parse(&name255).is_ok());
    }

    #[test]
    fn caller_access_is_by_account() {
        let arn = WorkflowArn::parse(ARN).unwrap();
        let same = Caller::Iam { account: "123456789012".into(), principal: "arn:aws:iam::123456789012:user/a".into() };
        let other =
            Caller::Iam { account: "210987654321".into(), principal: "arn:aws:iam::210987654321:user/b".into() };
        assert!(same.may_access(&arn));
        assert!(!other.may_access(&arn));
        assert!(Caller::LocalUnauthenticated.may_access(&arn));
    }

    #[test]
    fn child_policy_defaults_to_terminate() {
        assert_eq!(ChildPolicy::from_stored(None), Ok(ChildPolicy::Terminate));
        for p in [ChildPolicy::Terminate, ChildPolicy::RequestCancel, ChildPolicy::Abandon] {
            assert_eq!(ChildPolicy::from_stored(Some(p.as_str())), Ok(p));
        }
        assert!(ChildPolicy::from_stored(Some("abandon")).is_err());
    }

    #[test]
    fn stopping_shards_are_stable_and_spread() {
        let key = |run: &str| RunKey { workflow_arn: WorkflowArn::parse(ARN).unwrap(), run_id: run.into() };
        assert_eq!(stopping_shard(&key("run-1")), stopping_shard(&key("run-1")));
        let shards: std::collections::BTreeSet<String> =
            (0..200).map(|i| stopping_shard(&key(&format!("run-{i}")))).collect();
        assert_eq!(shards.len(), STOPPING_SHARDS as usize, "200 runs use every shard: {shards:?}");
        assert!(shards.iter().all(|s| s.parse::<u32>().unwrap() < STOPPING_SHARDS));
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_255_200_123_456_789).unwrap();
        assert_eq!(timestamp(t), "2026-11-21T10:00:00.123Z");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_to("abc", 5), "abc");
        assert_eq!(truncate_to("abcdef", 3), "abc");
        assert_eq!(truncate_to("aé", 2), "a");
    }
}
