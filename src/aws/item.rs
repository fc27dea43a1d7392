//! Reading run items, field by field and leniently.
//!
//! Only the key and `Status` must follow the contract (`docs/run-table.md`):
//! the rest is written by schedulers, and a run whose stop transition has
//! already been written must still get its workers stopped and reach
//! `STOPPED`. So any other attribute of the wrong type is logged and read as
//! absent, a bad `Workers` entry is logged and left to the finalizer's
//! `startedBy` sweep, and a bad `ChildRuns` entry is counted as skipped by the
//! child policy.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;

use super::dynamo::attr;
use crate::domain::RunKey;
use crate::ports::{ChildRef, RunRecord, StoreError};

/// One optional attribute as `T`; absent, NULL or of the wrong type is `None`
/// (the wrong type is logged).
fn field<T: DeserializeOwned>(key: &RunKey, item: &mut HashMap<String, AttributeValue>, name: &str) -> Option<T> {
    let value = item.remove(name)?;
    match serde_dynamo::from_attribute_value::<_, Option<T>>(value) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(item = %key, attribute = name, error = %e, "attribute does not follow the table contract; read as absent");
            None
        }
    }
}

/// One required string attribute.
fn required(key: &RunKey, item: &mut HashMap<String, AttributeValue>, name: &str) -> Result<String, StoreError> {
    match item.remove(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        other => {
            Err(StoreError::Corrupt { key: key.to_string(), detail: format!("{name} is not a string: {other:?}") })
        }
    }
}

/// Parse an item into a [`RunRecord`].
pub(crate) fn run_record(key: &RunKey, mut item: HashMap<String, AttributeValue>) -> Result<RunRecord, StoreError> {
    // The history only grows and nothing here reads it.
    item.remove(attr::HISTORY);
    let workflow_arn = required(key, &mut item, attr::WORKFLOW_ARN)?;
    let run_id = required(key, &mut item, attr::RUN_ID)?;
    let status = required(key, &mut item, attr::STATUS)?;
    let unconfirmed_workers = workers(key, item.remove(attr::UNCONFIRMED_WORKERS));
    let workers = workers(key, item.remove(attr::WORKERS));
    let child_runs = item.remove(attr::CHILD_RUNS).and_then(|c| child_refs(key, c));
    let worker_clusters = worker_clusters(key, item.remove(attr::WORKER_CLUSTERS));
    let worker_started_by = match item.remove(attr::WORKER_STARTED_BY) {
        Some(AttributeValue::N(n)) => {
            tracing::warn!(item = %key, started_by = %n, "WorkerStartedBy is a number; read as its string");
            Some(n)
        }
        Some(other) => {
            item.insert(attr::WORKER_STARTED_BY.to_owned(), other);
            field(key, &mut item, attr::WORKER_STARTED_BY)
        }
        None => None,
    };
    let mut f = |name: &str| field::<String>(key, &mut item, name);
    let (workflow_version, run_type, created_at, started_on, modified_at, completed_on, error_message) = (
        f("WorkflowVersion"),
        f("RunType"),
        f("CreatedAt"),
        f("StartedOn"),
        f(attr::MODIFIED_AT),
        f(attr::COMPLETED_ON),
        f("ErrorMessage"),
    );
    let (stop_requested_at, stop_requested_by, child_policy) =
        (f(attr::STOP_REQUESTED_AT), f(attr::STOP_REQUESTED_BY), f("ChildPolicy"));
    Ok(RunRecord {
        workflow_arn,
        run_id,
        status,
        workflow_version,
        run_type,
        created_at,
        started_on,
        modified_at,
        completed_on,
        error_message,
        task_instances: field(key, &mut item, "TaskInstances"),
        override_parameters: field(key, &mut item, "OverrideParameters"),
        workers,
        stop_requested_at,
        stop_requested_by,
        worker_started_by,
        worker_clusters,
        child_runs,
        child_policy,
        cancel_requested: field(key, &mut item, attr::CANCEL_REQUESTED),
        unconfirmed_workers,
    })
}

/// `Workers`: task ARN → cluster name; an entry that is not a name is skipped.
fn workers(key: &RunKey, value: Option<AttributeValue>) -> std::collections::BTreeMap<String, String> {
    let mut workers = std::collections::BTreeMap::new();
    match value {
        None | Some(AttributeValue::Null(_)) => {}
        Some(AttributeValue::M(entries)) => {
            for (task, cluster) in entries {
                match cluster {
                    AttributeValue::S(cluster) => {
                        workers.insert(task, cluster);
                    }
                    other => {
                        tracing::error!(item = %key, task, value = ?other, "worker entry is not a cluster name; skipped")
                    }
                }
            }
        }
        Some(other) => tracing::error!(item = %key, value = ?other, "Workers is not a map; no worker read from it"),
    }
    workers
}

/// `WorkerClusters` is SS by contract, but one S, or an L whose S entries name
/// clusters, still says where orphans may run: reading it as absent would skip
/// the sweep and leave unregistered workers billing.
fn worker_clusters(key: &RunKey, value: Option<AttributeValue>) -> Option<Vec<String>> {
    match value? {
        AttributeValue::Ss(set) => Some(set),
        AttributeValue::Null(_) => None,
        AttributeValue::S(one) => {
            tracing::warn!(item = %key, cluster = %one, "WorkerClusters is not a string set; its strings are read as one");
            Some(vec![one])
        }
        AttributeValue::L(list) => {
            let clusters: Vec<String> = list.iter().filter_map(|v| v.as_s().ok().cloned()).collect();
            tracing::warn!(item = %key, ?clusters, "WorkerClusters is not a string set; its strings are read as one");
            Some(clusters)
        }
        other => {
            tracing::error!(item = %key, value = ?other, "attribute does not follow the table contract; read as absent");
            None
        }
    }
}

/// `ChildRuns`, entry by entry. A malformed entry keeps whatever key fields
/// it has (empty otherwise) so the child policy reports it as skipped rather
/// than the parent forgetting a child.
fn child_refs(key: &RunKey, children: AttributeValue) -> Option<Vec<ChildRef>> {
    if matches!(&children, AttributeValue::Null(_)) {
        return None;
    }
    let AttributeValue::L(entries) = children else {
        // Children exist but cannot be named: one malformed entry, so the
        // parent's ChildPolicyApplied event records a skip instead of nothing.
        tracing::error!(item = %key, value = ?children, "ChildRuns is not a list; its children cannot be read");
        return Some(vec![ChildRef { workflow_arn: String::new(), run_id: String::new() }]);
    };
    let field = |entry: &HashMap<String, AttributeValue>, name: &str| match entry.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    };
    let refs = entries
        .into_iter()
        .map(|entry| match entry {
            AttributeValue::M(m) => {
                let child = ChildRef { workflow_arn: field(&m, attr::WORKFLOW_ARN), run_id: field(&m, attr::RUN_ID) };
                if child.workflow_arn.is_empty() || child.run_id.is_empty() {
                    tracing::error!(item = %key, entry = ?m, "ChildRuns entry without a WorkflowArn and RunId string");
                }
                child
            }
            other => {
                tracing::error!(item = %key, entry = ?other, "ChildRuns entry is not a map");
                ChildRef { workflow_arn: String::new(), run_id: String::new() }
            }
        })
        .collect();
    Some(refs)
}

/// An item's size as DynamoDB's documentation accounts it: each attribute's
/// name plus its value; strings and binaries by their bytes, numbers about
/// one byte per two significant digits plus one, booleans and nulls one
/// byte, lists and maps three bytes plus one per element (and a map entry's
/// name), sets the sum of their elements.
pub(crate) fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn number_size(n: &str) -> usize {
    let digits = n.trim_start_matches(['-', '+']).chars().filter(char::is_ascii_digit).count();
    digits.div_ceil(2) + 1
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(v) => v.len(),
        AttributeValue::N(v) => number_size(v),
        AttributeValue::B(v) => v.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_documented_accounting() {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let item = HashMap::from([
            ("Name".to_owned(), s("abc")),                                                   // 4 + 3
            ("N".to_owned(), AttributeValue::N("12345".into())),                             // 1 + 3 + 1
            ("Ok".to_owned(), AttributeValue::Bool(true)),                                   // 2 + 1
            ("L".to_owned(), AttributeValue::L(vec![s("ab"), s("c")])),                      // 1 + 3 + (1+2) + (1+1)
            ("M".to_owned(), AttributeValue::M(HashMap::from([("k".to_owned(), s("vv"))]))), // 1 + 3 + 1+1+2
        ]);
        assert_eq!(item_size(&item), 7 + 5 + 3 + 9 + 8);
        assert_eq!(value_size(&s("é")), 2, "strings count UTF-8 bytes");
    }
}
