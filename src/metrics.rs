//! CloudWatch metrics in embedded metric format (EMF): one JSON log line per
//! batch of values, which CloudWatch Logs turns into metrics with no API call
//! of ours. Namespace [`NAMESPACE`], one dimension, `Stack` (the function's
//! `METRICS_STACK`, the stack name in the template).
//!
//! The metric names are a contract with the template's alarm and dashboard
//! (`docs/deploy.md`).

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "MwaaServerlessStop";

static STACK: OnceLock<String> = OnceLock::new();

/// The `Stack` dimension of every metric of this process (set once at start;
/// `local` when never set).
pub fn set_stack(stack: &str) {
    let _ = STACK.set(stack.to_owned());
}

fn stack() -> &'static str {
    STACK.get().map(String::as_str).unwrap_or("local")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// The EMF document for `values` at `timestamp_ms`, with extra `properties`
/// (searchable in the log, not metrics).
pub fn document(timestamp_ms: u64, values: &[(&str, Unit, f64)], properties: &[(&str, &str)]) -> Value {
    let definitions: Vec<Value> =
        values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()})).collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Stack"]], "Metrics": definitions}]
        }),
    );
    doc.insert("Stack".into(), json!(stack()));
    for (name, _, value) in values {
        doc.insert((*name).into(), json!(value));
    }
    for (name, value) in properties {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc)
}

/// Write one EMF line to standard output (the function's log stream).
pub fn emit(values: &[(&str, Unit, f64)], properties: &[(&str, &str)]) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    println!("{}", document(now_ms, values, properties));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structure the EMF specification requires: `_aws` with an integer
    /// `Timestamp` and `CloudWatchMetrics` (each a `Namespace`, `Dimensions`
    /// as arrays of dimension names each present as a string member, and
    /// `Metrics` whose `Name`s are present as numeric members, at most 100).
    #[test]
    fn documents_follow_the_emf_specification() {
        let doc = document(
            1_795_255_200_000,
            &[("WorkersStopped", Unit::Count, 3.0), ("StopToStoppedSeconds", Unit::Seconds, 1.5)],
            &[("FinalizedBy", "stream")],
        );
        let aws = doc["_aws"].as_object().unwrap();
        assert!(aws["Timestamp"].is_u64());
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        for d in directives {
            assert_eq!(d["Namespace"], NAMESPACE);
            for set in d["Dimensions"].as_array().unwrap() {
                let set = set.as_array().unwrap();
                assert!(!set.is_empty() && set.len() <= 30);
                for dim in set {
                    assert!(doc[dim.as_str().unwrap()].is_string(), "dimension {dim} is a string member");
                }
            }
            let metrics = d["Metrics"].as_array().unwrap();
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                assert!(doc[name].is_number(), "{name} is a numeric member");
                assert!(["Count", "Seconds"].contains(&m["Unit"].as_str().unwrap()));
            }
        }
        assert_eq!(doc["FinalizedBy"], "stream");
    }
}
