//! Admission against the backlog limits: a queue's `max_queued` (its config) and the
//! server's (`CoreConfig::max_queued`) bound how many tasks may wait (pending or queued). A
//! submit that would take any of them past its limit is refused whole, before anything
//! changes (BOUNDED_BACKLOG); the shell answers 429. The counts are kept by `Tasks`, so the
//! decision costs O(queues named by the submit), never a scan.
//!
//! Only submits are refused. Tasks that become waiting again (retries, reclaimed leases,
//! broadcast copies, schedule fires) are work already accepted, so a backlog may exceed its
//! limit for a while; new submits then wait until it drains below.

use std::collections::{BTreeMap, HashSet};

use super::Coordinator;
use crate::model::{Scoped, TaskDef};

/// A submit refused because a backlog is at its limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueFull {
    /// The queue whose limit it is; `None`: the server-wide limit.
    pub queue: Option<Scoped>,
    pub limit: u64,
    /// Tasks waiting there now.
    pub waiting: u64,
    /// New tasks the submit would have added there.
    pub adding: u64,
}

impl Coordinator {
    /// BOUNDED_BACKLOG: whether the new tasks of a submit fit every limit. A task whose
    /// idempotency key names an existing task (or an earlier one of the same submit) adds
    /// nothing. The server-wide limit is checked first, then queues by name.
    pub(super) fn admit<'a>(
        &self,
        defs: impl Iterator<Item = &'a TaskDef>,
    ) -> Result<(), QueueFull> {
        if self.cfg.max_queued.is_none() && !self.ready.has_backlog_limits() {
            return Ok(());
        }
        let mut adding: BTreeMap<Scoped, u64> = BTreeMap::new();
        let mut keys = HashSet::new();
        for def in defs {
            if let Some(k) = &def.idempotency_key {
                let k = def.scoped(k);
                if self.idempotency.get(&k).is_some() || !keys.insert(k) {
                    continue;
                }
            }
            *adding.entry(def.queue_key()).or_default() += 1;
        }
        let total: u64 = adding.values().sum();
        if let Some(limit) = self.cfg.max_queued {
            let waiting = self.tasks.waiting_total();
            if total > 0 && waiting + total > limit {
                return Err(QueueFull {
                    queue: None,
                    limit,
                    waiting,
                    adding: total,
                });
            }
        }
        for (queue, n) in adding {
            let Some(limit) = self.ready.config(&queue).and_then(|c| c.max_queued) else {
                continue;
            };
            let waiting = self.tasks.waiting_in(&queue);
            if waiting + n > limit {
                return Err(QueueFull {
                    queue: Some(queue),
                    limit,
                    waiting,
                    adding: n,
                });
            }
        }
        Ok(())
    }

    /// Tasks waiting (pending or queued) in `queue`, and in all queues.
    pub fn waiting(&self, queue: &Scoped) -> (u64, u64) {
        (self.tasks.waiting_in(queue), self.tasks.waiting_total())
    }
}
