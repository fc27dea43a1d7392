//! [`Update`]: one conditional `UpdateItem`, built from `SET` clauses,
//! history events appended, `REMOVE`d attributes and a status condition
//! taken from the domain's own lists.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use std::collections::HashMap;

use super::{attr, n, s, DynamoRunStore};
use crate::domain::{RunKey, RunStatus};

/// The expression value placeholder of a status: `:running` for `RUNNING`.
pub(super) fn status_placeholder(status: RunStatus) -> String {
    format!(":{}", status.as_str().to_ascii_lowercase())
}

/// One conditional `UpdateItem`: `SET` clauses, history events appended,
/// `REMOVE`d attributes, a condition. Placeholders are `#name` for attribute
/// names and `:name` for values.
#[derive(Clone)]
pub(super) struct Update {
    /// (name placeholder, attribute, value placeholder)
    pub(super) sets: Vec<(&'static str, &'static str, String)>,
    pub(super) removes: Vec<(&'static str, &'static str)>,
    /// Events appended to `History`, bound as this placeholder.
    pub(super) events: Option<(String, Vec<AttributeValue>)>,
    /// Set by [`Update::fit`]: the whole history to write instead of an
    /// append, guarded by the history as read.
    pub(super) fitted: Option<Fitted>,
    /// The statuses the condition accepts (see [`Update::accepts`]).
    pub(super) statuses: Vec<RunStatus>,
    /// The condition also requires `CancelRequested` not to be true.
    pub(super) unless_cancel_requested: bool,
    pub(super) names: Vec<(&'static str, &'static str)>,
    pub(super) values: Vec<(String, AttributeValue)>,
    pub(super) condition: String,
}

impl Update {
    pub(super) fn new() -> Self {
        Update {
            sets: Vec::new(),
            removes: Vec::new(),
            events: None,
            fitted: None,
            statuses: Vec::new(),
            unless_cancel_requested: false,
            names: vec![("#status", attr::STATUS)],
            values: Vec::new(),
            condition: String::new(),
        }
    }

    pub(super) fn name(&mut self, placeholder: &'static str, attribute: &'static str) {
        if !self.names.iter().any(|(p, _)| *p == placeholder) {
            self.names.push((placeholder, attribute));
        }
    }

    /// `SET #placeholder = :value`, where `:value` is bound elsewhere.
    pub(super) fn set(mut self, placeholder: &'static str, attribute: &'static str, value: &str) -> Self {
        self.sets.push((placeholder, attribute, value.to_owned()));
        self.name(placeholder, attribute);
        self
    }

    pub(super) fn remove(mut self, placeholder: &'static str, attribute: &'static str) -> Self {
        self.removes.push((placeholder, attribute));
        self.name(placeholder, attribute);
        self
    }

    pub(super) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.push((placeholder.to_owned(), value));
        self
    }

    /// Append `events` (bound as `:placeholder`) to the run's history.
    pub(super) fn append_history(mut self, placeholder: &str, events: Vec<AttributeValue>) -> Self {
        self.events = Some((placeholder.to_owned(), events));
        self.name("#history", attr::HISTORY);
        self
    }

    /// The condition `#status IN (...)` over `statuses`, or `#status = :x`
    /// for one, binding each status's placeholder.
    pub(super) fn status_in(mut self, statuses: &[RunStatus]) -> Self {
        let placeholders: Vec<String> = statuses.iter().map(|st| status_placeholder(*st)).collect();
        for (st, p) in statuses.iter().zip(&placeholders) {
            if !self.values.iter().any(|(k, _)| k == p) {
                self.values.push((p.clone(), s(st.as_str())));
            }
        }
        self.statuses = statuses.to_vec();
        self.condition = match placeholders.as_slice() {
            [one] => format!("#status = {one}"),
            many => format!("#status IN ({})", many.join(", ")),
        };
        self
    }

    /// The condition also requires the run not to be cancel-requested yet.
    pub(super) fn unless_cancel_requested(mut self) -> Self {
        self.condition = format!("{} AND (attribute_not_exists(#cancel) OR #cancel = :false)", self.condition);
        self.name("#cancel", attr::CANCEL_REQUESTED);
        self.unless_cancel_requested = true;
        self.values.push((":false".to_owned(), AttributeValue::Bool(false)));
        self
    }

    /// Does `found` (an item as `ALL_OLD` returned it) meet this write's own
    /// condition, the status and cancel part? When a guarded write fails
    /// although it does, what failed is the guard: another writer changed the
    /// history since it was read.
    pub(super) fn accepts(&self, found: &HashMap<String, AttributeValue>) -> bool {
        let status_ok = match found.get(attr::STATUS) {
            Some(AttributeValue::S(st)) => st.parse::<RunStatus>().is_ok_and(|st| self.statuses.contains(&st)),
            _ => false,
        };
        let cancel_ok = !self.unless_cancel_requested
            || !matches!(found.get(attr::CANCEL_REQUESTED), Some(AttributeValue::Bool(true)));
        status_ok && cancel_ok
    }

    pub(super) fn bound(&self, placeholder: &str) -> Option<&AttributeValue> {
        self.values.iter().find(|(k, _)| k == placeholder).map(|(_, v)| v)
    }

    pub(super) fn request(self, store: &DynamoRunStore, key: &RunKey) -> UpdateItemFluentBuilder {
        let mut sets: Vec<String> = self.sets.iter().map(|(p, _, v)| format!("{p} = {v}")).collect();
        let mut values = self.values;
        let mut condition = self.condition;
        match (self.fitted, self.events) {
            (Some(fitted), _) => {
                sets.push("#history = :history".into());
                sets.push("#dropped = :dropped".into());
                values.push((":history".into(), AttributeValue::L(fitted.history)));
                values.push((":dropped".into(), n(fitted.dropped as usize)));
                condition = format!("{condition} AND {}", fitted.guard.clause(&mut values));
            }
            (None, Some((placeholder, events))) => {
                sets.push(format!("#history = list_append(if_not_exists(#history, :empty), {placeholder})"));
                values.push((":empty".into(), AttributeValue::L(Vec::new())));
                values.push((placeholder, AttributeValue::L(events)));
            }
            (None, None) => {}
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !self.removes.is_empty() {
            let removes: Vec<&str> = self.removes.iter().map(|(p, _)| *p).collect();
            expression = format!("{expression} REMOVE {}", removes.join(", "));
        }
        let mut req = store
            .client
            .update_item()
            .table_name(&store.table)
            .key(attr::WORKFLOW_ARN, s(key.workflow_arn.as_str()))
            .key(attr::RUN_ID, s(&key.run_id))
            .update_expression(expression)
            .condition_expression(condition);
        for (placeholder, name) in self.names {
            req = req.expression_attribute_names(placeholder, name);
        }
        for (placeholder, value) in values {
            req = req.expression_attribute_values(placeholder, value);
        }
        req
    }
}

/// A write fitted to the item size limit: the whole history it writes, the
/// new `HistoryEventsDropped`, and the guard that makes it a compare-and-set.
#[derive(Clone, Debug)]
pub(super) struct Fitted {
    pub(super) history: Vec<AttributeValue>,
    pub(super) dropped: u64,
    pub(super) guard: Guard,
    /// This write's own events that did not fit: logged, counted in
    /// `dropped`, never silently lost.
    pub(super) omitted: Vec<AttributeValue>,
    /// The type of a `History` that was not a list, replaced by this write.
    pub(super) replaced: Option<&'static str>,
    /// The item's size as this write leaves it, by [`crate::aws::item::item_size`].
    pub(super) size: usize,
}

impl Fitted {
    /// Nothing of the history is left to drop: the bare transition.
    pub(super) fn is_bare(&self) -> bool {
        self.history.is_empty()
    }
}

/// `History` and `HistoryEventsDropped` as read. A fitted write replaces
/// the whole history, so it must not land if any writer changed either since
/// the read: a scheduler that drops one event and appends one leaves the
/// length as it was, but not the last event, nor the dropped count it
/// increments (the table contract).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Guard {
    pub(super) history: Option<AttributeValue>,
    pub(super) dropped: Option<AttributeValue>,
}

impl Guard {
    pub(super) fn read(item: &HashMap<String, AttributeValue>) -> Guard {
        Guard { history: item.get(attr::HISTORY).cloned(), dropped: item.get(attr::HISTORY_DROPPED).cloned() }
    }

    /// The condition clause, its values bound into `values`.
    pub(super) fn clause(&self, values: &mut Vec<(String, AttributeValue)>) -> String {
        let history = match &self.history {
            None => "attribute_not_exists(#history)".to_owned(),
            Some(AttributeValue::L(events)) if events.is_empty() => {
                values.push((":guard_len".into(), n(0)));
                values.push((":guard_type".into(), s("L")));
                "(attribute_type(#history, :guard_type) AND size(#history) = :guard_len)".to_owned()
            }
            Some(AttributeValue::L(events)) => {
                values.push((":guard_len".into(), n(events.len())));
                values.push((":guard_last".into(), events[events.len() - 1].clone()));
                format!("(size(#history) = :guard_len AND #history[{}] = :guard_last)", events.len() - 1)
            }
            Some(other) => {
                values.push((":guard_history".into(), other.clone()));
                "#history = :guard_history".to_owned()
            }
        };
        let dropped = match &self.dropped {
            None => "attribute_not_exists(#dropped)".to_owned(),
            Some(v) => {
                values.push((":guard_dropped".into(), v.clone()));
                "#dropped = :guard_dropped".to_owned()
            }
        };
        format!("{history} AND {dropped}")
    }
}
