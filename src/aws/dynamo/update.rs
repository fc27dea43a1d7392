//! [`Update`]: one conditional `UpdateItem`, built from `SET` clauses,
//! history events appended, `REMOVE`d attributes and a status condition
//! taken from the domain's own lists.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

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
    /// Set by [`Update::fit`]: the whole history to write, its length when
    /// read, and the new count of dropped events.
    pub(super) fitted: Option<(Vec<AttributeValue>, usize, u64)>,
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
        self.condition = match placeholders.as_slice() {
            [one] => format!("#status = {one}"),
            many => format!("#status IN ({})", many.join(", ")),
        };
        self
    }

    /// More condition, `AND`-ed.
    pub(super) fn and(mut self, clause: &str, names: &[(&'static str, &'static str)]) -> Self {
        self.condition = format!("{} AND {clause}", self.condition);
        self.names.extend_from_slice(names);
        self
    }

    pub(super) fn bound(&self, placeholder: &str) -> Option<&AttributeValue> {
        self.values.iter().find(|(k, _)| k == placeholder).map(|(_, v)| v)
    }

    pub(super) fn request(self, store: &DynamoRunStore, key: &RunKey) -> UpdateItemFluentBuilder {
        let mut sets: Vec<String> = self.sets.iter().map(|(p, _, v)| format!("{p} = {v}")).collect();
        let mut values = self.values;
        let mut condition = self.condition;
        match (self.fitted, self.events) {
            (Some((history, read_len, dropped)), _) => {
                sets.push("#history = :history".into());
                sets.push("#dropped = :dropped".into());
                values.push((":history".into(), AttributeValue::L(history)));
                values.push((":dropped".into(), n(dropped as usize)));
                condition = if read_len == 0 {
                    format!("{condition} AND (attribute_not_exists(#history) OR size(#history) = :history_len)")
                } else {
                    format!("{condition} AND size(#history) = :history_len")
                };
                values.push((":history_len".into(), n(read_len)));
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
