//! The decisions: permit, forbid wins, the default policy, role-session
//! normalization, an invalid set failing closed; the shipped examples.

use super::*;
use crate::domain::{Caller, WorkflowArn};

const OPS: &str = include_str!("../../policies/examples/ops-stop-anything.cedar");
const BOT: &str = include_str!("../../policies/examples/bot-own-workflows.cedar");
const NO_PROD: &str = include_str!("../../policies/examples/no-prod-stops.cedar");

fn arn(account: &str, name: &str) -> WorkflowArn {
    WorkflowArn::parse(&format!("arn:aws:airflow-serverless:us-east-1:{account}:workflow/{name}-abcDEF1234")).unwrap()
}

fn iam(principal: &str) -> Caller {
    let account = principal.split(':').nth(4).unwrap().to_owned();
    Caller::Iam { account, principal: principal.into() }
}

fn ask(authz: &Authz, caller: &Caller, action: Action, wf: &WorkflowArn) -> Decision {
    authz.decide(&Question { caller, action, workflow: wf, source_ip: Some("203.0.113.7") })
}

fn set(texts: &[&str]) -> Authz {
    let (authz, result) = Authz::configured(&texts.join("\n"));
    result.unwrap();
    authz
}

const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const MALLORY: &str = "arn:aws:iam::210987654321:user/mallory";
const OPS_SESSION: &str = "arn:aws:sts::123456789012:assumed-role/ops/alice";
const BOT_SESSION: &str = "arn:aws:sts::123456789012:assumed-role/etl-bot/run-42";

#[test]
fn the_default_policy_is_todays_rule() {
    let authz = Authz::default();
    for action in [Action::StopWorkflowRun, Action::GetWorkflowRun] {
        let mine = ask(&authz, &iam(ALICE), action, &arn("123456789012", "prod-etl"));
        assert!(mine.allowed);
        assert_eq!(mine.policy_ids(), ["same-account"]);
        let theirs = ask(&authz, &iam(MALLORY), action, &arn("123456789012", "etl"));
        assert!(!theirs.allowed);
        assert!(theirs.policy_ids().is_empty(), "default deny: no permit applied");
    }
    // The account is the authorizer's, as today (not the principal ARN's).
    let odd = Caller::Iam { account: "123456789012 ".into(), principal: ALICE.into() };
    assert!(!ask(&authz, &odd, Action::StopWorkflowRun, &arn("123456789012", "etl")).allowed);
    // Today's rule for every caller and account: the default agrees with
    // `Caller::may_access`.
    for caller in [iam(ALICE), iam(MALLORY), iam(OPS_SESSION), Caller::LocalUnauthenticated] {
        for account in ["123456789012", "210987654321"] {
            let wf = arn(account, "x");
            assert_eq!(ask(&authz, &caller, Action::StopWorkflowRun, &wf).allowed, caller.may_access(&wf));
        }
    }
}

#[test]
fn a_permit_allows_only_what_it_names() {
    let authz = set(&[BOT]);
    let bot = iam(BOT_SESSION);
    let own = ask(&authz, &bot, Action::StopWorkflowRun, &arn("123456789012", "etl-bot-daily"));
    assert!(own.allowed);
    assert_eq!(own.policy_ids(), ["bot-own-workflows"]);
    assert!(ask(&authz, &bot, Action::GetWorkflowRun, &arn("123456789012", "etl-bot-daily")).allowed);
    assert!(!ask(&authz, &bot, Action::StopWorkflowRun, &arn("123456789012", "billing")).allowed);
    assert!(!ask(&authz, &bot, Action::StopWorkflowRun, &arn("210987654321", "etl-bot-daily")).allowed);
    // Default deny within a configured set: alice has no permit any more.
    assert!(!ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &arn("123456789012", "etl-bot-daily")).allowed);
}

/// The three together: ops (a session of the role), and a `prod*` workflow.
fn ops_and_prod() -> (Authz, Caller, WorkflowArn) {
    (set(&[OPS, NO_PROD, DEFAULT_POLICY]), iam(OPS_SESSION), arn("123456789012", "prod-orders"))
}

#[test]
fn forbid_wins_over_permit() {
    let (authz, ops, prod) = ops_and_prod();
    let denied = ask(&authz, &ops, Action::StopWorkflowRun, &prod);
    assert!(!denied.allowed);
    assert_eq!(denied.policy_ids(), ["no-prod-stops"], "the deciding forbid is named");
    assert!(ask(&authz, &ops, Action::GetWorkflowRun, &prod).allowed, "reading prod stays allowed");
    assert!(ask(&authz, &ops, Action::StopWorkflowRun, &arn("210987654321", "etl")).allowed, "ops: any account");
    let allowed = ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &arn("123456789012", "etl"));
    assert!(allowed.allowed);
    assert_eq!(allowed.policy_ids(), ["same-account"]);
}

#[test]
fn a_role_session_is_its_role() {
    let authz = set(&[OPS]);
    let wf = arn("123456789012", "etl");
    assert!(ask(&authz, &iam(OPS_SESSION), Action::StopWorkflowRun, &wf).allowed);
    assert!(ask(&authz, &iam("arn:aws:iam::123456789012:role/ops"), Action::StopWorkflowRun, &wf).allowed);
    // Another role's session, a user named like the role, the role in
    // another partition: none is the role.
    for other in [
        "arn:aws:sts::123456789012:assumed-role/ops-readonly/alice",
        "arn:aws:iam::123456789012:user/ops",
        "arn:aws-cn:sts::123456789012:assumed-role/ops/alice",
    ] {
        assert!(!ask(&authz, &iam(other), Action::StopWorkflowRun, &wf).allowed, "{other}");
    }
}

#[test]
fn context_carries_the_source_ip() {
    let authz = set(&[r#"@id("office") permit (principal, action, resource)
        when { context has sourceIp && context.sourceIp.isInRange(ip("203.0.113.0/24")) };"#]);
    let wf = arn("123456789012", "etl");
    let caller = iam(ALICE);
    let q = |ip| Question { caller: &caller, action: Action::StopWorkflowRun, workflow: &wf, source_ip: ip };
    assert!(authz.decide(&q(Some("203.0.113.9"))).allowed);
    assert!(!authz.decide(&q(Some("198.51.100.1"))).allowed);
    // Another source IP is another question for the decision cache.
    assert!(authz.decide(&q(Some("203.0.113.9"))).allowed, "the allowed address is still allowed");
    assert!(!authz.decide(&q(Some("198.51.100.1"))).allowed, "the other is still denied");
    assert_eq!(kept(&authz), 2);
    // No address and an address Cedar cannot read are one question: the
    // context without `sourceIp`.
    assert!(!authz.decide(&q(None)).allowed);
    assert!(!authz.decide(&q(Some("not an ip"))).allowed);
    assert_eq!(kept(&authz), 3);
}

/// A set that never names `context` cannot read the source IP: it is asked
/// without it, and the same caller, action and workflow from any address
/// is one question. A set that names it (even only in a comment) is asked
/// with it.
#[test]
fn a_set_that_never_reads_the_context_is_asked_without_the_source_ip() {
    let wf = arn("123456789012", "etl");
    let caller = iam(ALICE);
    let q = |ip| Question { caller: &caller, action: Action::StopWorkflowRun, workflow: &wf, source_ip: ip };
    let plain = set(&[DEFAULT_POLICY]);
    for ip in [Some("203.0.113.9"), Some("198.51.100.1"), None, Some("not an ip")] {
        assert!(plain.decide(&q(ip)).allowed);
    }
    assert_eq!(kept(&plain), 1, "one question whatever the address");
    let cautious = set(&[
        "// a comment that names context
",
        DEFAULT_POLICY,
    ]);
    assert!(cautious.decide(&q(Some("203.0.113.9"))).allowed);
    assert!(cautious.decide(&q(Some("198.51.100.1"))).allowed);
    assert_eq!(kept(&cautious), 2, "the text names context: asked with the address");
}

#[test]
fn an_invalid_policy_set_fails_closed() {
    let wf = arn("123456789012", "etl");
    for bad in [
        "permit (principal, action, resource", // parse error
        "permit (principal, action, resource) when { principal.acount == \"1\" };", // not in the schema
        "permit (principal == User::\"alice\", action, resource);", // unknown entity type
        "permit (principal, action == Action::\"DeleteWorkflow\", resource);", // unknown action
        "permit (principal == ?principal, action, resource);", // a template
        "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);",
        "",
        "// only a comment",
    ] {
        let (authz, result) = Authz::configured(bad);
        assert!(result.is_err(), "{bad:?} must be refused");
        assert!(!authz.is_usable());
        let d = ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &wf);
        assert!(!d.allowed, "{bad:?}");
        assert!(matches!(d.basis, Basis::FailClosed(_)), "{:?}", d.basis);
        // The local caller is denied too: a configured set that fails never
        // falls back to the local default.
        assert!(!ask(&authz, &Caller::LocalUnauthenticated, Action::StopWorkflowRun, &wf).allowed);
    }
    // A good set installed over a bad one is used; a bad one over a good one
    // fails closed, not back to the good one.
    let (authz, _) = Authz::configured("nope");
    authz.install(DEFAULT_POLICY).unwrap();
    assert!(ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &wf).allowed);
    assert!(authz.install("permit (").is_err());
    assert!(!ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &wf).allowed);
}

#[test]
fn the_local_caller_is_todays_unless_a_set_is_configured() {
    let wf = arn("123456789012", "etl");
    let local = Caller::LocalUnauthenticated;
    let d = ask(&Authz::default(), &local, Action::StopWorkflowRun, &arn("210987654321", "x"));
    assert!(d.allowed && d.basis == Basis::LocalDefault);
    // Configured: it is LOCAL_PRINCIPAL, of LOCAL_ACCOUNT.
    let authz = set(&[DEFAULT_POLICY]);
    assert!(ask(&authz, &local, Action::StopWorkflowRun, &wf).allowed);
    assert!(!ask(&authz, &local, Action::StopWorkflowRun, &arn("210987654321", "x")).allowed);
    let authz = set(&[OPS]);
    assert!(!ask(&authz, &local, Action::StopWorkflowRun, &wf).allowed);
}

#[test]
fn the_shipped_files_validate() {
    for text in [DEFAULT_POLICY, OPS, BOT, NO_PROD] {
        Policies::parse(text).unwrap();
    }
    assert_eq!(Policies::parse(&[OPS, BOT, NO_PROD].join("\n")).unwrap().ids().len(), 3);
    assert_eq!(Authz::default().policy_ids(), ["same-account"]);
}

#[test]
fn odd_principals_and_workflow_names_are_data_not_syntax() {
    // Quotes, backslashes and Cedar syntax in ids are plain strings.
    let authz = set(&[BOT]);
    let caller = Caller::Iam { account: "123456789012".into(), principal: "x\" || true || \"".into() };
    let wf = arn("123456789012", "etl-bot-a");
    assert!(!ask(&authz, &caller, Action::StopWorkflowRun, &wf).allowed);
}

#[test]
fn requests_conform_to_the_schema() {
    // What `decide` builds without the schema check is what the schema says:
    // every action, with and without a source IP, entities included.
    let schema = super::policies::schema();
    let wf = arn("123456789012", "etl");
    let caller = iam(ALICE);
    for action in [Action::StopWorkflowRun, Action::GetWorkflowRun] {
        for ip in [Some("203.0.113.7"), Some("2001:db8::1"), None] {
            let q = Question { caller: &caller, action, workflow: &wf, source_ip: ip };
            super::decide::cedar_request(&normalize(ALICE), "123456789012", &q, Some(schema)).unwrap();
        }
    }
}

/// How many decisions the current set keeps.
fn kept(authz: &Authz) -> usize {
    match &*authz.current() {
        State::Default(p) | State::Configured(p) => p.decisions.len(),
        State::FailClosed(_) => 0,
    }
}

#[test]
fn a_question_asked_again_is_answered_from_the_cache() {
    let (authz, ops, prod) = ops_and_prod();
    let first = ask(&authz, &ops, Action::StopWorkflowRun, &prod);
    assert_eq!(kept(&authz), 1);
    assert_eq!(ask(&authz, &ops, Action::StopWorkflowRun, &prod), first, "the same answer, the same basis");
    assert_eq!(kept(&authz), 1);
    // The role and its sessions are one principal, so one question.
    ask(&authz, &iam("arn:aws:sts::123456789012:assumed-role/ops/bob"), Action::StopWorkflowRun, &prod);
    assert_eq!(kept(&authz), 1);
    // Another action, workflow or caller is another question.
    assert!(ask(&authz, &ops, Action::GetWorkflowRun, &prod).allowed);
    assert!(ask(&authz, &ops, Action::StopWorkflowRun, &arn("123456789012", "etl")).allowed);
    assert!(!ask(&authz, &iam(MALLORY), Action::StopWorkflowRun, &arn("123456789012", "etl")).allowed);
    assert_eq!(kept(&authz), 4);
}

#[test]
fn a_refresh_invalidates_the_cached_decisions() {
    let authz = set(&[DEFAULT_POLICY]);
    let wf = arn("123456789012", "prod-orders");
    assert!(ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &wf).allowed);
    // A new set: its answers are its own, none kept from the old one.
    authz.install(&[DEFAULT_POLICY, NO_PROD].join("\n")).unwrap();
    assert_eq!(kept(&authz), 0, "a new set starts with no decision");
    let denied = ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &wf);
    assert!(!denied.allowed);
    assert_eq!(denied.policy_ids(), ["no-prod-stops"]);
    // Failing closed, then valid again: nothing from before comes back.
    assert!(authz.install("permit (").is_err());
    assert!(!ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &wf).allowed);
    authz.install(DEFAULT_POLICY).unwrap();
    assert!(ask(&authz, &iam(ALICE), Action::StopWorkflowRun, &wf).allowed);
}

#[test]
fn the_decision_cache_is_bounded() {
    let authz = set(&[DEFAULT_POLICY]);
    let caller = iam(ALICE);
    for i in 0..=super::policies::DECISION_CACHE_MAX {
        let wf = arn("123456789012", &format!("etl-{i}"));
        let q = Question { caller: &caller, action: Action::StopWorkflowRun, workflow: &wf, source_ip: None };
        assert!(authz.decide(&q).allowed);
        assert!(kept(&authz) <= super::policies::DECISION_CACHE_MAX);
    }
    assert_eq!(kept(&authz), 1, "full: started over");
}
