//! The child policy of a stopped run (SWF's `childPolicy`).

use super::status::UnknownStatus;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_policy_defaults_to_terminate() {
        assert_eq!(ChildPolicy::from_stored(None), Ok(ChildPolicy::Terminate));
        for p in [ChildPolicy::Terminate, ChildPolicy::RequestCancel, ChildPolicy::Abandon] {
            assert_eq!(ChildPolicy::from_stored(Some(p.as_str())), Ok(p));
        }
        assert!(ChildPolicy::from_stored(Some("abandon")).is_err());
    }
}
