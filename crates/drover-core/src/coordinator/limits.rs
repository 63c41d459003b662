//! Concurrency keys: at most `max` tasks with one key (`--concurrency-key customer-42
//! --max-concurrent 2`) are ready or running at once, across queues; the others of that key
//! are parked, in priority then submission order, until one ends. Keys are unique within a
//! namespace. The gate comes before the queue's, so a key at its limit holds no queue slot:
//! a limited key never blocks other keys or queues.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::tasks::ReadyKey;
use crate::model::{Scoped, TaskId};

/// A task parked by its key: its queue (the next gate) and its limit.
#[derive(Debug)]
struct Waiter {
    queue: Scoped,
    max: u32,
}

#[derive(Debug, Default)]
struct KeyGate {
    /// Ready or running (or further parked by their queue) under this key.
    admitted: HashSet<TaskId>,
    parked: BTreeMap<ReadyKey, Waiter>,
}

#[derive(Debug, Default)]
pub(super) struct KeyLimits {
    gates: HashMap<Scoped, KeyGate>,
}

impl KeyLimits {
    /// Whether a queued task of `limit` (key, max) may go on to its queue's gate: admitted
    /// now or before. Otherwise it is parked until a task of the key leaves.
    pub(super) fn admit(&mut self, key: ReadyKey, queue: &Scoped, limit: (&Scoped, u32)) -> bool {
        let gate = self.gates.entry(limit.0.clone()).or_default();
        let id = key.2;
        if gate.admitted.contains(&id) {
            return true;
        }
        if gate.admitted.len() < limit.1 as usize {
            gate.admitted.insert(id);
            return true;
        }
        let waiter = Waiter {
            queue: queue.clone(),
            max: limit.1,
        };
        gate.parked.insert(key, waiter);
        false
    }

    /// A leased task (found at restart) holds a slot of its key.
    pub(super) fn hold(&mut self, id: TaskId, limit: &Scoped) {
        self.gates
            .entry(limit.clone())
            .or_default()
            .admitted
            .insert(id);
    }

    /// A task of `limit` left the queued-or-leased set: its slot frees up. Returns the parked
    /// tasks of the key now admitted, each with its queue, for the queue's gate.
    pub(super) fn leave(&mut self, key: &ReadyKey, limit: &Scoped) -> Vec<(ReadyKey, Scoped)> {
        let Some(gate) = self.gates.get_mut(limit) else {
            return Vec::new();
        };
        gate.parked.remove(key);
        let mut admitted = Vec::new();
        if gate.admitted.remove(&key.2) {
            while let Some(entry) = gate.parked.first_entry() {
                if gate.admitted.len() >= entry.get().max as usize {
                    break;
                }
                let (k, w) = entry.remove_entry();
                gate.admitted.insert(k.2);
                admitted.push((k, w.queue));
            }
        }
        if gate.admitted.is_empty() && gate.parked.is_empty() {
            self.gates.remove(limit);
        }
        admitted
    }

    pub(super) fn is_parked(&self, key: &ReadyKey, limit: &Scoped) -> bool {
        self.gates
            .get(limit)
            .is_some_and(|g| g.parked.contains_key(key))
    }

    /// Why a parked task waits, in a sentence.
    pub(super) fn why(&self, key: &ReadyKey, limit: &Scoped) -> Option<String> {
        let g = self.gates.get(limit)?;
        let w = g.parked.get(key)?;
        Some(format!(
            "waiting for concurrency key {}: {} of at most {} already running",
            limit.name,
            g.admitted.len(),
            w.max
        ))
    }

    /// Per key: the tasks it admitted and those it parks (for the KEY_LIMIT check).
    pub(super) fn gates(&self) -> impl Iterator<Item = (&Scoped, Vec<TaskId>, Vec<TaskId>)> {
        self.gates.iter().map(|(k, g)| {
            let admitted = g.admitted.iter().copied().collect();
            let parked = g.parked.keys().map(|r| r.2).collect();
            (k, admitted, parked)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;

    fn key(seq: u64) -> ReadyKey {
        (Reverse(0), seq, TaskId(seq as u128))
    }

    #[test]
    fn a_key_admits_its_limit_and_the_next_when_one_leaves() {
        let mut l = KeyLimits::default();
        let (k, q) = (Scoped::default_ns("customer-42"), Scoped::default_ns("q"));
        assert!(l.admit(key(1), &q, (&k, 2)));
        assert!(l.admit(key(2), &q, (&k, 2)));
        assert!(!l.admit(key(3), &q, (&k, 2)));
        assert!(!l.admit(key(4), &q, (&k, 2)));
        assert!(l.is_parked(&key(3), &k));
        assert_eq!(l.leave(&key(1), &k), vec![(key(3), q.clone())]);
        assert_eq!(
            l.leave(&key(4), &k),
            vec![],
            "a parked task leaving frees nothing"
        );
        assert_eq!(l.leave(&key(2), &k), vec![]);
        assert_eq!(l.leave(&key(3), &k), vec![]);
        assert_eq!(l.gates().count(), 0, "an idle key is forgotten");
    }
}
