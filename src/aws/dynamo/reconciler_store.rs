//! The reconciler's port: the sparse index of `STOPPING` runs.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{attr, s, watch_shard, DynamoRunStore};
use crate::aws::upstream::from_sdk;
use crate::domain::STOPPING_SHARDS;
use crate::ports::{ReconcilerStore, StoppingRun, StoreError};

impl ReconcilerStore for DynamoRunStore {
    /// Every shard of the sparse index, every page, oldest first per shard.
    async fn stopping_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        self.index_partitions(|shard| shard.to_string()).await
    }

    /// Every watch partition of the index (`watch-0`..`watch-7`).
    async fn watched_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        self.index_partitions(|shard| watch_shard(&shard.to_string())).await
    }
}

impl DynamoRunStore {
    async fn index_partitions(&self, partition: impl Fn(u32) -> String) -> Result<Vec<StoppingRun>, StoreError> {
        let mut runs = Vec::new();
        for shard in (0..STOPPING_SHARDS).map(partition) {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(&self.index)
                .key_condition_expression("#shard = :shard")
                .expression_attribute_names("#shard", attr::STOPPING_SHARD)
                .expression_attribute_values(":shard", s(&shard))
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(|err| from_sdk("dynamodb", "Query", &err))?;
                let text = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(v)) => v.clone(),
                    _ => String::new(),
                };
                runs.push(StoppingRun {
                    workflow_arn: text(attr::WORKFLOW_ARN),
                    run_id: text(attr::RUN_ID),
                    since: text(attr::STOPPING_SINCE),
                });
            }
        }
        Ok(runs)
    }
}
