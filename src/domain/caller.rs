//! Who is calling, and which runs that caller may touch.

use super::input::WorkflowArn;

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
    /// read or even learn of them. This is the rule of the shipped default
    /// policy (`policies/default.cedar`); the decision itself is `authz`'s,
    /// whose tests check the default against this function.
    pub fn may_access(&self, arn: &WorkflowArn) -> bool {
        match self {
            Caller::Iam { account, .. } => account == arn.account(),
            Caller::LocalUnauthenticated => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234";

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
}
