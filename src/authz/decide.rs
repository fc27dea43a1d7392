//! One decision: a caller, an action and a workflow in, allow or deny out,
//! with the policies that decided. Pure: no I/O, no run data.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    RestrictedExpression,
};

use super::policies::{schema, Policies};
use super::principal::{normalize, LOCAL_ACCOUNT, LOCAL_PRINCIPAL};
use crate::domain::{Caller, WorkflowArn};

/// The actions of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    StopWorkflowRun,
    GetWorkflowRun,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::StopWorkflowRun => "StopWorkflowRun",
            Action::GetWorkflowRun => "GetWorkflowRun",
        }
    }
}

/// What is asked: who, what, on which workflow, from where.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub caller: &'a Caller,
    pub action: Action,
    pub workflow: &'a WorkflowArn,
    pub source_ip: Option<&'a str>,
}

/// Why the answer is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The policies decided: for an allow the permits that applied, for a
    /// deny the forbids that applied (empty: no permit applied, default deny).
    Policies(Vec<String>),
    /// No policy set is configured and the caller is the local stack's
    /// unauthenticated caller: today's local behaviour, allowed.
    LocalDefault,
    /// The configured policy set could not be used: everything is denied.
    FailClosed(String),
    /// The request could not be put to the policies (an attribute Cedar
    /// refuses): denied.
    Malformed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub basis: Basis,
    /// Policies that failed to evaluate (they count as not applying), for the log.
    pub errors: Vec<String>,
}

impl Decision {
    fn deny(basis: Basis) -> Decision {
        Decision { allowed: false, basis, errors: Vec::new() }
    }

    /// The deciding policy ids (empty unless the policies decided).
    pub fn policy_ids(&self) -> &[String] {
        match &self.basis {
            Basis::Policies(ids) => ids,
            _ => &[],
        }
    }
}

fn uid(type_name: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(type_name).expect("schema type names parse"),
        EntityId::new(id),
    )
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

/// Decide `q` with `policies`. `configured` says whether the set was
/// configured (false: the shipped default), which only matters for the local
/// unauthenticated caller.
pub fn decide(policies: &Policies, configured: bool, q: &Question<'_>) -> Decision {
    let (principal, account) = match q.caller {
        Caller::Iam { account, principal } => (normalize(principal), account.as_str()),
        Caller::LocalUnauthenticated if !configured => {
            return Decision { allowed: true, basis: Basis::LocalDefault, errors: Vec::new() };
        }
        Caller::LocalUnauthenticated => (LOCAL_PRINCIPAL.to_owned(), LOCAL_ACCOUNT),
    };
    let principal_uid = uid("Principal", &principal);
    let resource_uid = uid("Workflow", q.workflow.as_str());
    let wf = q.workflow;
    let entities = [
        Entity::new(principal_uid.clone(), HashMap::from([("account".to_owned(), string(account))]), HashSet::new()),
        Entity::new(
            resource_uid.clone(),
            HashMap::from([
                ("account".to_owned(), string(wf.account())),
                ("region".to_owned(), string(wf.region())),
                ("partition".to_owned(), string(wf.partition())),
                ("name".to_owned(), string(wf.workflow_name())),
            ]),
            HashSet::new(),
        ),
    ];
    let entities = match entities.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(list) => match Entities::from_entities(list, None) {
            Ok(e) => e,
            Err(e) => return Decision::deny(Basis::Malformed(e.to_string())),
        },
        Err(e) => return Decision::deny(Basis::Malformed(e.to_string())),
    };
    // An address Cedar cannot read as an IP is left out (the attribute is
    // optional): a policy on it then does not apply, and a permit that
    // needs it does not permit.
    let mut pairs = Vec::with_capacity(1);
    if let Some(ip) = q.source_ip.filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()) {
        pairs.push(("sourceIp".to_owned(), RestrictedExpression::new_ip(ip)));
    }
    let context = match Context::from_pairs(pairs) {
        Ok(c) => c,
        Err(e) => return Decision::deny(Basis::Malformed(e.to_string())),
    };
    let request = match cedar_policy::Request::new(
        principal_uid,
        uid("Action", q.action.as_str()),
        resource_uid,
        context,
        Some(schema()),
    ) {
        Ok(r) => r,
        Err(e) => return Decision::deny(Basis::Malformed(e.to_string())),
    };
    let response = Authorizer::new().is_authorized(&request, &policies.set, &entities);
    let ids = response.diagnostics().reason().map(ToString::to_string).collect();
    let errors = response.diagnostics().errors().map(ToString::to_string).collect();
    Decision { allowed: response.decision() == CedarDecision::Allow, basis: Basis::Policies(ids), errors }
}
