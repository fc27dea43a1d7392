//! No transition fails on DynamoDB's item size limit: a write refused as too
//! large is sent again with its history bounded ([`Update::fit`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use super::update::{Fitted, Guard, Update};
use super::{attr, n, DynamoRunStore};
use crate::aws::item::item_size;
use crate::aws::upstream::{from_sdk, is_item_too_large, is_validation};
use crate::domain::RunKey;
use crate::ports::{StoreError, UpstreamError, UpstreamKind};

/// DynamoDB's item size limit, 400 KiB, as its documentation counts an
/// item (which [`item_size`] implements). A fitted write aims at it: every
/// item DynamoDB holds must be able to take our transitions.
pub(super) const ITEM_LIMIT_BYTES: usize = 409_600;

/// If DynamoDB still refuses a fitted write as too large (its count and ours
/// differ), the next attempt aims at least this much lower, and below the
/// size refused, so each refusal drops at least one more event.
const REFIT_STEP_BYTES: usize = 2_048;

/// Fitted writes refused as too large before the write is given up as too
/// large (each drops more, down to the bare transition).
const SIZE_REFUSALS: usize = 8;

/// Fitted writes sent before giving up on a history that other writers keep
/// changing (a retryable fault, never a verdict).
const FIT_ATTEMPTS: usize = 3;

/// The DynamoDB type name of a value, for the log and the repair event.
fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

impl Update {
    /// The same write, replacing the whole history instead of appending to
    /// it, so that the item as this write leaves it stays within `target`
    /// bytes. In order, until it fits:
    ///
    /// 1. a `History` that is not a list (a scheduler's slip, which makes any
    ///    append fail) is replaced by a list starting with a
    ///    `HistoryReplaced` event naming its type and size;
    /// 2. the oldest stored events are dropped;
    /// 3. this write's own events are left out (logged by [`Self::write`]).
    ///
    /// Every event dropped or left out is counted in `HistoryEventsDropped`.
    /// The transition itself (status, timestamps, index keys) is never
    /// dropped: if even the bare transition seems too large by our count, it
    /// is sent anyway and DynamoDB decides. The write is guarded by the
    /// history and the dropped count as read ([`super::update::Guard`]).
    pub(super) fn fit(&self, item: &HashMap<String, AttributeValue>, target: usize) -> Fitted {
        let own: Vec<AttributeValue> = self.events.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
        let (stored, replaced): (Vec<AttributeValue>, Option<&'static str>) = match item.get(attr::HISTORY) {
            Some(AttributeValue::L(events)) => (events.clone(), None),
            None => (Vec::new(), None),
            Some(other) => (Vec::new(), Some(type_name(other))),
        };
        let mut own_events = own.clone();
        if let (Some(kind), Some(value)) = (replaced, item.get(attr::HISTORY)) {
            let at = own.first().and_then(|e| e.as_m().ok()).and_then(|m| m.get("At")).cloned();
            let mut m = HashMap::from([
                ("Event".to_owned(), AttributeValue::S("HistoryReplaced".to_owned())),
                ("Type".to_owned(), AttributeValue::S(kind.to_owned())),
                ("Size".to_owned(), n(item_size(&HashMap::from([(String::new(), value.clone())])))),
            ]);
            if let Some(at) = at {
                m.insert("At".to_owned(), at);
            }
            own_events.insert(0, AttributeValue::M(m));
        }
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
        let all: Vec<AttributeValue> = stored.iter().chain(&own_events).cloned().collect();
        // Drop from the oldest: stored events first, then this write's own.
        let size_with = |drop: usize| {
            let mut candidate = after.clone();
            candidate.insert(attr::HISTORY.to_owned(), AttributeValue::L(all[drop..].to_vec()));
            candidate.insert(attr::HISTORY_DROPPED.to_owned(), n((dropped_before + drop as u64) as usize));
            item_size(&candidate)
        };
        let mut drop = 0;
        while drop < all.len() && size_with(drop) > target {
            drop += 1;
        }
        Fitted {
            history: all[drop..].to_vec(),
            dropped: dropped_before + drop as u64,
            guard: Guard::read(item),
            omitted: all[..drop].iter().skip(stored.len()).cloned().collect(),
            replaced,
            size: size_with(drop),
        }
    }

    /// This write, sent fitted: the whole history replaced as `fitted` says.
    pub(super) fn with_fitted(&self, fitted: Fitted) -> Update {
        let mut update = self.clone();
        update.fitted = Some(fitted);
        update.name("#history", attr::HISTORY);
        update.name("#dropped", attr::HISTORY_DROPPED);
        update
    }
}

type UpdateResult = Result<UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>>;

/// Why a write did not get an answer from DynamoDB's `UpdateItem`.
pub(super) enum WriteError {
    /// `UpdateItem` failed: its error. A failed condition here is always a
    /// verdict on the run's status (or its absence), never a guard of ours.
    Update(Box<SdkError<UpdateItemError, HttpResponse>>),
    /// Reading the run for a fitted write failed.
    Read(UpstreamError),
    /// DynamoDB refused even the bare transition as too large.
    TooLarge(String),
    /// Other writers changed the history before every fitted attempt: the
    /// write did not land, and may be tried again.
    Contended,
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
            WriteError::Contended => UpstreamError::new(
                "dynamodb",
                "UpdateItem",
                UpstreamKind::Fault,
                format!("the history of {key} changed before each of {FIT_ATTEMPTS} fitted writes"),
            )
            .into(),
        }
    }
}

impl DynamoRunStore {
    /// Send `update`. If DynamoDB refuses it as too large for its item, or
    /// refuses it as invalid while the run's `History` is not a list (so
    /// nothing can be appended to it), read the run and send the write again
    /// fitted ([`Update::fit`]) and guarded by what was read. A fitted write
    /// whose condition fails is decided from the item it failed on
    /// (`ALL_OLD`): if the status (or cancel) part fails, that is the answer;
    /// if only the guard does, another writer changed the history: read and
    /// fit again, [`FIT_ATTEMPTS`] times at most, then [`WriteError::Contended`].
    pub(super) async fn write(
        &self,
        key: &RunKey,
        update: Update,
        options: impl Fn(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<UpdateItemOutput, WriteError> {
        let first: UpdateResult = options(update.clone().request(self, key)).send().await;
        let first_err = match first {
            Err(err) if is_item_too_large(&err) || (is_validation(&err) && update.events.is_some()) => err,
            other => return other.map_err(|e| WriteError::Update(Box::new(e))),
        };
        let mut target = ITEM_LIMIT_BYTES;
        let mut first_err = Some(first_err);
        let (mut contended, mut refused) = (0, 0);
        loop {
            let Some(item) = self.read_item(key).await.map_err(WriteError::Read)? else {
                // Gone since: the plain write gives the plain answer.
                return options(update.request(self, key)).send().await.map_err(|e| WriteError::Update(Box::new(e)));
            };
            if let Some(err) = first_err.take() {
                let appendable = matches!(item.get(attr::HISTORY), None | Some(AttributeValue::L(_)));
                if !is_item_too_large(&err) && appendable {
                    // Refused as invalid for another reason than the history:
                    // not ours to repair.
                    return Err(WriteError::Update(Box::new(err)));
                }
            }
            let f = update.fit(&item, target);
            if let Some(kind) = f.replaced {
                tracing::error!(item = %key, history_type = kind, "History is not a list (table contract): replaced by a list, recorded in a HistoryReplaced event");
            }
            if !f.omitted.is_empty() {
                tracing::error!(
                    item = %key,
                    omitted = ?f.omitted,
                    "the run is at DynamoDB's item size limit even without its stored history: the transition is written without these events of its own"
                );
            }
            tracing::warn!(
                item = %key,
                size = item_size(&item),
                target,
                kept = f.history.len(),
                dropped = f.dropped,
                "write sent again fitted: the oldest history events dropped and counted"
            );
            let (bare, size) = (f.is_bare(), f.size);
            let result = options(update.with_fitted(f).request(self, key))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(out) => return Ok(out),
                Err(err) if is_item_too_large(&err) => {
                    refused += 1;
                    if bare || refused >= SIZE_REFUSALS {
                        tracing::error!(item = %key, "DynamoDB refuses even the bare transition as too large");
                        return Err(WriteError::TooLarge(
                            "over DynamoDB's item size limit even with no history and none of the write's own events"
                                .into(),
                        ));
                    }
                    // DynamoDB counts more than we do: aim lower, below what
                    // it refused.
                    target = target.saturating_sub(REFIT_STEP_BYTES).min(size.saturating_sub(1));
                }
                Err(err) => match condition_failed(&err) {
                    Some(Some(found)) if update.accepts(&found) => {
                        // Only the guard failed: another writer changed the
                        // history since the read. Read and fit again.
                        contended += 1;
                        tracing::warn!(item = %key, attempt = contended, "history changed by another writer since the read; fitting again");
                        if contended >= FIT_ATTEMPTS {
                            return Err(WriteError::Contended);
                        }
                    }
                    _ => return Err(WriteError::Update(Box::new(err))),
                },
            }
        }
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
        let item = big_item(420, 0);
        assert!(item_size(&item) > ITEM_LIMIT_BYTES);
        let f = DynamoRunStore::stop_update(&key(), &stop()).fit(&item, ITEM_LIMIT_BYTES);
        assert!(f.omitted.is_empty(), "stored events are dropped before any of the write's own");
        assert_eq!(f.history.len() as u64 + f.dropped, 421, "every event kept or counted");
        let last = f.history.last().unwrap().as_m().unwrap();
        assert_eq!(last["Event"], s("StopRequested"), "the stop's own event is the newest, kept");
        assert_eq!(f.guard, Guard::read(&item));
        let update = DynamoRunStore::stop_update(&key(), &stop()).with_fitted(f);
        let req = update.request(&DynamoRunStore::new(client(), "T"), &key());
        let expr = req.get_update_expression().clone().unwrap();
        assert!(expr.contains("#history = :history") && expr.contains("#dropped = :dropped"), "{expr}");
        let condition = req.get_condition_expression().clone().unwrap();
        assert!(
            condition.ends_with(
                "AND (size(#history) = :guard_len AND #history[419] = :guard_last) AND attribute_not_exists(#dropped)"
            ),
            "{condition}"
        );
    }

    /// Issue 22 item 5: DynamoDB holds items up to 409,600 bytes; the fitting
    /// aimed at 400,000, so a RUNNING run of 409,306 bytes with no history to
    /// trim was refused at the stop (and its workers kept running).
    #[test]
    fn a_run_dynamodb_holds_at_the_limit_with_no_history_is_stopped_with_its_event() {
        let mut item = big_item(0, 0);
        let pad = 409_306 - item_size(&item) - "Pad".len();
        item.insert("Pad".into(), s(&"p".repeat(pad)));
        assert_eq!(item_size(&item), 409_306);
        let f = DynamoRunStore::stop_update(&key(), &stop()).fit(&item, ITEM_LIMIT_BYTES);
        assert!(f.omitted.is_empty() && f.dropped == 0, "the stop's attributes and event fit: {f:?}");
        assert_eq!(f.history.len(), 1);
    }

    /// Issue 22 item 5: when even the write's own events do not fit, the
    /// transition is still written, without them (they are logged and
    /// counted), never refused.
    #[test]
    fn a_run_too_full_for_the_writes_own_event_gets_the_transition_without_it() {
        let mut item = big_item(0, 0);
        let pad = 409_590 - item_size(&item) - "Pad".len();
        item.insert("Pad".into(), s(&"p".repeat(pad)));
        let Some(AttributeValue::L(h)) = big_item(3, 0).remove(attr::HISTORY) else { unreachable!() };
        item.insert(attr::HISTORY.into(), AttributeValue::L(h));
        let f = DynamoRunStore::stop_update(&key(), &stop()).fit(&item, ITEM_LIMIT_BYTES);
        assert!(f.history.is_empty(), "nothing of the history fits: {:?}", f.history);
        assert_eq!(f.omitted.len(), 1, "the StopRequested event is left out, not the stop");
        assert_eq!(f.dropped, 4, "3 stored + 1 own, all counted");
        // ~12,000 workers of ~50 bytes: over the limit with no history at
        // all; the stop is still sent bare (DynamoDB decides), and the
        // STOPPED write, which empties Workers, fits with its events.
        let f = DynamoRunStore::stop_update(&key(), &stop()).fit(&big_item(0, 12_000), ITEM_LIMIT_BYTES);
        assert!(f.history.is_empty() && f.omitted.len() == 1);
        let finalize = Update::new()
            .set("#workers", attr::WORKERS, ":no_workers")
            .value(":no_workers", AttributeValue::M(HashMap::new()))
            .append_history(":events", vec![history_event("Stopped", "2026-11-21T10:00:01.000Z", vec![])])
            .status_in(&[RunStatus::Stopping]);
        let f = finalize.fit(&big_item(0, 12_000), ITEM_LIMIT_BYTES);
        assert!(f.omitted.is_empty() && f.history.len() == 1);
    }

    /// Issue 22 item 6: a `History` that is not a list cannot be appended to
    /// (DynamoDB refuses the stop as invalid). It is replaced by a list whose
    /// first event records what was there; the write is guarded by the value
    /// as read.
    #[test]
    fn a_history_that_is_not_a_list_is_replaced_and_the_replacement_recorded() {
        let mut item = big_item(0, 0);
        item.insert(attr::HISTORY.into(), s("oops, a string"));
        let f = DynamoRunStore::stop_update(&key(), &stop()).fit(&item, ITEM_LIMIT_BYTES);
        assert_eq!(f.replaced, Some("S"));
        let events: Vec<&str> = f.history.iter().map(|e| e.as_m().unwrap()["Event"].as_s().unwrap().as_str()).collect();
        assert_eq!(events, vec!["HistoryReplaced", "StopRequested"]);
        let replaced = f.history[0].as_m().unwrap();
        assert_eq!(replaced["Type"], s("S"));
        assert_eq!(replaced["At"], s("2026-11-21T10:00:00.000Z"));
        let mut values = Vec::new();
        assert_eq!(f.guard.clause(&mut values), "#history = :guard_history AND attribute_not_exists(#dropped)");
        assert_eq!(values[0], (":guard_history".to_owned(), s("oops, a string")));
    }

    /// Issue 22 item 4: the guard was `size(#history) = :len` alone, so a
    /// scheduler that dropped one event and appended one (as the table
    /// contract tells it to at the limit) between our read and our write was
    /// overwritten. The guard now holds the last event and the dropped count.
    #[test]
    fn the_guard_sees_a_scheduler_that_dropped_one_event_and_appended_one() {
        let before = big_item(5, 0);
        let mut after = before.clone();
        let Some(AttributeValue::L(h)) = after.get_mut(attr::HISTORY) else { unreachable!() };
        h.remove(0);
        h.push(history_event("TaskFinished", "2026-11-21T10:00:02.000Z", vec![]));
        after.insert(attr::HISTORY_DROPPED.into(), n(1));
        assert_ne!(Guard::read(&before), Guard::read(&after));
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        let (c1, c2) = (Guard::read(&before).clause(&mut v1), Guard::read(&after).clause(&mut v2));
        assert_eq!(
            c1,
            "(size(#history) = :guard_len AND #history[4] = :guard_last) AND attribute_not_exists(#dropped)"
        );
        assert_eq!(c2, "(size(#history) = :guard_len AND #history[4] = :guard_last) AND #dropped = :guard_dropped");
        assert_ne!(v1, v2, "same length, but the last event and the dropped count differ");
    }

    /// Issue 22 item 3: a fitted write whose condition fails is decided from
    /// `ALL_OLD`: the run still in a status the write accepts means the guard
    /// failed (contention, retried), not that the run was not stoppable.
    #[test]
    fn a_failed_fitted_write_is_a_status_verdict_only_when_the_status_refuses_it() {
        let stop = DynamoRunStore::stop_update(&key(), &stop());
        let mut found = big_item(1, 0);
        assert!(stop.accepts(&found), "RUNNING: the guard failed, not the status");
        found.insert(attr::STATUS.into(), s("STOPPING"));
        assert!(!stop.accepts(&found), "STOPPING: a verdict");
        found.insert(attr::STATUS.into(), AttributeValue::N("3".into()));
        assert!(!stop.accepts(&found), "a mistyped status fails the status condition too");
        let cancel = Update::new().status_in(&RunStatus::STOPPABLE).unless_cancel_requested();
        let mut child = big_item(1, 0);
        assert!(cancel.accepts(&child));
        child.insert(attr::CANCEL_REQUESTED.into(), AttributeValue::Bool(true));
        assert!(!cancel.accepts(&child), "already cancel-requested: a verdict");
    }
}
