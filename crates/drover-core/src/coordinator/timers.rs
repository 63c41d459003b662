//! A set of deadlines keyed by what they are for, earliest first. The core keeps one per
//! kind of timer (delays, leases, start deadlines, schedules, worker silence); the shell asks
//! `poll_timeout` for the earliest of all of them.

use std::collections::BTreeSet;

use crate::model::Micros;

#[derive(Debug)]
pub(super) struct Timers<K: Ord> {
    due: BTreeSet<(Micros, K)>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            due: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Timers<K> {
    pub(super) fn arm(&mut self, at: Micros, key: K) {
        self.due.insert((at, key));
    }

    pub(super) fn disarm(&mut self, at: Micros, key: K) {
        self.due.remove(&(at, key));
    }

    pub(super) fn is_armed(&self, at: Micros, key: &K) -> bool {
        self.due.contains(&(at, key.clone()))
    }

    pub(super) fn next(&self) -> Option<Micros> {
        self.due.first().map(|e| e.0)
    }

    /// Takes the earliest timer due at `now`, if any.
    pub(super) fn pop_due(&mut self, now: Micros) -> Option<(Micros, K)> {
        if self.due.first()?.0 > now {
            return None;
        }
        self.due.pop_first()
    }

    /// Drops every timer of `key` (when its time is not known).
    pub(super) fn disarm_all(&mut self, key: &K) {
        self.due.retain(|(_, k)| k != key);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &(Micros, K)> {
        self.due.iter()
    }
}
