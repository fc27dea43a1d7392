//! The reconciler's port: the sparse index of `STOPPING` runs.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{attr, s, DynamoRunStore};
use crate::aws::upstream::from_sdk;
use crate::domain::STOPPING_SHARDS;
use crate::ports::{ReconcilerStore, StoppingRun, StoreError};

impl ReconcilerStore for DynamoRunStore {
    /// Every shard of the sparse index, every page, oldest first per shard.
    async fn stopping_runs(&self) -> Result<Vec<StoppingRun>, StoreError> {
        let mut runs = Vec::new();
        for shard in 0..STOPPING_SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(&self.index)
                .key_condition_expression("#shard = :shard")
                .expression_attribute_names("#shard", attr::STOPPING_SHARD)
                .expression_attribute_values(":shard", s(&shard.to_string()))
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
