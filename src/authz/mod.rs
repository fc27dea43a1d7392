//! Who may do what to which workflow: Cedar policies evaluated in the
//! function (docs/authorization.md). Pure: the policy text comes in as a
//! string (read by `crate::aws` or the entry point), decisions go out as
//! values; nothing here does I/O or reads run data, so the decision is made
//! before the run table is touched.
//!
//! - `principal.rs`: the caller as a policy principal (an assumed-role
//!   session is its role);
//! - `policies.rs`: the shipped schema and default policy, parsing and
//!   validating a policy set;
//! - `decide.rs`: one decision, kept per question by the set;
//! - `cache.rs`: the bounded caches of decisions and entities.
//!
//! [`Authz`] is the process's current policy set, shared by every request
//! and replaced whole by a refresh. A set that cannot be used makes it fail
//! closed: every decision a deny.

mod cache;
mod decide;
mod policies;
mod principal;

use std::sync::{Arc, OnceLock, RwLock};

pub use decide::{decide, Action, Basis, Decision, Prepared, Question};
pub use policies::{Policies, PolicyError, DEFAULT_POLICY, SCHEMA};
pub use principal::{normalize, LOCAL_ACCOUNT, LOCAL_PRINCIPAL};

#[derive(Debug)]
enum State {
    /// No policy location configured: the shipped default.
    Default(Arc<Policies>),
    /// A configured set, validated.
    Configured(Arc<Policies>),
    /// A configured set that could not be used, and why.
    FailClosed(String),
}

/// The current policy set, shared (cloning shares it) and swapped whole.
#[derive(Debug, Clone)]
pub struct Authz {
    state: Arc<RwLock<Arc<State>>>,
}

impl Default for Authz {
    /// The shipped default policy set (today's rule).
    fn default() -> Self {
        static DEFAULT: OnceLock<Arc<Policies>> = OnceLock::new();
        let policies = DEFAULT.get_or_init(|| Arc::new(Policies::default_set())).clone();
        Authz::with(State::Default(policies))
    }
}

impl Authz {
    fn with(state: State) -> Authz {
        Authz { state: Arc::new(RwLock::new(Arc::new(state))) }
    }

    /// A configured policy set from its text; one that does not validate
    /// fails closed (and says why).
    pub fn configured(text: &str) -> (Authz, Result<(), PolicyError>) {
        let authz = Authz::fail_closed("not loaded yet");
        let result = authz.install(text);
        (authz, result)
    }

    /// Every request denied, for `why` (a configured set not read yet, or
    /// unusable).
    pub fn fail_closed(why: &str) -> Authz {
        Authz::with(State::FailClosed(why.to_owned()))
    }

    /// Replace the current set by `text`'s. If it does not validate, the
    /// function fails closed (never keeps an older set, never allows).
    pub fn install(&self, text: &str) -> Result<(), PolicyError> {
        let (state, result) = match Policies::parse(text) {
            Ok(p) => (State::Configured(Arc::new(p)), Ok(())),
            Err(e) => (State::FailClosed(e.to_string()), Err(e)),
        };
        self.set(state);
        result
    }

    /// Fail closed for `why` (a configured set that cannot be read at all).
    pub fn fail(&self, why: &str) {
        self.set(State::FailClosed(why.to_owned()));
    }

    fn set(&self, state: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }

    fn current(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a usable set is in place (the shipped default or a configured one).
    pub fn is_usable(&self) -> bool {
        !matches!(*self.current(), State::FailClosed(_))
    }

    /// The ids of the current set's policies (empty when failing closed).
    pub fn policy_ids(&self) -> Vec<String> {
        match &*self.current() {
            State::Default(p) | State::Configured(p) => p.ids(),
            State::FailClosed(_) => Vec::new(),
        }
    }

    /// Decide one question with the current set.
    pub fn decide(&self, q: &Question<'_>) -> Decision {
        match &*self.current() {
            State::Default(p) => decide(p, false, q),
            State::Configured(p) => decide(p, true, q),
            State::FailClosed(why) => {
                Decision { allowed: false, basis: Basis::FailClosed(why.clone()), errors: Vec::new() }
            }
        }
    }
}

#[cfg(test)]
mod tests;
