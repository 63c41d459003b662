//! The ready index (one lane per queue, taking turns by weight: `lanes.rs`) and the gates in
//! front of it.
//!
//! A queued task is in the ready index unless a gate parks it: its serial key's turn (only the
//! first active task of a key by submission order may be ready or leased), or its queue
//! paused or at its concurrency. This type owns the index and every gate, so that rule is
//! kept true here alone: the coordinator says when a task becomes queued (`enqueue`), is
//! assigned (`assigned`) or leaves the queued-or-leased set (`leave`), and the gates decide.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::lanes::{FairRound, Lanes};
use super::limits::KeyLimits;
use super::rate::{Bucket, Rate};
use super::tasks::ReadyKey;
use crate::model::{Micros, Scoped, TaskId};
use crate::placement::Strategy;

/// A queue's durable configuration (`drover queue set|pause|resume`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    pub namespace: String,
    pub name: String,
    /// At most this many tasks of the queue ready or running at once.
    pub concurrency: Option<u32>,
    pub paused: bool,
    pub strategy: Option<Strategy>,
    /// Its share of dispatch among backlogged queues (1 to `MAX_WEIGHT`).
    pub weight: u32,
    /// At most this many starts per period (a token bucket).
    pub rate: Option<Rate>,
    /// At most this many tasks waiting (pending or queued): a submit past it is refused.
    pub max_queued: Option<u64>,
}

/// An unconfigured queue in the default namespace.
impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            namespace: crate::model::DEFAULT_NAMESPACE.into(),
            name: String::new(),
            concurrency: None,
            paused: false,
            strategy: None,
            weight: 1,
            rate: None,
            max_queued: None,
        }
    }
}

impl QueueConfig {
    pub fn key(&self) -> Scoped {
        Scoped::new(&self.namespace, &self.name)
    }
}

/// A queue's live counts, for `drover queue list`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub namespace: String,
    pub name: String,
    /// Tasks waiting: pending or queued.
    pub depth: usize,
    /// Tasks assigned or running.
    pub running: usize,
    pub config: QueueConfig,
}

/// Where `enqueue` put a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// In the ready index.
    Open,
    /// Parked until its serial key's earlier tasks are done.
    Turn,
    /// Parked while its queue is paused.
    Paused,
    /// Parked while its queue is at its concurrency.
    Full,
    /// Parked while its concurrency key is at its limit.
    KeyFull,
}

/// A configured queue: its config, the tasks it admitted (ready or leased) and the queued
/// tasks it parks.
#[derive(Debug)]
struct QueueGate {
    config: QueueConfig,
    admitted: HashMap<TaskId, ReadyKey>,
    parked: BTreeSet<ReadyKey>,
    /// The rate limit's bucket, when the config has a rate.
    bucket: Option<Bucket>,
}

impl QueueGate {
    fn has_room(&self) -> bool {
        !self.config.paused
            && self
                .config
                .concurrency
                .is_none_or(|c| self.admitted.len() < c as usize)
    }
}

/// A queued task waiting for its serial key's turn.
#[derive(Debug)]
struct TurnWaiter {
    key: ReadyKey,
    queue: Scoped,
    limit: Option<(Scoped, u32)>,
}

#[derive(Debug, Default)]
pub(super) struct Ready {
    index: Lanes,
    queues: BTreeMap<Scoped, QueueGate>,
    /// Serial key -> its active tasks by submission order.
    lines: HashMap<Scoped, BTreeSet<(u64, TaskId)>>,
    turn: HashMap<TaskId, TurnWaiter>,
    limits: KeyLimits,
}

impl Ready {
    /// A dispatch round over the ready tasks, queue by queue in the fair order, each queue
    /// with a rate limit taking no more than its bucket allows at `now`.
    pub(super) fn round(&self, scan_limit: usize, now: Micros) -> FairRound<'_> {
        let allowance = |q: &Scoped| {
            let b = self.queues.get(q)?.bucket.as_ref()?;
            Some(b.available(now))
        };
        self.index.round(|q| self.weight(q), allowance, scan_limit)
    }

    /// When a rate-limited queue with ready tasks gets its next token, if one waits for it.
    pub(super) fn next_token_at(&self, now: Micros) -> Option<Micros> {
        self.queues
            .iter()
            .filter(|(name, _)| self.index.has_lane(name))
            .filter_map(|(_, g)| g.bucket.as_ref())
            .filter(|b| b.available(now) == 0)
            .map(|b| b.next_token_at(now))
            .min()
    }

    /// A queue's weight: its configured one, else 1.
    pub(super) fn weight(&self, queue: &Scoped) -> u32 {
        self.queues.get(queue).map_or(1, |g| g.config.weight)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    pub(super) fn contains(&self, key: &ReadyKey, queue: &Scoped) -> bool {
        self.index.contains(key, queue)
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// A task with a serial key became active (before its first `enqueue`).
    pub(super) fn join_line(&mut self, serial: &Scoped, seq: u64, id: TaskId) {
        self.lines
            .entry(serial.clone())
            .or_default()
            .insert((seq, id));
    }

    /// A task became queued: into the ready index unless a gate parks it.
    pub(super) fn enqueue(
        &mut self,
        key: ReadyKey,
        queue: &Scoped,
        serial: Option<&Scoped>,
        limit: Option<(&Scoped, u32)>,
    ) -> Gate {
        let id = key.2;
        if let Some(s) = serial {
            if self.first_of(s).is_some_and(|first| first != id) {
                let queue = queue.clone();
                let limit = limit.map(|(k, n)| (k.clone(), n));
                self.turn.insert(id, TurnWaiter { key, queue, limit });
                return Gate::Turn;
            }
        }
        self.through_key(key, queue, limit)
    }

    /// A leased task found at restart holds a slot of its concurrency key, whatever the limit.
    pub(super) fn hold_key(&mut self, key: ReadyKey, limit: &Scoped) {
        self.limits.hold(key.2, limit);
    }

    /// The concurrency key's gate, then the queue's.
    fn through_key(
        &mut self,
        key: ReadyKey,
        queue: &Scoped,
        limit: Option<(&Scoped, u32)>,
    ) -> Gate {
        match limit {
            Some(l) if !self.limits.admit(key, queue, l) => Gate::KeyFull,
            _ => self.through_queue(key, queue),
        }
    }

    fn through_queue(&mut self, key: ReadyKey, queue: &Scoped) -> Gate {
        let Some(q) = self.queues.get_mut(queue) else {
            self.index.insert(key, queue);
            return Gate::Open;
        };
        let id = key.2;
        if q.config.paused {
            q.admitted.remove(&id);
            q.parked.insert(key);
            return Gate::Paused;
        }
        if !q.admitted.contains_key(&id) {
            if !q.has_room() {
                q.parked.insert(key);
                return Gate::Full;
            }
            q.admitted.insert(id, key);
        }
        self.index.insert(key, queue);
        Gate::Open
    }

    /// A ready task was assigned: out of the index, still admitted by its queue; its queue's
    /// turn moves on.
    pub(super) fn assigned(&mut self, key: &ReadyKey, queue: &Scoped, now: Micros) {
        let weight = self.weight(queue);
        self.index.started(key, queue, weight);
        if let Some(b) = self.queues.get_mut(queue).and_then(|g| g.bucket.as_mut()) {
            b.take(now);
        }
    }

    /// A task left the queued-or-leased set (back to pending, or terminal): out of the index
    /// and every gate; its queue admits what it parked while it has room.
    pub(super) fn leave(&mut self, key: &ReadyKey, queue: &Scoped, limit: Option<&Scoped>) {
        let id = key.2;
        self.index.remove(key, queue);
        self.turn.remove(&id);
        if let Some(l) = limit {
            for (k, q) in self.limits.leave(key, l) {
                self.through_queue(k, &q);
            }
        }
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.parked.remove(key);
        if q.admitted.remove(&id).is_some() {
            self.refill(queue);
        }
    }

    /// A task with a serial key left the active set: the next one of the key gets its turn.
    pub(super) fn leave_line(&mut self, serial: &Scoped, seq: u64, id: TaskId) {
        let Some(line) = self.lines.get_mut(serial) else {
            return;
        };
        line.remove(&(seq, id));
        let Some(&(_, next)) = line.first() else {
            self.lines.remove(serial);
            return;
        };
        if let Some(w) = self.turn.remove(&next) {
            let limit = w.limit.as_ref().map(|(k, n)| (k, *n));
            self.through_key(w.key, &w.queue, limit);
        }
    }

    /// Admits parked tasks of a queue while it has room.
    fn refill(&mut self, queue: &Scoped) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        while q.has_room() {
            let Some(key) = q.parked.pop_first() else {
                return;
            };
            q.admitted.insert(key.2, key);
            self.index.insert(key, queue);
        }
    }

    /// Sets a queue's configuration. A queue configured for the first time starts counting
    /// what is admitted now: its `leased` tasks and its `queued` ones that are ready. A new
    /// or changed rate starts a bucket at `now`, full unless `restored` (see `rate.rs`).
    pub(super) fn configure(
        &mut self,
        config: QueueConfig,
        leased: impl Iterator<Item = ReadyKey>,
        queued: impl Iterator<Item = ReadyKey>,
        (now, restored): (Micros, bool),
    ) {
        let name = config.key();
        let bucket = |old: Option<Bucket>| match (config.rate, old) {
            (Some(r), Some(b)) if b.rate() == r => Some(b),
            (Some(r), _) => Some(Bucket::new(r, now, !restored)),
            (None, _) => None,
        };
        if let Some(q) = self.queues.get_mut(&name) {
            q.bucket = bucket(q.bucket.take());
            q.config = config;
        } else {
            let mut admitted: HashMap<TaskId, ReadyKey> = leased.map(|k| (k.2, k)).collect();
            let ready = queued.filter(|k| self.index.contains(k, &name));
            admitted.extend(ready.map(|k| (k.2, k)));
            let gate = QueueGate {
                bucket: bucket(None),
                config,
                admitted,
                parked: BTreeSet::new(),
            };
            self.queues.insert(name.clone(), gate);
        }
        self.trim(&name);
        self.refill(&name);
    }

    /// Parks ready tasks of a queue beyond what its config admits now (all of them when it
    /// is paused), least urgent first; leased ones run to their end.
    fn trim(&mut self, queue: &Scoped) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        let limit = match (q.config.paused, q.config.concurrency) {
            (true, _) => 0,
            (false, Some(c)) => c as usize,
            (false, None) => return,
        };
        let mut ready: Vec<ReadyKey> = q
            .admitted
            .values()
            .filter(|k| self.index.contains(k, queue))
            .copied()
            .collect();
        ready.sort();
        while q.admitted.len() > limit {
            let Some(key) = ready.pop() else {
                return;
            };
            self.index.remove(&key, queue);
            q.admitted.remove(&key.2);
            q.parked.insert(key);
        }
    }

    pub(super) fn config(&self, queue: &Scoped) -> Option<&QueueConfig> {
        self.queues.get(queue).map(|q| &q.config)
    }

    /// Whether any configured queue limits its backlog (`max_queued`).
    pub(super) fn has_backlog_limits(&self) -> bool {
        self.queues.values().any(|g| g.config.max_queued.is_some())
    }

    pub(super) fn configs(&self) -> impl Iterator<Item = &QueueConfig> {
        self.queues.values().map(|q| &q.config)
    }

    fn first_of(&self, serial: &Scoped) -> Option<TaskId> {
        self.lines.get(serial)?.first().map(|e| e.1)
    }

    /// Why a queued task is out of the index, in a sentence; `None` if no gate parks it.
    pub(super) fn why_parked(
        &self,
        key: &ReadyKey,
        queue: &Scoped,
        serial: Option<&Scoped>,
        limit: Option<&Scoped>,
    ) -> Option<String> {
        if let Some(s) = serial {
            if let Some(first) = self.first_of(s).filter(|f| *f != key.2) {
                return Some(format!(
                    "waiting for its turn on key {s} (behind task {first})"
                ));
            }
        }
        if let Some(why) = limit.and_then(|l| self.limits.why(key, l)) {
            return Some(why);
        }
        let q = self.queues.get(queue).filter(|q| q.parked.contains(key))?;
        Some(if q.config.paused {
            format!("queue {} is paused", queue.name)
        } else {
            format!(
                "queue {} is at its concurrency limit ({})",
                queue.name,
                q.config.concurrency.unwrap_or(0)
            )
        })
    }

    /// Whether a queued task is legitimately out of the index (parked by a gate).
    pub(super) fn is_parked(&self, key: &ReadyKey, queue: &Scoped, limit: Option<&Scoped>) -> bool {
        self.turn.contains_key(&key.2)
            || limit.is_some_and(|l| self.limits.is_parked(key, l))
            || self
                .queues
                .get(queue)
                .is_some_and(|q| q.parked.contains(key))
    }

    /// The concurrency keys, for the invariant checks: key -> admitted and parked tasks.
    pub(super) fn key_gates(&self) -> impl Iterator<Item = (&Scoped, Vec<TaskId>, Vec<TaskId>)> {
        self.limits.gates()
    }

    /// The serial lines, for the invariant checks: key -> task ids in turn order.
    pub(super) fn lines(
        &self,
    ) -> impl Iterator<Item = (&Scoped, impl Iterator<Item = TaskId> + '_)> + '_ {
        self.lines
            .iter()
            .map(|(k, line)| (k, line.iter().map(|e| e.1)))
    }

    /// Per configured queue: its config, the tasks it admitted, and whether any of them is
    /// in the ready index (for the QUEUE_GATE check).
    pub(super) fn gates(&self) -> impl Iterator<Item = (&QueueConfig, Vec<TaskId>, usize)> {
        self.queues.iter().map(|(name, q)| {
            let ready = q
                .admitted
                .values()
                .filter(|k| self.index.contains(k, name))
                .count();
            (&q.config, q.admitted.keys().copied().collect(), ready)
        })
    }

    /// Whether an index entry belongs to a queue that parks or admits it.
    pub(super) fn admitted_by(&self, key: &ReadyKey, queue: &Scoped) -> bool {
        self.queues
            .get(queue)
            .is_none_or(|q| q.admitted.contains_key(&key.2))
    }

    /// Admits a parked task regardless of its gate: only for the checker's own tests.
    #[cfg(test)]
    pub(super) fn force_admit(&mut self, key: ReadyKey, queue: &Scoped) {
        let q = self.queues.get_mut(queue).expect("a configured queue");
        q.parked.remove(&key);
        q.admitted.insert(key.2, key);
        self.index.insert(key, queue);
    }
}
