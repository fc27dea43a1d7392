//! Hostile input, as seeded property runs (proptest) with in-memory fakes that
//! record every table access:
//!
//! - the whole request path (`Api::handle`): method, `X-Amz-Target`, extra
//!   headers, identity and body bytes (random bytes, random JSON, and mutated
//!   valid requests: partitions, regions, trailing characters, case, unicode
//!   look-alikes, oversized fields);
//! - the stream record decoder (`lambda::stream::classify`) and
//!   `lambda::stream::handle_batch` over random records.
//!
//! Invariants: no panic (the handler would turn one into an
//! `InternalServerException`, which the fakes never cause otherwise), every
//! rejection is one of the six modeled errors, a rejected request never
//! touches the table, another account never gets past `AccessDenied`, the
//! written key is exactly the one in the body, no answer carries another
//! tenant's data; for the stream, only a `STOPPING` run may change, only to
//! `STOPPED`, and exactly the unreadable records are reported as failures.
//!
//! `cargo test` runs a short deterministic run (fixed seeds) and replays the
//! regression corpus in `tests/corpus/`; `make reliability-long` runs the
//! `#[ignore]`d long runs (`RELIABILITY_FUZZ_CASES`, default 100,000 each).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use base64::Engine;
use mwaa_stop::domain::RunStatus;
use mwaa_stop::finalize::{Finalizer, FinalizerLimits};
use mwaa_stop::lambda::http::{Api, ApiSettings, AuthMode};
use mwaa_stop::lambda::stream::{classify, handle_batch, RecordIntent};
use mwaa_stop::stop::{FanOutLimits, Service};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};

use crate::kit::fakes::{run_record, MemEcs, MemTable};
use crate::kit::{ACCOUNT as ALICE_ACCOUNT, ALICE, GET, MALLORY, OTHER_ACCOUNT as MALLORY_ACCOUNT, STOP};

const ALICE_ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/etl-abcDEF1234";
const MALLORY_ARN: &str = "arn:aws:airflow-serverless:us-east-1:210987654321:workflow/etl-abcDEF1234";
/// Alice's data that must never reach anyone but Alice.
const SECRET: &str = "SECRET-alice-version-7";
const MODELED: [&str; 6] = [
    "ValidationException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "ThrottlingException",
    "InternalServerException",
    "OperationTimeoutException",
];

// ---------------------------------------------------------------------------
// Fakes that record every access
// ---------------------------------------------------------------------------

/// The kit's table holding these runs. Only Alice's runs carry Alice's data.
fn table_with(runs: &[(&str, &str, RunStatus)]) -> MemTable {
    let t = MemTable::default();
    for (arn, run, status) in runs {
        let mut r = run_record(arn, run, *status, &[]);
        r.workflow_version = Some(if arn.contains(ALICE_ACCOUNT) { SECRET } else { "mallory-v1" }.into());
        r.stop_requested_by = Some(if arn.contains(ALICE_ACCOUNT) { ALICE } else { MALLORY }.into());
        t.put(r);
    }
    t
}

/// Every run's status.
fn snapshot(t: &MemTable) -> BTreeMap<(String, String), String> {
    t.runs.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.status.clone())).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// ---------------------------------------------------------------------------
// The request path
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct RequestInput {
    method: String,
    target: Option<String>,
    extra_headers: Vec<(String, String)>,
    /// (account, principal); None: no authorizer context.
    identity: Option<(String, String)>,
    body: Vec<u8>,
}

/// Characters that look like others, break patterns or hide: Cyrillic and
/// Greek look-alikes, fullwidth forms, zero-width and bidi controls, space,
/// NUL, newline, separators of the ARN grammar.
const NASTY: &[char] = &[
    'а', 'е', 'о', 'р', 'ѕ', 'і', 'ο', 'ν', '１', '２', 'ａ', 'Ａ', '\u{200b}', '\u{200d}', '\u{202e}', '\u{feff}',
    ' ', '\0', '\n', '\t', ':', '/', '*', '?', '%', '"', '\\', 'A', 'Z', '-', '.', '_', '0', '9',
];

fn mutate(base: &str, ops: &[(u8, usize, usize)]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for &(op, pos, pick) in ops {
        let at = if chars.is_empty() { 0 } else { pos % (chars.len() + 1) };
        match op % 8 {
            0 => chars.insert(at, NASTY[pick % NASTY.len()]),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 if at < chars.len() => chars[at] = NASTY[pick % NASTY.len()],
            3 if at < chars.len() => {
                let c = chars[at];
                chars[at] = if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
            }
            4 => chars.push(NASTY[pick % NASTY.len()]),
            5 => {
                let s: String = chars.iter().collect();
                let swaps = [
                    ("arn:aws:", "arn:aws-cn:"),
                    ("arn:aws:", "arn:aws-us-gov:"),
                    ("us-east-1", "eu-west-1"),
                    ("us-east-1", "us-east-1x"),
                    (ALICE_ACCOUNT, MALLORY_ACCOUNT),
                    (MALLORY_ACCOUNT, ALICE_ACCOUNT),
                    ("workflow/", "workflow//"),
                    ("airflow-serverless", "airflow"),
                ];
                let (from, to) = swaps[pick % swaps.len()];
                chars = s.replacen(from, to, 1).chars().collect();
            }
            6 => chars.extend(std::iter::repeat_n('a', 1 + pick % 3000)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Mutation operations: none half of the time, so valid requests stay common.
fn mutations(max: usize) -> impl Strategy<Value = Vec<(u8, usize, usize)>> + Clone {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..=max),
    ]
}

fn string_value() -> impl Strategy<Value = Value> {
    let ops = mutations(3);
    prop_oneof![
        4 => (prop::sample::select(vec![ALICE_ARN, MALLORY_ARN]), ops.clone()).prop_map(|(b, o)| json!(mutate(b, &o))),
        3 => (prop::sample::select(vec!["run-1", "run-2", "missing", "a"]), ops).prop_map(|(b, o)| json!(mutate(b, &o))),
        1 => ".{0,40}".prop_map(Value::from),
        1 => prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i64>().prop_map(Value::from),
            Just(json!([])), Just(json!({})), Just(json!([ALICE_ARN]))],
    ]
}

/// A member value that is mostly of the right kind (mutated or not).
fn field_value(bases: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (prop::sample::select(bases), mutations(3)).prop_map(|(b, o)| json!(mutate(b, &o))),
        1 => string_value(),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let member = prop::sample::select(vec!["WorkflowArn", "RunId", "workflowArn", "WorkflowArn ", "Extra", ""]);
    let object = prop::collection::vec((member, string_value()), 0..4).prop_map(|pairs| {
        let mut m = serde_json::Map::new();
        for (k, v) in pairs {
            m.insert(k.to_owned(), v);
        }
        Value::Object(m).to_string().into_bytes()
    });
    let valid = (field_value(&[ALICE_ARN, MALLORY_ARN]), field_value(&["run-1", "run-2", "missing", "a"]))
        .prop_map(|(a, r)| json!({"WorkflowArn": a, "RunId": r}).to_string().into_bytes());
    let duplicate = (string_value(), string_value())
        .prop_map(|(a, b)| format!(r#"{{"WorkflowArn":{a},"RunId":"run-1","WorkflowArn":{b}}}"#).into_bytes());
    prop_oneof![
        6 => valid,
        3 => object,
        1 => duplicate,
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (valid_request_bytes(), any::<usize>(), any::<u8>()).prop_map(|(mut b, at, byte)| {
            let at = at % b.len();
            b[at] = byte;
            b
        }),
        1 => (1usize..=3).prop_map(|k| vec![b'['; k * 3000]),
        1 => Just(vec![b' '; 70_000]),
    ]
}

fn valid_request_bytes() -> impl Strategy<Value = Vec<u8>> {
    Just(json!({"WorkflowArn": ALICE_ARN, "RunId": "run-1"}).to_string().into_bytes())
}

fn target() -> impl Strategy<Value = Option<String>> {
    let ops = mutations(2);
    prop_oneof![
        4 => Just(Some(STOP.to_owned())),
        2 => Just(Some(GET.to_owned())),
        2 => (prop::sample::select(vec![STOP, GET]), ops).prop_map(|(t, o)| Some(mutate(t, &o))),
        1 => Just(None),
        1 => "[ -~]{0,60}".prop_map(Some),
    ]
}

fn identity() -> impl Strategy<Value = Option<(String, String)>> {
    prop_oneof![
        4 => Just(Some((ALICE_ACCOUNT.to_owned(), ALICE.to_owned()))),
        3 => Just(Some((MALLORY_ACCOUNT.to_owned(), MALLORY.to_owned()))),
        1 => Just(None),
        1 => prop::sample::select(vec!["", " 123456789012", "123456789012 ", "１23456789012", "12345678901", "*"])
            .prop_map(|a| Some((a.to_owned(), MALLORY.to_owned()))),
        1 => Just(Some((ALICE_ACCOUNT.to_owned(), String::new()))),
    ]
}

fn request_input() -> impl Strategy<Value = RequestInput> {
    let method = prop_oneof![8 => Just("POST".to_owned()), 1 => Just("GET".to_owned()), 1 => "[A-Z]{1,8}"];
    let headers = prop::collection::vec(
        (
            prop::sample::select(vec![
                "x-amz-target",
                "content-type",
                "x-amzn-errortype",
                "x-forwarded-for",
                "x-extra",
            ]),
            "[ -~]{0,40}",
        ),
        0..3,
    )
    .prop_map(|v| v.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    (method, target(), headers, identity(), body()).prop_map(|(method, target, extra_headers, identity, body)| {
        RequestInput { method, target, extra_headers, identity, body }
    })
}

fn event_of(input: &RequestInput) -> Value {
    let headers: serde_json::Map<String, Value> = input
        .extra_headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .chain(input.target.iter().map(|t| ("x-amz-target".to_owned(), json!(t))))
        .collect();
    let identity = input.identity.as_ref().map(|(account, user)| (account.as_str(), user.as_str()));
    crate::kit::raw_http_event(&input.method, headers, &input.body, identity)
}

/// What one request did.
struct Outcome {
    status: u16,
    json: Value,
    /// The type of a rejection, or "200".
    kind: String,
}

/// Run one request against fresh fakes and check every invariant.
fn check_request(rt: &tokio::runtime::Runtime, input: &RequestInput) -> Result<Option<Outcome>, TestCaseError> {
    let event = event_of(input);
    // The Lambda runtime rejects an event it cannot decode before the handler
    // runs; such inputs are not the handler's.
    let Ok(req) = lambda_http::request::from_str(&event.to_string()) else { return Ok(None) };
    let table = table_with(&[
        (ALICE_ARN, "run-1", RunStatus::Running),
        (ALICE_ARN, "run-2", RunStatus::Success),
        (MALLORY_ARN, "run-1", RunStatus::Running),
    ]);
    let fleet = MemEcs::default();
    let before = snapshot(&table);
    let api = Api::new(
        Service::new(&table, &fleet, FanOutLimits { concurrency: 4, budget: Duration::from_secs(5) }),
        ApiSettings { auth: AuthMode::Iam, deadline_margin: Duration::from_millis(200) },
    );
    let resp = rt.block_on(api.handle(req));
    let status = resp.status().as_u16();
    let text = std::str::from_utf8(resp.body().as_ref()).map_err(|_| TestCaseError::fail("body not UTF-8"))?.to_owned();
    let json: Value = serde_json::from_str(&text).map_err(|_| TestCaseError::fail(format!("not JSON: {text}")))?;
    prop_assert!(resp.headers().get("x-amzn-requestid").is_some());
    prop_assert_eq!(resp.headers()["content-type"].to_str().unwrap(), "application/x-amz-json-1.0");
    prop_assert!(text.len() < 4096, "an answer never echoes a big input: {} bytes", text.len());
    let writes = table.writes.lock().unwrap().clone();
    let reads = table.reads.load(Ordering::SeqCst);
    let touched = !writes.is_empty() || reads > 0;
    let kind = if status == 200 {
        "200".to_owned()
    } else {
        let t = json["__type"].as_str().unwrap_or("").to_owned();
        prop_assert!(MODELED.contains(&t.as_str()), "unmodeled error {}", json);
        prop_assert_eq!(resp.headers()["x-amzn-errortype"].to_str().unwrap(), t.as_str());
        prop_assert!(json["Message"].as_str().is_some_and(|m| !m.is_empty()), "{}", json);
        prop_assert!(t != "InternalServerException", "a panic or an internal fault on input: {}", json);
        prop_assert_eq!(status, if t == "OperationTimeoutException" { 500 } else { 400 });
        if matches!(t.as_str(), "ValidationException" | "AccessDeniedException") {
            let finished = json["Message"].as_str().is_some_and(|m| m.starts_with("The workflow run is already "));
            if t == "ValidationException" && finished {
                // A stop of a run that finished on its own: refused by the
                // one conditional write, which changed nothing.
                prop_assert!(reads == 0 && writes.len() == 1 && writes[0].2 == "stop", "{:?} reads={}", writes, reads);
                let key = (writes[0].0.clone(), writes[0].1.clone());
                prop_assert!(
                    before.get(&key).is_some_and(|st| ["SUCCESS", "FAILED", "TIMEOUT"].contains(&st.as_str())),
                    "refused as finished, but the run was {:?}",
                    before.get(&key)
                );
            } else {
                prop_assert!(!touched, "a rejected request touched the table: {:?} reads={}", writes, reads);
            }
            prop_assert_eq!(snapshot(&table), before.clone());
        }
        t
    };

    let body: Option<Value> = serde_json::from_slice(&input.body).ok();
    let body_arn = body.as_ref().and_then(|b| b.get("WorkflowArn")).and_then(Value::as_str).map(str::to_owned);
    let body_run = body.as_ref().and_then(|b| b.get("RunId")).and_then(Value::as_str).map(str::to_owned);
    let alice = input.identity.as_ref().is_some_and(|(a, p)| a == ALICE_ACCOUNT && !p.is_empty());
    let well_formed_caller = input.identity.as_ref().is_some_and(|(a, p)| !a.is_empty() && !p.is_empty());
    if touched {
        // Only a POST of a known operation by an identified caller, for a key
        // in the caller's own account, exactly as the body spelled it.
        prop_assert_eq!(input.method.as_str(), "POST");
        prop_assert!(input.target.as_deref() == Some(STOP) || input.target.as_deref() == Some(GET));
        prop_assert!(well_formed_caller);
        let (account, _) = input.identity.clone().unwrap();
        for (arn, run, _) in &writes {
            prop_assert_eq!(Some(arn), body_arn.as_ref(), "the key written is the body's, byte for byte");
            prop_assert_eq!(Some(run), body_run.as_ref());
            prop_assert!(arn.split(':').nth(4) == Some(account.as_str()), "a write outside the caller's account");
        }
    }
    // Another tenant's data never reaches anyone else.
    if !alice {
        prop_assert!(!text.contains(SECRET) && !text.contains(ALICE), "Alice's data leaked: {}", text);
        for (arn, _, _) in &writes {
            prop_assert!(!arn.contains(ALICE_ACCOUNT), "a non-Alice caller wrote Alice's run");
        }
        let alice_run = table.runs.lock().unwrap()[&(ALICE_ARN.to_owned(), "run-1".to_owned())].status.clone();
        prop_assert_eq!(alice_run.as_str(), "RUNNING");
    }
    if input.identity.as_ref().is_some_and(|(a, _)| a == MALLORY_ACCOUNT) && body_arn.as_deref() == Some(ALICE_ARN) {
        prop_assert!(kind == "AccessDeniedException" || kind == "ValidationException", "{}", json);
    }
    if status == 200 {
        prop_assert!(fleet.stop_calls.load(Ordering::SeqCst) == 0, "the fake runs have no workers");
    }
    Ok(Some(Outcome { status, json, kind }))
}

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
}

fn cases_from_env(default: u32) -> u32 {
    std::env::var("RELIABILITY_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fuzz_requests(cases: u32, seed: u8) {
    let rt = rt();
    let kinds: Mutex<BTreeMap<String, usize>> = Mutex::default();
    let mut runner = runner(cases, seed);
    let result = runner.run(&request_input(), |input| {
        let kind = match check_request(&rt, &input)? {
            Some(o) => o.kind,
            None => "undecodable-event".into(),
        };
        *kinds.lock().unwrap().entry(kind).or_default() += 1;
        Ok(())
    });
    eprintln!("request path: {cases} cases (seed {seed}): {:?}", kinds.lock().unwrap());
    if let Err(e) = result {
        panic!("{e}\nadd the minimal input above to tests/corpus/request/ once fixed");
    }
    let kinds = kinds.into_inner().unwrap();
    for k in ["200", "ValidationException", "AccessDeniedException", "ResourceNotFoundException"] {
        assert!(kinds.contains_key(k), "the generator never reached {k}: {kinds:?}");
    }
}

#[test]
fn request_path_short_deterministic_run() {
    fuzz_requests(2_000, 1);
}

#[test]
#[ignore = "long run: make reliability-long"]
fn request_path_long_run() {
    fuzz_requests(cases_from_env(100_000), 2);
}

// ---------------------------------------------------------------------------
// The stream record decoder
// ---------------------------------------------------------------------------

fn attribute_value() -> impl Strategy<Value = Value> {
    let well_formed = prop_oneof![
        ".{0,20}".prop_map(|s| json!({"S": s})),
        prop::sample::select(vec!["STOPPING", "RUNNING", "STOPPED", "stopping", "STOPPING ", ""])
            .prop_map(|s| json!({"S": s})),
        "-?[0-9]{1,5}(\\.[0-9]{1,3})?".prop_map(|n| json!({"N": n})),
        any::<bool>().prop_map(|b| json!({"BOOL": b})),
        Just(json!({"NULL": true})),
        Just(json!({"B": "AAEC"})),
        prop::collection::vec(".{0,5}", 0..3).prop_map(|v| json!({"SS": v})),
    ];
    let malformed = prop_oneof![
        ".{0,5}".prop_map(|n| json!({"N": n})),
        Just(json!({"B": "not base64!"})),
        Just(json!({"X": 1})),
        Just(json!({})),
        Just(json!({"S": 5})),
        Just(json!("bare")),
        Just(json!(null)),
    ];
    let leaf = prop_oneof![12 => well_formed, 1 => malformed];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|l| json!({"L": l})),
            prop::collection::btree_map("[A-Za-z]{1,6}", inner, 0..3).prop_map(|m| json!({"M": m})),
        ]
    })
}

fn key_value(base: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let ops = mutations(2);
    prop_oneof![
        4 => prop::sample::select(base.to_vec()).prop_map(|s| json!({"S": s})),
        2 => (prop::sample::select(base.to_vec()), ops).prop_map(|(s, o)| json!({"S": mutate(s, &o)})),
        1 => attribute_value(),
    ]
}

fn image() -> impl Strategy<Value = Value> {
    let status = prop_oneof![
        4 => Just(Some(json!({"S": "STOPPING"}))),
        2 => prop::sample::select(vec!["RUNNING", "STOPPED", "SUCCESS", "stopping"]).prop_map(|s| Some(json!({"S": s}))),
        1 => attribute_value().prop_map(Some),
        1 => Just(None),
    ];
    let extra = prop::collection::btree_map("[A-Za-z]{1,8}", attribute_value(), 0..3);
    (status, extra).prop_map(|(status, extra)| {
        let mut m: serde_json::Map<String, Value> = extra.into_iter().collect();
        if let Some(s) = status {
            m.insert("Status".into(), s);
        }
        Value::Object(m)
    })
}

const ARNS: &[&str] = &[ALICE_ARN, MALLORY_ARN];
const RUN_IDS: &[&str] = &["run-1", "run-2", "run-3", "ghost"];

fn record() -> impl Strategy<Value = Value> {
    let name = prop_oneof![6 => Just("MODIFY".to_owned()), 1 => Just("INSERT".to_owned()),
        1 => Just("REMOVE".to_owned()), 1 => "[A-Z]{0,6}"];
    let keys = (key_value(ARNS), key_value(RUN_IDS), prop::option::of(attribute_value())).prop_map(|(a, r, x)| {
        let mut m = json!({"WorkflowArn": a, "RunId": r});
        if let Some(x) = x {
            m["Other"] = x;
        }
        m
    });
    let drop_keys = prop::sample::select(vec![0u8, 0, 0, 0, 1, 2, 3]);
    (name, keys, drop_keys, image(), image(), prop::option::of("[0-9]{1,20}")).prop_map(
        |(name, mut keys, drop, new_image, old_image, seq)| {
            match drop {
                1 => keys = json!({}),
                2 => {
                    keys.as_object_mut().unwrap().remove("RunId");
                }
                3 => {
                    keys.as_object_mut().unwrap().remove("WorkflowArn");
                }
                _ => {}
            }
            let mut dynamodb = json!({
                "ApproximateCreationDateTime": 1_795_255_200, "Keys": keys, "NewImage": new_image,
                "OldImage": old_image, "SizeBytes": 100, "StreamViewType": "NEW_AND_OLD_IMAGES"
            });
            if let Some(seq) = seq {
                dynamodb["SequenceNumber"] = json!(seq);
            }
            json!({
                "eventID": "ev", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1", "dynamodb": dynamodb,
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/WorkflowRuns/stream/x"
            })
        },
    )
}

fn stream_table() -> MemTable {
    table_with(&[
        (ALICE_ARN, "run-1", RunStatus::Running),
        (ALICE_ARN, "run-2", RunStatus::Success),
        (ALICE_ARN, "run-3", RunStatus::Stopping),
        (MALLORY_ARN, "run-3", RunStatus::Stopping),
    ])
}

fn limits() -> FinalizerLimits {
    FinalizerLimits {
        wait: Duration::from_secs(5),
        poll_initial: Duration::from_millis(10),
        poll_max: Duration::from_millis(20),
        run_concurrency: 4,
        stop_concurrency: 4,
        missing_confirm: Duration::from_millis(20),
        sweep_settle: Duration::ZERO,
        ..FinalizerLimits::default()
    }
}

/// Decode and handle one batch; check the decoder's and the finalizer's invariants.
/// Returns the sequence numbers reported as failures (None: undecodable event).
fn check_batch(rt: &tokio::runtime::Runtime, raw: &Value) -> Result<Option<Vec<String>>, TestCaseError> {
    let Ok(event) = serde_json::from_value::<Event>(raw.clone()) else { return Ok(None) };
    let mut poison = Vec::new();
    for (i, r) in event.records.iter().enumerate() {
        let intent = classify(r);
        let new_status = raw["Records"][i]["dynamodb"]["NewImage"]["Status"].clone();
        match &intent {
            RecordIntent::Finalize(k) => {
                prop_assert_ne!(r.event_name.as_str(), "REMOVE");
                prop_assert_eq!(new_status, json!({"S": "STOPPING"}));
                let keys = &raw["Records"][i]["dynamodb"]["Keys"];
                prop_assert_eq!(keys["WorkflowArn"]["S"].as_str(), Some(k.workflow_arn.as_str()));
                prop_assert_eq!(keys["RunId"]["S"].as_str(), Some(k.run_id.as_str()));
            }
            RecordIntent::Ignore => {
                let stopping = json!({"S": "STOPPING"});
                prop_assert!(r.event_name == "REMOVE" || new_status != stopping, "ignored a STOPPING record");
            }
            RecordIntent::Poison(why) => {
                prop_assert!(why.len() < 20_000);
                poison.push(r.change.sequence_number.clone().unwrap_or_default());
            }
        }
    }
    let table = stream_table();
    let fleet = MemEcs::default();
    let finalizer = Finalizer::new(&table, &fleet, limits());
    let resp = rt.block_on(handle_batch(&finalizer, event, None));
    let failures: Vec<String> = resp.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect();
    prop_assert_eq!(&failures, &poison, "exactly the unreadable records are reported");
    let after = snapshot(&table);
    for ((arn, run), status) in snapshot(&stream_table()) {
        let now = &after[&(arn.clone(), run.clone())];
        if status == "STOPPING" {
            prop_assert!(now == "STOPPING" || now == "STOPPED", "{}/{}: {}", arn, run, now);
        } else {
            prop_assert_eq!(now, &status, "{}/{} changed", arn, run);
        }
    }
    for (arn, run, what) in table.writes.lock().unwrap().iter() {
        prop_assert_eq!(*what, "finalize");
        prop_assert!(run == "run-3" && ARNS.contains(&arn.as_str()), "a write to {}/{}", arn, run);
    }
    Ok(Some(failures))
}

fn fuzz_stream(cases: u32, seed: u8) {
    let rt = rt();
    let stats: Mutex<BTreeMap<&'static str, usize>> = Mutex::default();
    let mut runner = runner(cases, seed);
    let strategy = prop::collection::vec(record(), 0..6).prop_map(|records| json!({ "Records": records }));
    let result = runner.run(&strategy, |raw| {
        let kind = match check_batch(&rt, &raw)? {
            None => "undecodable-event",
            Some(f) if f.is_empty() => "clean",
            Some(_) => "with-poison",
        };
        *stats.lock().unwrap().entry(kind).or_default() += 1;
        Ok(())
    });
    eprintln!("stream decoder: {cases} cases (seed {seed}): {:?}", stats.lock().unwrap());
    if let Err(e) = result {
        panic!("{e}\nadd the minimal batch above to tests/corpus/stream/ once fixed");
    }
    let stats = stats.into_inner().unwrap();
    assert!(stats.contains_key("clean") && stats.contains_key("with-poison"), "{stats:?}");
}

#[test]
fn stream_decoder_short_deterministic_run() {
    fuzz_stream(2_000, 3);
}

#[test]
#[ignore = "long run: make reliability-long"]
fn stream_decoder_long_run() {
    fuzz_stream(cases_from_env(100_000), 4);
}

// ---------------------------------------------------------------------------
// The regression corpus (tests/corpus/), replayed by every `cargo test`
// ---------------------------------------------------------------------------

fn corpus(dir: &str) -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus in {}", dir.display());
    files
        .into_iter()
        .map(|p| (p.clone(), serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()))
        .collect()
}

/// A request case: `method` (default POST), `target` (null: none), `identity`
/// (`alice`, `mallory`, `nobody` or `[account, principal]`), `body` (a string
/// used as is, or any other JSON value serialized; `body_base64` for raw
/// bytes; `body_repeat` `[text, n]` for oversized ones), `headers`, and what it
/// must give: `expect` (`200` or an error type), optionally `reason`, `status`
/// (the run's `Status` in a 200) and `fields` (the FieldList names).
fn request_case(v: &Value) -> RequestInput {
    let identity = match &v["identity"] {
        Value::String(s) if s == "alice" => Some((ALICE_ACCOUNT.to_owned(), ALICE.to_owned())),
        Value::String(s) if s == "mallory" => Some((MALLORY_ACCOUNT.to_owned(), MALLORY.to_owned())),
        Value::Array(a) => Some((a[0].as_str().unwrap().to_owned(), a[1].as_str().unwrap().to_owned())),
        _ => None,
    };
    let body = if let Some(b) = v["body_base64"].as_str() {
        base64::engine::general_purpose::STANDARD.decode(b).unwrap()
    } else if let Some(r) = v["body_repeat"].as_array() {
        let (text, n) = (r[0].as_str().unwrap(), r[1].as_u64().unwrap() as usize);
        let prefix = v["body_prefix"].as_str().unwrap_or("");
        let suffix = v["body_suffix"].as_str().unwrap_or("");
        format!("{prefix}{}{suffix}", text.repeat(n)).into_bytes()
    } else {
        match &v["body"] {
            Value::String(s) => s.clone().into_bytes(),
            Value::Null => Vec::new(),
            other => other.to_string().into_bytes(),
        }
    };
    RequestInput {
        method: v["method"].as_str().unwrap_or("POST").to_owned(),
        target: v["target"].as_str().map(str::to_owned),
        extra_headers: v["headers"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect())
            .unwrap_or_default(),
        identity,
        body,
    }
}

#[test]
fn request_corpus_replays() {
    let rt = rt();
    let cases = corpus("request");
    for (path, case) in &cases {
        let name = path.file_name().unwrap().to_string_lossy();
        let input = request_case(case);
        let outcome = check_request(&rt, &input)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: the event does not decode"));
        assert_eq!(outcome.kind, case["expect"].as_str().unwrap(), "{name}: {}", outcome.json);
        if let Some(reason) = case["reason"].as_str() {
            assert_eq!(outcome.json["Reason"], reason, "{name}: {}", outcome.json);
        }
        if let Some(status) = case["status"].as_str() {
            assert_eq!(outcome.json["Status"], status, "{name}: {}", outcome.json);
        }
        if let Some(fields) = case["fields"].as_array() {
            let named: Vec<Value> =
                outcome.json["FieldList"].as_array().into_iter().flatten().map(|f| f["Name"].clone()).collect();
            assert_eq!(&named, fields, "{name}: {}", outcome.json);
        }
        if outcome.status != 200 {
            assert!(outcome.status == 400, "{name}");
        }
    }
    eprintln!("replayed {} request cases", cases.len());
}

/// A stream case: `event` (a raw Lambda DynamoDB event, decoded as the
/// runtime would) and `failures` (the sequence numbers that must be reported;
/// null when the event must not decode at all).
#[test]
fn stream_corpus_replays() {
    let rt = rt();
    let cases = corpus("stream");
    for (path, case) in &cases {
        let name = path.file_name().unwrap().to_string_lossy();
        let got = check_batch(&rt, &case["event"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want: Option<Vec<String>> = serde_json::from_value(case["failures"].clone()).unwrap();
        assert_eq!(got, want, "{name}");
    }
    eprintln!("replayed {} stream cases", cases.len());
}
