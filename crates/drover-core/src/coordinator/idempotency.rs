//! Idempotency keys: a repeated key names the task first submitted with it, finished or not,
//! for as long as the task is kept in the store (retention sends the deleted ones back). Keys
//! are unique within a namespace.

use std::collections::HashMap;

use crate::model::{Scoped, TaskId};

#[derive(Debug, Default)]
pub(super) struct Idempotency {
    tasks: HashMap<Scoped, TaskId>,
}

impl Idempotency {
    pub(super) fn get(&self, key: &Scoped) -> Option<TaskId> {
        self.tasks.get(key).copied()
    }

    pub(super) fn remember(&mut self, key: Scoped, id: TaskId) {
        self.tasks.insert(key, id);
    }

    /// Loaded from the store: the first task with a key is the original (broadcast copies
    /// share it).
    pub(super) fn restore(&mut self, key: Scoped, id: TaskId) {
        self.tasks.entry(key).or_insert(id);
    }

    /// The task was deleted: its key may make a new task. Only if the key still names that
    /// task and it is not active (a newer task may hold the key by now).
    pub(super) fn forget(&mut self, key: &Scoped, id: TaskId, active: bool) {
        if !active && self.tasks.get(key) == Some(&id) {
            self.tasks.remove(key);
        }
    }
}
