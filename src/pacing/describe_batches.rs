//! The finalizer's `DescribeTasks` of different runs, coalesced while they
//! wait for a read token.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::paced::Paced;
use crate::ports::{Described, UpstreamError, UpstreamKind, WorkerFleet, DESCRIBE_TASKS_MAX};

/// `DescribeTasks` requests of one process waiting for a read token, per
/// cluster. Whoever gets a token sends one call for the oldest waiting
/// requests, up to ECS's 100 tasks, and hands each its part of the answer:
/// while the read bucket is short, the polls of many runs share its tokens
/// instead of queueing one call each.
#[derive(Debug, Default)]
pub(super) struct DescribeBatches {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<String, VecDeque<Waiting>>>,
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    tasks: Vec<String>,
    reply: oneshot::Sender<Result<Described, UpstreamError>>,
}

impl DescribeBatches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Waiting>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest requests of `cluster` that fit one call, if request `id`
    /// is still waiting (else another caller is already answering it).
    fn take_batch(&self, cluster: &str, id: u64) -> Option<Vec<Waiting>> {
        let mut waiting = self.lock();
        let queue = waiting.get_mut(cluster)?;
        if !queue.iter().any(|w| w.id == id) {
            return None;
        }
        let mut batch: Vec<Waiting> = Vec::new();
        let mut tasks = 0;
        while let Some(next) = queue.front() {
            if !batch.is_empty() && tasks + next.tasks.len() > DESCRIBE_TASKS_MAX {
                break;
            }
            tasks += next.tasks.len();
            batch.extend(queue.pop_front());
        }
        if queue.is_empty() {
            waiting.remove(cluster);
        }
        Some(batch)
    }
}

/// Takes a cancelled request out of the queue, so nobody describes for it.
struct Enqueued<'a> {
    batches: &'a DescribeBatches,
    cluster: &'a str,
    id: u64,
}

impl Drop for Enqueued<'_> {
    fn drop(&mut self) {
        let mut waiting = self.batches.lock();
        if let Some(queue) = waiting.get_mut(self.cluster) {
            queue.retain(|w| w.id != self.id);
            if queue.is_empty() {
                waiting.remove(self.cluster);
            }
        }
    }
}

impl<W: WorkerFleet> Paced<W> {
    /// `DescribeTasks` for `tasks`, coalesced with the other requests of this
    /// process waiting for a read token (see [`DescribeBatches`]).
    pub(super) async fn describe_coalesced(&self, cluster: &str, tasks: &[String]) -> Result<Described, UpstreamError> {
        let (reply, mut answer) = oneshot::channel();
        let id = self.describes.next_id.fetch_add(1, Ordering::Relaxed);
        self.describes.lock().entry(cluster.to_owned()).or_default().push_back(Waiting {
            id,
            tasks: tasks.to_vec(),
            reply,
        });
        let _enqueued = Enqueued { batches: &self.describes, cluster, id };
        let lost = || UpstreamError::new("ecs", "DescribeTasks", UpstreamKind::Fault, "the batch's call was cancelled");
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => return answered.unwrap_or_else(|_| Err(lost())),
                () = self.read.take() => {
                    let Some(batch) = self.describes.take_batch(cluster, id) else {
                        // Another caller took this request into its call: the
                        // token goes back, the answer comes from that call.
                        self.read.give_back();
                        return answer.await.unwrap_or_else(|_| Err(lost()));
                    };
                    self.answer_batch(cluster, batch).await;
                }
            }
        }
    }

    /// One `DescribeTasks` for a batch (a token in hand); each request gets
    /// the tasks it asked about, or the call's error.
    async fn answer_batch(&self, cluster: &str, batch: Vec<Waiting>) {
        let mut all: Vec<String> = batch.iter().flat_map(|w| w.tasks.iter().cloned()).collect();
        all.sort();
        all.dedup();
        let result = self.send(&self.read, || self.inner.describe_tasks(cluster, &all)).await;
        for w in batch {
            let part = match &result {
                Ok(d) => {
                    let asked: HashSet<&String> = w.tasks.iter().collect();
                    Ok(Described {
                        found: d.found.iter().filter(|t| asked.contains(&t.arn)).cloned().collect(),
                        missing: d.missing.iter().filter(|t| asked.contains(t)).cloned().collect(),
                    })
                }
                Err(e) => Err(e.clone()),
            };
            let _ = w.reply.send(part);
        }
    }
}
