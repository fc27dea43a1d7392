//! One decision: a caller, an action and a workflow in, allow or deny out,
//! with the policies that decided. Pure: no I/O, no run data.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    RestrictedExpression, Schema,
};

use super::cache::Bounded;
use super::policies::Policies;
use super::principal::{normalize, LOCAL_ACCOUNT, LOCAL_PRINCIPAL};
use crate::domain::{Caller, WorkflowArn};

/// The actions of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// The schema's names, parsed once (parsing a name runs Cedar's parser).
struct Names {
    principal: EntityTypeName,
    workflow: EntityTypeName,
    stop: EntityUid,
    get: EntityUid,
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let type_name = |n: &str| EntityTypeName::from_str(n).expect("schema type names parse");
        let action = |a: &str| EntityUid::from_type_name_and_id(type_name("Action"), EntityId::new(a));
        Names {
            principal: type_name("Principal"),
            workflow: type_name("Workflow"),
            stop: action(Action::StopWorkflowRun.as_str()),
            get: action(Action::GetWorkflowRun.as_str()),
        }
    })
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

/// A question as Cedar takes it, built once: for measuring Cedar's
/// evaluation apart from the building (`make bench`).
pub struct Prepared {
    request: cedar_policy::Request,
    entities: Entities,
}

impl Prepared {
    /// `q` asked by an IAM caller (`None` for the local caller or a question
    /// Cedar cannot take).
    pub fn new(q: &Question<'_>) -> Option<Prepared> {
        let Caller::Iam { account, principal } = q.caller else { return None };
        let (request, entities) = cedar_request(&normalize(principal), account, q, None).ok()?;
        Some(Prepared { request, entities })
    }

    /// Cedar's evaluation of the prepared question alone.
    pub fn evaluate(&self, policies: &Policies) -> bool {
        Authorizer::new().is_authorized(&self.request, &policies.set, &self.entities).decision() == CedarDecision::Allow
    }
}

/// A question as the decision cache keys it: what Cedar's answer depends on
/// (the principal normalized, its account, the workflow, the action, and the
/// source IP as the context carries it: only one Cedar can read).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DecisionKey {
    principal: String,
    account: String,
    workflow: String,
    action: Action,
    source_ip: Option<String>,
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
    // A set that never reads the context is asked without it: the source
    // IP changes nothing of its answer, so it is not part of the question.
    let q = &Question { source_ip: if policies.reads_context { q.source_ip } else { None }, ..*q };
    let key = DecisionKey {
        principal,
        account: account.to_owned(),
        workflow: q.workflow.as_str().to_owned(),
        action: q.action,
        source_ip: source_ip(q).map(str::to_owned),
    };
    let principal = key.principal.clone();
    // A question asked again with this set is answered from its cache; what
    // cannot be put to Cedar is denied and not kept.
    policies.decisions.get_or_build(key, || evaluate(policies, &principal, account, q)).unwrap_or_else(|d| d)
}

/// Cedar's decision of `q` asked by `principal` of `account`; `Err` is the
/// deny of a question Cedar cannot take.
fn evaluate(policies: &Policies, principal: &str, account: &str, q: &Question<'_>) -> Result<Decision, Decision> {
    // The request is built here from the schema's own types, so it is not
    // checked against the schema per request (that check costs more than the
    // evaluation); `authz::tests::requests_conform_to_the_schema` checks the
    // construction with the schema.
    let (request, entities) =
        cedar_request(principal, account, q, None).map_err(|why| Decision::deny(Basis::Malformed(why)))?;
    let response = Authorizer::new().is_authorized(&request, &policies.set, &entities);
    let ids = response.diagnostics().reason().map(ToString::to_string).collect();
    let errors = response.diagnostics().errors().map(ToString::to_string).collect();
    Ok(Decision { allowed: response.decision() == CedarDecision::Allow, basis: Basis::Policies(ids), errors })
}

/// The source IP as the context carries it: an address Cedar cannot read as
/// an IP is left out (the attribute is optional), so a policy on it does not
/// apply, and a permit that needs it does not permit.
fn source_ip<'a>(q: &Question<'a>) -> Option<&'a str> {
    q.source_ip.filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
}

/// The Cedar request and entities of `q` asked by `principal` of `account`,
/// checked against `schema` when one is given.
pub(crate) fn cedar_request(
    principal: &str,
    account: &str,
    q: &Question<'_>,
    schema: Option<&Schema>,
) -> Result<(cedar_policy::Request, Entities), String> {
    let n = names();
    let principal_uid = EntityUid::from_type_name_and_id(n.principal.clone(), EntityId::new(principal));
    let resource_uid = EntityUid::from_type_name_and_id(n.workflow.clone(), EntityId::new(q.workflow.as_str()));
    let entities = match schema {
        // Checked against the schema: built afresh (tests).
        Some(_) => entities_of(&principal_uid, account, &resource_uid, q.workflow, schema)?,
        None => cached_entities(&principal_uid, principal, account, &resource_uid, q.workflow)?,
    };
    let context = match (source_ip(q), schema) {
        (None, _) => Context::empty(),
        (Some(ip), Some(_)) => ip_context(ip)?,
        (Some(ip), None) => cached_ip_context(ip)?,
    };
    let action = match q.action {
        Action::StopWorkflowRun => n.stop.clone(),
        Action::GetWorkflowRun => n.get.clone(),
    };
    let request =
        cedar_policy::Request::new(principal_uid, action, resource_uid, context, schema).map_err(|e| e.to_string())?;
    Ok((request, entities))
}

/// The context of a request from `ip` (an address Cedar reads as one).
fn ip_context(ip: &str) -> Result<Context, String> {
    Context::from_pairs([("sourceIp".to_owned(), RestrictedExpression::new_ip(ip))]).map_err(|e| e.to_string())
}

/// [`ip_context`], kept per address: building it costs more than a Cedar
/// evaluation of the examples (`RestrictedExpression::new_ip` parses the
/// name `ip` with Cedar's parser each time, about 6 µs here), and a
/// function's callers come from few addresses.
fn cached_ip_context(ip: &str) -> Result<Context, String> {
    static CACHE: OnceLock<Bounded<String, Context>> = OnceLock::new();
    CACHE.get_or_init(|| Bounded::new(ENTITY_CACHE_MAX)).get_or_build(ip.to_owned(), || ip_context(ip))
}

/// At most this many (principal, account, workflow) entity stores are kept;
/// past it the cache starts over (a Lambda instance sees few distinct ones).
const ENTITY_CACHE_MAX: usize = 1024;

type EntityKey = (String, String, String);

/// The two entities depend only on the principal, its account and the
/// workflow ARN: built once per distinct triple, since building them is most
/// of a decision's cost when the decision itself is not cached yet (`make
/// bench` section 9).
fn cached_entities(
    principal_uid: &EntityUid,
    principal: &str,
    account: &str,
    resource_uid: &EntityUid,
    wf: &WorkflowArn,
) -> Result<Entities, String> {
    static CACHE: OnceLock<Bounded<EntityKey, Entities>> = OnceLock::new();
    let key = (principal.to_owned(), account.to_owned(), wf.as_str().to_owned());
    CACHE
        .get_or_init(|| Bounded::new(ENTITY_CACHE_MAX))
        .get_or_build(key, || entities_of(principal_uid, account, resource_uid, wf, None))
}

fn entities_of(
    principal_uid: &EntityUid,
    account: &str,
    resource_uid: &EntityUid,
    wf: &WorkflowArn,
    schema: Option<&Schema>,
) -> Result<Entities, String> {
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
    let list = entities.into_iter().collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    Entities::from_entities(list, schema).map_err(|e| e.to_string())
}
