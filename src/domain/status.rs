//! The run state machine: the eight statuses of the service model, which
//! of them a stop may move, and what a stop decided.

use std::fmt;
use std::str::FromStr;

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
    /// Another request (or the finalizer) got there first: the run is
    /// `STOPPING` or `STOPPED`. Report that status and change nothing: a
    /// client retrying a stop whose answer it lost must not get an error.
    AlreadyStopped(RunStatus),
    /// The run had already finished on its own (`SUCCESS`, `FAILED`,
    /// `TIMEOUT`): the real service refuses the stop with a
    /// `ValidationException`, and so does this one. Nothing changes.
    Finished(RunStatus),
}

impl StopDecision {
    /// Decide from the status found by a failed conditional write. `None` means
    /// the status is one the condition should have accepted, which can only be
    /// a corrupted item or a bug; the caller treats that as an internal fault.
    pub fn from_failed_condition(found: RunStatus) -> Option<StopDecision> {
        match found {
            RunStatus::Stopping | RunStatus::Stopped => Some(StopDecision::AlreadyStopped(found)),
            RunStatus::Success | RunStatus::Failed | RunStatus::Timeout => Some(StopDecision::Finished(found)),
            RunStatus::Starting | RunStatus::Queued | RunStatus::Running => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for st in [RunStatus::Stopping, RunStatus::Stopped] {
            assert_eq!(StopDecision::from_failed_condition(st), Some(StopDecision::AlreadyStopped(st)));
        }
        for st in [RunStatus::Success, RunStatus::Failed, RunStatus::Timeout] {
            assert_eq!(StopDecision::from_failed_condition(st), Some(StopDecision::Finished(st)));
        }
        for st in RunStatus::STOPPABLE {
            assert_eq!(StopDecision::from_failed_condition(st), None);
        }
    }
}
