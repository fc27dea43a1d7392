//! The API's port: the stop transition and the read.

use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::update::Update;
use super::{attr, history_event, s, DynamoRunStore};
use crate::aws::item::run_record;
use crate::domain::{stopping_shard, RunKey, RunStatus};
use crate::ports::{RunRecord, RunStore, StopRequest, StopWrite, StoreError};

impl DynamoRunStore {
    /// The stop transition: active → `STOPPING`, who and when, and a
    /// `StopRequested` event.
    pub(super) fn stop_update(key: &RunKey, stop: &StopRequest) -> Update {
        let mut details =
            vec![("By", s(&stop.by)), ("RequestId", s(&stop.request_id)), ("Operation", s("StopWorkflowRun"))];
        if let Some(ip) = &stop.source_ip {
            details.push(("SourceIp", s(ip)));
        }
        Update::new()
            .set("#status", attr::STATUS, ":stopping")
            .set("#stop_at", attr::STOP_REQUESTED_AT, ":now")
            .set("#stop_by", attr::STOP_REQUESTED_BY, ":by")
            .set("#modified", attr::MODIFIED_AT, ":now")
            .set("#stopping_shard", attr::STOPPING_SHARD, ":shard")
            .set("#stopping_since", attr::STOPPING_SINCE, ":now")
            .append_history(":event", vec![history_event("StopRequested", &stop.at, details)])
            .value(":shard", s(&stopping_shard(key)))
            .value(":stopping", s(RunStatus::Stopping.as_str()))
            .value(":now", s(&stop.at))
            .value(":by", s(&stop.by))
            .status_in(&RunStatus::STOPPABLE)
    }
}

impl RunStore for DynamoRunStore {
    async fn request_stop(&self, key: &RunKey, stop: &StopRequest) -> Result<StopWrite, StoreError> {
        let result = self
            .write(key, DynamoRunStore::stop_update(key, stop), |req| {
                req.return_values(ReturnValue::AllNew)
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| StoreError::Corrupt {
                    key: key.to_string(),
                    detail: "UpdateItem with ALL_NEW returned no attributes".into(),
                })?;
                Ok(StopWrite::Transitioned(run_record(key, item)?))
            }
            Err(err) => match err.condition_failed() {
                Some(Some(item)) => Ok(StopWrite::NotStoppable(run_record(key, item)?)),
                Some(None) => Ok(StopWrite::NotFound),
                None => Err(err.into_store_error(key)),
            },
        }
    }

    async fn get_run(&self, key: &RunKey) -> Result<Option<RunRecord>, StoreError> {
        match self.read_item(key).await? {
            Some(item) => Ok(Some(run_record(key, item)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{key, stop};
    use super::super::update::status_placeholder;
    use super::*;

    #[test]
    fn conditions_come_from_the_domain_lists() {
        let u = DynamoRunStore::stop_update(&key(), &stop());
        assert_eq!(u.condition, "#status IN (:starting, :queued, :running)");
        for st in RunStatus::STOPPABLE {
            let p = status_placeholder(st);
            assert!(u.values.iter().any(|(k, v)| *k == p && *v == s(st.as_str())), "{p} bound");
        }
        assert_eq!(Update::new().status_in(&[RunStatus::Stopping]).condition, "#status = :stopping");
    }
}
