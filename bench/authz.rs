//! Section 9: what authorization costs (src/authz, docs/authorization.md).
//! The decision per request (the policy set already loaded, as `Service`
//! makes it before any table access): a question asked before (the set's
//! decision cache) and a new one (Cedar entities, request and evaluation),
//! and the load of a policy set (parse, `@id` naming, strict validation
//! against the shipped schema: what init and each changed refresh pay), for
//! the shipped default, the three examples together, and 100 policies.

use std::time::{Duration, Instant};

use mwaa_stop::authz::{Action, Authz, Policies, Prepared, Question, DEFAULT_POLICY};
use mwaa_stop::domain::{Caller, WorkflowArn};
use serde_json::{json, Value};

const EXAMPLES: [&str; 3] = [
    include_str!("../policies/examples/ops-stop-anything.cedar"),
    include_str!("../policies/examples/bot-own-workflows.cedar"),
    include_str!("../policies/examples/no-prod-stops.cedar"),
];

/// 100 policies: the three examples, and 97 per-bot permits of the second
/// example's shape (each bot its own name prefix), the bench's principal
/// matching none of them but the last, so every policy is evaluated.
fn hundred() -> String {
    let mut text = EXAMPLES.join("\n");
    for i in 0..97 {
        text.push_str(&format!(
            "\n@id(\"bot-{i}\")\npermit (principal == Principal::\"arn:aws:iam::123456789012:role/bot-{i}\", \
             action in [Action::\"StopWorkflowRun\", Action::\"GetWorkflowRun\"], resource)\n\
             when {{ resource.account == principal.account && resource.name like \"bot-{i}-*\" }};\n"
        ));
    }
    text
}

/// A policy that reads the context: with it in the set, the source IP is
/// part of every question (docs/authorization.md).
const OFFICE_ONLY: &str = r#"@id("stops-from-the-office-only")
forbid (principal, action == Action::"StopWorkflowRun", resource)
unless { context has sourceIp && context.sourceIp.isInRange(ip("10.0.0.0/8")) };"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median over `rounds` of the mean time of `per_round` decisions.
fn decision_cost(
    authz: &Authz,
    caller: &Caller,
    wf: &WorkflowArn,
    rounds: usize,
    per_round: usize,
) -> (Duration, bool) {
    let q = Question { caller, action: Action::StopWorkflowRun, workflow: wf, source_ip: Some("203.0.113.7") };
    let allowed = authz.decide(&q).allowed;
    let mut means = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(authz.decide(std::hint::black_box(&q)));
        }
        means.push(t.elapsed() / per_round as u32);
    }
    (median(means), allowed)
}

/// Median over `rounds` of the mean time of `per_round` decisions of
/// questions never asked before: each on another workflow of `wf`'s kind
/// (a number added to its name: the same policies apply), from another source
/// IP, so none is in a cache (the decision, the entities, the source IP's
/// context): what the first stop of a workflow from a new address costs.
fn new_question_cost(authz: &Authz, caller: &Caller, wf: &WorkflowArn, rounds: usize, per_round: usize) -> Duration {
    let mut means = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let questions: Vec<(WorkflowArn, String)> = (0..per_round)
            .map(|i| {
                let n = round * per_round + i;
                // The name's last part is its 10-character id: the suffix goes before it.
                let (name, id) = wf.as_str().rsplit_once('-').expect("a workflow ARN's name ends with its id");
                let wf = WorkflowArn::parse(&format!("{name}-{n}-{id}")).expect("a valid workflow ARN");
                (wf, format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255))
            })
            .collect();
        let t = Instant::now();
        for (wf, ip) in &questions {
            let q = Question { caller, action: Action::StopWorkflowRun, workflow: wf, source_ip: Some(ip) };
            std::hint::black_box(authz.decide(std::hint::black_box(&q)));
        }
        means.push(t.elapsed() / per_round as u32);
    }
    median(means)
}

/// The same question, Cedar's evaluation alone (entities and request built once).
fn evaluation_cost(
    policies: &Policies,
    caller: &Caller,
    wf: &WorkflowArn,
    rounds: usize,
    per_round: usize,
) -> Duration {
    let q = Question { caller, action: Action::StopWorkflowRun, workflow: wf, source_ip: Some("203.0.113.7") };
    let prepared = Prepared::new(&q).expect("an IAM caller");
    let mut means = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(prepared.evaluate(std::hint::black_box(policies)));
        }
        means.push(t.elapsed() / per_round as u32);
    }
    median(means)
}

fn load_cost(text: &str, loads: usize) -> Duration {
    Policies::parse(text).expect("the bench's sets validate");
    median(
        (0..loads)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(Policies::parse(std::hint::black_box(text)).unwrap());
                t.elapsed()
            })
            .collect(),
    )
}

pub fn section(smoke: bool) -> (String, Value) {
    let (rounds, per_round, loads) = if smoke { (3, 100, 3) } else { (15, 2_000, 25) };
    let ops = Caller::Iam {
        account: "123456789012".into(),
        principal: "arn:aws:sts::123456789012:assumed-role/ops/alice".into(),
    };
    let bot = Caller::Iam {
        account: "123456789012".into(),
        principal: "arn:aws:sts::123456789012:assumed-role/bot-96/run".into(),
    };
    let prod = WorkflowArn::parse("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/prod-orders-abcDEF1234")
        .unwrap();
    let etl =
        WorkflowArn::parse("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/bot-96-etl-abcDEF1234").unwrap();
    let examples = EXAMPLES.join("\n");
    let hundred = hundred();
    let sets: [(&str, String, Option<&str>); 4] = [
        ("shipped default (1 policy)", DEFAULT_POLICY.to_owned(), None),
        ("the three examples", examples.clone(), Some("x")),
        ("the examples and a source-IP policy", format!("{examples}\n{OFFICE_ONLY}"), Some("x")),
        ("100 policies", hundred, Some("x")),
    ];
    let mut md = String::from(
        "\n## 9. Authorization (Cedar, in process)\n\nDecision: one `Authz::decide` as `Service` calls it before any table access, the set loaded: a question asked before (principal normalized, the answer from the set's decision cache), and a new question (another workflow and source IP each time: entities and request built, the source IP's context too where a policy of the set reads the context, Cedar's evaluation, the answer kept); \"of which Cedar's evaluation\": the same question prepared once; median over rounds of the mean of many decisions. Load: parse, name and validate the set against the schema (init, and each refresh that finds a changed text), median.\n\n| policy set | policies | load | decision: ops stops prod (forbid) | decision: a bot stops its own (permit) | decision, new question (ops, prod) | of which Cedar's evaluation (ops, prod) |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut rows = Vec::new();
    for (name, text, configured) in &sets {
        let authz = match configured {
            None => Authz::default(),
            Some(_) => Authz::configured(text).0,
        };
        let n = Policies::parse(text).unwrap().ids().len();
        let load = load_cost(text, loads);
        let (deny, deny_allowed) = decision_cost(&authz, &ops, &prod, rounds, per_round);
        let (permit, permit_allowed) = decision_cost(&authz, &bot, &etl, rounds, per_round);
        let fresh = new_question_cost(&authz, &ops, &prod, rounds, per_round);
        let eval = evaluation_cost(&Policies::parse(text).unwrap(), &ops, &prod, rounds, per_round);
        let verdict = |a: bool| if a { "allow" } else { "deny" };
        md.push_str(&format!(
            "| {name} | {n} | {:.2} ms | {:.2} µs ({}) | {:.2} µs ({}) | {:.1} µs | {:.1} µs |\n",
            us(load) / 1000.0,
            us(deny),
            verdict(deny_allowed),
            us(permit),
            verdict(permit_allowed),
            us(fresh),
            us(eval)
        ));
        rows.push(json!({"set": name, "policies": n, "load_us": us(load), "decision_forbid_us": us(deny),
            "decision_forbid_allowed": deny_allowed, "decision_permit_us": us(permit), "decision_permit_allowed": permit_allowed, "decision_new_question_us": us(fresh), "evaluation_only_us": us(eval)}));
    }
    (md, json!(rows))
}
