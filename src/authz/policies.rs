//! A policy set: parsed, named and validated against the shipped schema.
//! Anything that does not validate is an error, never a partial set.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::cache::Bounded;
use super::decide::{Decision, DecisionKey};

/// The schema every policy set is validated against (`policies/schema.cedarschema`).
pub const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
/// The default policy set: today's rule (`policies/default.cedar`).
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.cedar");

/// Why a policy set cannot be used. The text names the first problems, for
/// the log and for `make check-policy`; it never reaches a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy set: {0}")]
pub struct PolicyError(pub String);

/// The parsed shipped schema (once per process).
pub(crate) fn schema() -> &'static Schema {
    static SCHEMA_PARSED: OnceLock<Schema> = OnceLock::new();
    SCHEMA_PARSED.get_or_init(|| {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA).expect("the shipped schema parses");
        schema
    })
}

/// At most this many decisions are kept per policy set; past it the cache
/// starts over.
pub(crate) const DECISION_CACHE_MAX: usize = 1024;

/// A validated policy set, and the decisions made with it.
#[derive(Debug)]
pub struct Policies {
    pub(crate) set: PolicySet,
    /// Decisions already made with this set, per question (principal,
    /// account, workflow, action, source IP): Cedar's answer depends on
    /// nothing else, so a question asked again is answered from here. A new
    /// set (a refresh that changed the text) starts with none.
    pub(crate) decisions: Bounded<DecisionKey, Decision>,
    /// Whether a policy of the set may read the request's `context`: false
    /// when the set's text never names `context` (the only way a policy can
    /// reach it; a mention in a comment or a string only makes this
    /// cautious). A set that cannot read it is asked with an empty context,
    /// and its decisions are kept per question without the source IP.
    pub(crate) reads_context: bool,
}

impl Policies {
    /// Parse `text` (Cedar policy syntax), name each policy by its `@id("…")`
    /// annotation (else `policyN`, its position), and validate the set against
    /// [`SCHEMA`] in strict mode. Templates, duplicate ids and an empty set are
    /// refused: an empty set would deny everything, which is never what an
    /// operator means (write an explicit `forbid` for that).
    pub fn parse(text: &str) -> Result<Policies, PolicyError> {
        let parsed = PolicySet::from_str(text).map_err(|e| PolicyError(format!("parse error: {}", full(&e))))?;
        if parsed.templates().next().is_some() {
            return Err(PolicyError("templates (policies with slots) are not supported".into()));
        }
        let mut set = PolicySet::new();
        let mut seen = HashSet::new();
        for policy in parsed.policies() {
            let id = policy.annotation("id").map(str::to_owned).unwrap_or_else(|| policy.id().to_string());
            if !seen.insert(id.clone()) {
                return Err(PolicyError(format!("two policies have the id {id:?}")));
            }
            set.add(policy.new_id(PolicyId::new(id))).map_err(|e| PolicyError(e.to_string()))?;
        }
        if seen.is_empty() {
            return Err(PolicyError("the policy set has no policy".into()));
        }
        let result = Validator::new(schema().clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().take(5).map(|e| full(e)).collect();
            return Err(PolicyError(format!("does not validate against the schema: {}", errors.join("; "))));
        }
        let reads_context = text.contains("context");
        Ok(Policies { set, decisions: Bounded::new(DECISION_CACHE_MAX), reads_context })
    }

    /// The shipped default policy set.
    pub fn default_set() -> Policies {
        Policies::parse(DEFAULT_POLICY).expect("the shipped default policy validates")
    }

    /// Whether any policy of the set is a `permit` (a set of forbids alone
    /// denies everything).
    pub fn permits_anything(&self) -> bool {
        self.set.policies().any(|p| p.effect() == cedar_policy::Effect::Permit)
    }

    /// The policies' ids, in the set's order.
    pub fn ids(&self) -> Vec<String> {
        self.set.policies().map(|p| p.id().to_string()).collect()
    }
}

/// An error with its causes (Cedar's top-level messages are terse).
fn full(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
