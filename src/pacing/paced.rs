//! [`Paced`]: the worker port, each call after a token of its bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::bucket::TokenBucket;
use super::describe_batches::DescribeBatches;
use super::{Pacing, MAX_RESENDS};
use crate::ports::{Described, TaskStop, UpstreamError, UpstreamKind, WorkerControl, WorkerFleet};

/// What pacing did, for the log, the metrics and the benchmark.
#[derive(Debug, Default)]
pub struct PacingCounts {
    /// Calls ECS answered with a throttling error.
    pub throttled: AtomicU64,
    /// `StopTask`s the API left to the finalizer for want of a token.
    pub deferred: AtomicU64,
}

/// A [`WorkerFleet`] whose calls are paced by process-wide token buckets.
/// Clones share the buckets.
#[derive(Debug, Clone)]
pub struct Paced<W> {
    pub(super) inner: W,
    stop: Arc<TokenBucket>,
    pub(super) read: Arc<TokenBucket>,
    wait: bool,
    counts: Arc<PacingCounts>,
    pub(super) describes: Arc<DescribeBatches>,
}

impl<W> Paced<W> {
    pub fn new(inner: W, pacing: Pacing) -> Self {
        Paced {
            inner,
            stop: Arc::new(TokenBucket::new(pacing.stop)),
            read: Arc::new(TokenBucket::new(pacing.read)),
            wait: pacing.wait,
            counts: Arc::new(PacingCounts::default()),
            describes: Arc::new(DescribeBatches::default()),
        }
    }

    pub fn inner(&self) -> &W {
        &self.inner
    }

    pub fn counts(&self) -> &PacingCounts {
        &self.counts
    }

    /// One paced call: a token first (or, for the API, none left: the call is
    /// not sent), then the call.
    async fn paced<T, F, Fut>(&self, bucket: &TokenBucket, operation: &'static str, call: F) -> Result<T, UpstreamError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        if self.wait {
            bucket.take().await;
        } else if !bucket.try_take() {
            self.counts.deferred.fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::new(
                "ecs",
                operation,
                UpstreamKind::Throttled,
                "not sent: this function's share of the ECS bucket is spent",
            ));
        }
        self.send(bucket, call).await
    }

    /// The call, with a token in hand. A throttle cuts the bucket and, when
    /// this side waits, the call goes again after its next token.
    pub(super) async fn send<T, F, Fut>(&self, bucket: &TokenBucket, call: F) -> Result<T, UpstreamError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let mut resends = 0;
        loop {
            match call().await {
                Err(e) if e.kind == UpstreamKind::Throttled => {
                    self.counts.throttled.fetch_add(1, Ordering::Relaxed);
                    bucket.throttled();
                    if !self.wait || resends >= MAX_RESENDS {
                        return Err(e);
                    }
                    resends += 1;
                    bucket.take().await;
                }
                other => return other,
            }
        }
    }
}

impl<W: WorkerControl> WorkerControl for Paced<W> {
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<TaskStop, UpstreamError> {
        self.paced(&self.stop, "StopTask", || self.inner.stop_task(cluster, task, reason)).await
    }
}

impl<W: WorkerFleet> WorkerFleet for Paced<W> {
    /// The finalizer's (which waits for tokens) are coalesced across runs;
    /// the API never describes.
    async fn describe_tasks(&self, cluster: &str, tasks: &[String]) -> Result<Described, UpstreamError> {
        if self.wait {
            self.describe_coalesced(cluster, tasks).await
        } else {
            self.paced(&self.read, "DescribeTasks", || self.inner.describe_tasks(cluster, tasks)).await
        }
    }

    /// One token per call, however many pages it reads (a page holds 100
    /// tasks; a run's sweep rarely needs two).
    async fn list_running(&self, cluster: &str, started_by: &str) -> Result<Vec<String>, UpstreamError> {
        self.paced(&self.read, "ListTasks", || self.inner.list_running(cluster, started_by)).await
    }
}
