//! The run table in DynamoDB: the [`RunStore`] and [`FinalizerStore`] ports.
//!
//! Every write is one conditional `UpdateItem` built by [`Update`]: a set of
//! attributes, history events appended, and a status condition built from the
//! domain's own lists ([`RunStatus::STOPPABLE`]). The attribute names are the
//! documented table contract (`docs/run-table.md`); schedulers write the same
//! items.
//!
//! No transition fails because of DynamoDB's item size limit: when DynamoDB
//! refuses a write as too large, the run is read and the same write is sent
//! again with the history bounded (its oldest events dropped and counted in
//! `HistoryEventsDropped`), conditioned on the history being the one read.
//!
//! One job per file: [`update`] builds a write, [`fit`] bounds it to the
//! item size limit, and each port has its own file ([`run_store`],
//! [`finalizer_store`], [`reconciler_store`]).

mod finalizer_store;
mod fit;
mod reconciler_store;
mod run_store;
mod update;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::upstream::from_sdk;
use crate::domain::RunKey;
use crate::ports::UpstreamError;

/// Attribute names of the run table contract.
pub(crate) mod attr {
    pub const WORKFLOW_ARN: &str = "WorkflowArn";
    pub const RUN_ID: &str = "RunId";
    pub const STATUS: &str = "Status";
    pub const WORKERS: &str = "Workers";
    pub const HISTORY: &str = "History";
    pub const STOP_REQUESTED_AT: &str = "StopRequestedAt";
    pub const STOP_REQUESTED_BY: &str = "StopRequestedBy";
    pub const MODIFIED_AT: &str = "ModifiedAt";
    pub const COMPLETED_ON: &str = "CompletedOn";
    pub const CANCEL_REQUESTED: &str = "CancelRequested";
    pub const CHILD_RUNS: &str = "ChildRuns";
    pub const WORKER_CLUSTERS: &str = "WorkerClusters";
    pub const WORKER_STARTED_BY: &str = "WorkerStartedBy";
    pub const STOPPING_SHARD: &str = "StoppingShard";
    pub const STOPPING_SINCE: &str = "StoppingSince";
    pub const HISTORY_DROPPED: &str = "HistoryEventsDropped";
    pub const UNCONFIRMED_WORKERS: &str = "UnconfirmedWorkers";
    pub const ERROR_MESSAGE: &str = "ErrorMessage";
}

/// The `StoppingShard` of a watched `STOPPED` run: its stopping shard in the
/// index's watch partitions (`watch-0`..`watch-7`), which hold no
/// `STOPPING` run.
pub(crate) fn watch_shard(shard: &str) -> String {
    format!("watch-{shard}")
}

/// The sparse index of `STOPPING` runs: only items carrying
/// `StoppingShard` and `StoppingSince` (set by the stop, removed by
/// `STOPPED`) are in it.
pub const STOPPING_INDEX: &str = "StoppingRuns";

/// The run table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoRunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    index: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: usize) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// One history event: its name, when, and its details (a map: readers look
/// details up by name).
fn history_event(event: &str, at: &str, details: Vec<(&str, AttributeValue)>) -> AttributeValue {
    let mut m = HashMap::from([("Event".to_owned(), s(event)), ("At".to_owned(), s(at))]);
    m.extend(details.into_iter().map(|(k, v)| (k.to_owned(), v)));
    AttributeValue::M(m)
}

impl DynamoRunStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRunStore { client, table: table.into(), index: STOPPING_INDEX.to_owned() }
    }

    /// The same store reading stopping runs from another index name.
    pub fn with_stopping_index(mut self, index: impl Into<String>) -> Self {
        self.index = index.into();
        self
    }

    /// A client built from the shared SDK configuration ([`super::sdk_config`]).
    pub fn from_conf(conf: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoRunStore::new(aws_sdk_dynamodb::Client::new(conf), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub(super) async fn read_item(
        &self,
        key: &RunKey,
    ) -> Result<Option<HashMap<String, AttributeValue>>, UpstreamError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::WORKFLOW_ARN, s(key.workflow_arn.as_str()))
            .key(attr::RUN_ID, s(&key.run_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| from_sdk("dynamodb", "GetItem", &err))?;
        Ok(out.item.filter(|item| !item.is_empty()))
    }
}

#[cfg(test)]
pub(super) mod test_support {
    use super::*;
    use crate::domain::WorkflowArn;
    use crate::ports::StopRequest;

    pub(crate) fn key() -> RunKey {
        RunKey {
            workflow_arn: WorkflowArn::parse("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/a-0123456789")
                .unwrap(),
            run_id: "r".into(),
        }
    }

    pub(crate) fn stop() -> StopRequest {
        StopRequest { at: "2026-11-21T10:00:00.000Z".into(), by: "b".into(), request_id: "r".into(), source_ip: None }
    }

    pub(crate) fn client() -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }
}
