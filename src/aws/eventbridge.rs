//! The event bus in EventBridge: the [`EventPublisher`] port. One
//! `PutEvents` call per 10 events (its limit); an entry the bus refuses
//! (`FailedEntryCount`, an `ErrorCode` on the entry) is reported as not
//! published, so the caller sends it again: delivery is at least once.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::upstream::from_sdk;
use crate::ports::{BusEvent, EventPublisher, UpstreamError, UpstreamKind};

/// `PutEvents` takes at most this many entries.
const PUT_EVENTS_MAX: usize = 10;

/// Run events on one bus, from one source.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    source: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        EventBridgePublisher { client, bus: bus.into(), source: source.into() }
    }

    /// A client built from the shared SDK configuration ([`super::sdk_config`]).
    pub fn from_conf(conf: &aws_config::SdkConfig, bus: impl Into<String>, source: impl Into<String>) -> Self {
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(conf), bus, source)
    }

    async fn put(&self, events: &[BusEvent]) -> Result<Vec<Option<String>>, UpstreamError> {
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&self.source)
                    .detail_type(e.detail_type)
                    .set_resources(Some(e.resources.clone()))
                    .detail(&e.detail)
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|err| from_sdk("events", "PutEvents", &err))?;
        let results = out.entries();
        if results.len() != events.len() {
            return Err(UpstreamError::new(
                "events",
                "PutEvents",
                UpstreamKind::Fault,
                format!("{} entries answered for {} sent", results.len(), events.len()),
            ));
        }
        Ok(results
            .iter()
            .map(|r| r.error_code().map(|code| format!("{code}: {}", r.error_message().unwrap_or("no message"))))
            .collect())
    }
}

impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[BusEvent]) -> Result<Vec<Option<String>>, UpstreamError> {
        let mut results = Vec::with_capacity(events.len());
        for chunk in events.chunks(PUT_EVENTS_MAX) {
            match self.put(chunk).await {
                Ok(r) => results.extend(r),
                // A call that failed as a whole: its events are not
                // published; the later chunks are still tried.
                Err(e) => {
                    tracing::warn!(error = %e, events = chunk.len(), "PutEvents failed");
                    results.extend(chunk.iter().map(|_| Some(format!("{}: {}", e.operation, e.detail))));
                }
            }
        }
        Ok(results)
    }
}
