//! No transition fails on DynamoDB's item size limit: a write refused as too
//! large is sent again with its history bounded ([`Update::fit`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use super::update::Update;
use super::{attr, n, DynamoRunStore};
use crate::aws::item::item_size;
use crate::aws::upstream::{from_sdk, is_item_too_large};
use crate::domain::RunKey;
use crate::ports::{StoreError, UpstreamError};

/// The size a fitted write keeps a run item under: below DynamoDB's 400 KiB
/// (409,600 bytes) with room for the difference between DynamoDB's own
/// accounting and [`item_size`]'s documented approximation.
const FITTED_ITEM_BYTES: usize = 400_000;

impl Update {
    /// The same write with the history bounded so that the item, as this
    /// write leaves it, stays under [`FITTED_ITEM_BYTES`]: the oldest events
    /// (stored ones first, then this write's own) are dropped and counted.
    /// `None` when even no history at all does not fit.
    pub(super) fn fit(&self, item: &HashMap<String, AttributeValue>) -> Option<Update> {
        let stored: Vec<AttributeValue> = match item.get(attr::HISTORY) {
            Some(AttributeValue::L(events)) => events.clone(),
            _ => Vec::new(),
        };
        let dropped_before: u64 = match item.get(attr::HISTORY_DROPPED) {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        };
        let mut after = item.clone();
        for (_, attribute, value) in &self.sets {
            if let Some(v) = self.bound(value) {
                after.insert((*attribute).to_owned(), v.clone());
            }
        }
        for (_, attribute) in &self.removes {
            after.remove(*attribute);
        }
        let mut all = stored.clone();
        all.extend(self.events.as_ref().map(|(_, e)| e.clone()).unwrap_or_default());
        for drop in 0..=all.len() {
            let kept = all[drop..].to_vec();
            let mut candidate = after.clone();
            candidate.insert(attr::HISTORY.to_owned(), AttributeValue::L(kept.clone()));
            candidate.insert(attr::HISTORY_DROPPED.to_owned(), n((dropped_before + drop as u64) as usize));
            if item_size(&candidate) <= FITTED_ITEM_BYTES {
                let mut fitted = self.clone();
                fitted.fitted = Some((kept, stored.len(), dropped_before + drop as u64));
                fitted.name("#history", attr::HISTORY);
                fitted.name("#dropped", attr::HISTORY_DROPPED);
                return Some(fitted);
            }
        }
        None
    }
}

type UpdateResult = Result<UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>>;

/// Why a write did not get an answer from DynamoDB's `UpdateItem`.
pub(super) enum WriteError {
    /// `UpdateItem` failed: its error (a failed condition among them).
    Update(Box<SdkError<UpdateItemError, HttpResponse>>),
    /// Reading the run for a fitted write failed.
    Read(UpstreamError),
    /// Even with no history the run does not fit the item size limit.
    TooLarge(String),
}

impl WriteError {
    /// The failed condition's item (`ALL_OLD`), if that is what happened;
    /// `Some(None)` for a condition that failed on no item.
    pub(super) fn condition_failed(&self) -> Option<Option<HashMap<String, AttributeValue>>> {
        match self {
            WriteError::Update(err) => condition_failed(err),
            _ => None,
        }
    }

    pub(super) fn into_store_error(self, key: &RunKey) -> StoreError {
        match self {
            WriteError::Update(err) => from_sdk("dynamodb", "UpdateItem", &*err).into(),
            WriteError::Read(u) => u.into(),
            WriteError::TooLarge(detail) => StoreError::Corrupt { key: key.to_string(), detail },
        }
    }
}

impl DynamoRunStore {
    /// Send `update`; if DynamoDB refuses it as too large for its item, read
    /// the run and send it again fitted ([`Update::fit`]), as often as the
    /// history changed in between (three times at most).
    pub(super) async fn write(
        &self,
        key: &RunKey,
        update: Update,
        options: impl Fn(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<UpdateItemOutput, WriteError> {
        let first: UpdateResult = options(update.clone().request(self, key)).send().await;
        let mut last = match first {
            Err(err) if is_item_too_large(&err) => err,
            other => return other.map_err(|e| WriteError::Update(Box::new(e))),
        };
        for attempt in 1..=3 {
            let Some(item) = self.read_item(key).await.map_err(WriteError::Read)? else {
                // Gone since: the plain write gives the plain answer.
                return options(update.request(self, key)).send().await.map_err(|e| WriteError::Update(Box::new(e)));
            };
            let Some(fitted) = update.fit(&item) else {
                tracing::error!(item = %key, size = item_size(&item), "run does not fit DynamoDB's item size limit even without history");
                return Err(WriteError::TooLarge(format!(
                    "about {} bytes without its history: over DynamoDB's item size limit",
                    item_size(&item)
                )));
            };
            let read_len = fitted.fitted.as_ref().map_or(0, |f| f.1);
            tracing::warn!(
                item = %key,
                attempt,
                size = item_size(&item),
                dropped = fitted.fitted.as_ref().map_or(0, |f| f.2),
                "write over DynamoDB's item size limit: sent again with the oldest history events dropped"
            );
            let result = options(fitted.request(self, key))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(out) => return Ok(out),
                Err(err) => {
                    // A history that grew since the read fails the fitted
                    // condition: fit again. Any other failure is the answer.
                    let grew = condition_failed(&err).flatten().is_some_and(
                        |found| !matches!(found.get(attr::HISTORY), Some(AttributeValue::L(h)) if h.len() == read_len),
                    );
                    if !grew {
                        return Err(WriteError::Update(Box::new(err)));
                    }
                    last = err;
                }
            }
        }
        Err(WriteError::Update(Box::new(last)))
    }
}

/// Did the write fail on its condition? With `ALL_OLD`, the item found (an
/// empty one means no item).
fn condition_failed(err: &SdkError<UpdateItemError, HttpResponse>) -> Option<Option<HashMap<String, AttributeValue>>> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(ccf)) => {
            Some(ccf.item.clone().filter(|item| !item.is_empty()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{client, key, stop};
    use super::super::{history_event, s};
    use super::*;
    use crate::domain::RunStatus;

    /// An item of `events` history events of about 1 KB each, and `workers` workers.
    fn big_item(events: usize, workers: usize) -> HashMap<String, AttributeValue> {
        let event = history_event("Heartbeat", "2026-11-21T10:00:00.000Z", vec![("Note", s(&"x".repeat(1000)))]);
        HashMap::from([
            (attr::WORKFLOW_ARN.to_owned(), s(key().workflow_arn.as_str())),
            (attr::RUN_ID.to_owned(), s("r")),
            (attr::STATUS.to_owned(), s("RUNNING")),
            (attr::HISTORY.to_owned(), AttributeValue::L(vec![event; events])),
            (
                attr::WORKERS.to_owned(),
                AttributeValue::M(
                    (0..workers).map(|i| (format!("arn:aws:ecs:us-east-1:1:task/c/{i:032}"), s("c"))).collect(),
                ),
            ),
        ])
    }

    #[test]
    fn a_fitted_stop_drops_the_oldest_events_counts_them_and_keeps_its_own() {
        let item = big_item(400, 0);
        assert!(item_size(&item) > FITTED_ITEM_BYTES);
        let fitted = DynamoRunStore::stop_update(&key(), &stop()).fit(&item).expect("fits");
        let (history, read_len, dropped) = fitted.fitted.clone().unwrap();
        assert_eq!(read_len, 400);
        assert_eq!(history.len() as u64 + dropped, 401, "every event kept or counted");
        let last = history.last().unwrap().as_m().unwrap();
        assert_eq!(last["Event"], s("StopRequested"), "the stop's own event is the newest, kept");
        let req = fitted.request(&DynamoRunStore::new(client(), "T"), &key());
        let expr = req.get_update_expression().clone().unwrap();
        assert!(expr.contains("#history = :history") && expr.contains("#dropped = :dropped"), "{expr}");
        assert!(req.get_condition_expression().clone().unwrap().ends_with("AND size(#history) = :history_len"));
    }

    #[test]
    fn a_run_that_cannot_fit_even_without_history_is_refused_not_guessed() {
        // ~12,000 workers of ~50 bytes: over the limit with no history at all.
        assert!(DynamoRunStore::stop_update(&key(), &stop()).fit(&big_item(0, 12_000)).is_none());
        // The STOPPED write empties Workers, so it fits.
        let finalize = Update::new()
            .set("#workers", attr::WORKERS, ":no_workers")
            .value(":no_workers", AttributeValue::M(HashMap::new()))
            .status_in(&[RunStatus::Stopping]);
        assert!(finalize.fit(&big_item(0, 12_000)).is_some());
    }
}
