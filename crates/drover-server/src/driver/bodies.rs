//! Task bodies for assignments. The core keeps no task's body (`TaskSpec::InStore`: argv,
//! env, payload), so an assignment leaves it with a stand-in. The driver puts the body back
//! before it sends: from a bounded cache of the bodies it committed lately (a task submitted
//! and assigned soon after, the common case, costs no read), else from the store, read after
//! the batch commits, in one query per batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use drover_core::{Assignment, SessionId, TaskDef, TaskId, ToWorker, Write};

/// Bodies kept of recently submitted tasks. Bounds the cache's memory (a few tens of MiB
/// with large argv) while covering a backlog that drains within seconds.
pub const CACHED_BODIES: usize = 65_536;

/// Whole definitions of recently inserted tasks, oldest evicted first.
#[derive(Default)]
pub struct Bodies {
    defs: HashMap<TaskId, Arc<TaskDef>>,
    /// Insertion order, for eviction; may name ids already taken out.
    order: VecDeque<TaskId>,
}

impl Bodies {
    /// Keeps the bodies of the tasks these writes insert.
    pub fn remember(&mut self, writes: &[Write]) {
        for w in writes {
            if let Write::Task {
                record,
                is_new: true,
            } = w
            {
                if !record.def.spec.is_in_store() {
                    self.defs.insert(record.id, record.def.clone());
                    self.order.push_back(record.id);
                }
            }
        }
        while self.defs.len() > CACHED_BODIES {
            match self.order.pop_front() {
                Some(id) => {
                    self.defs.remove(&id);
                }
                None => break,
            }
        }
        // Ids taken out by `resolve` linger in `order`; drop them once they dominate.
        if self.order.len() > 2 * CACHED_BODIES {
            let defs = &self.defs;
            self.order.retain(|id| defs.contains_key(id));
        }
    }

    /// Gives the assignments in `sends` the bodies the cache has (an assigned task's body is
    /// taken out: a retry reads it again); returns the ids it had none for.
    pub fn resolve(&mut self, sends: &mut [(SessionId, ToWorker)]) -> Vec<TaskId> {
        let mut missing = Vec::new();
        for a in assignments(sends) {
            match self.defs.remove(&a.task_id) {
                Some(def) => a.def = TaskDef::with_body(&a.def, &def),
                None => missing.push(a.task_id),
            }
        }
        missing
    }
}

/// Gives the assignments still without a body theirs from `read` (the store's); returns the
/// ids of those it could not (their attempts are not sent; their leases reclaim them).
pub fn fill(
    sends: &mut [(SessionId, ToWorker)],
    read: &HashMap<TaskId, Arc<TaskDef>>,
) -> Vec<TaskId> {
    let mut unresolved = Vec::new();
    for a in assignments(sends) {
        match read.get(&a.task_id) {
            Some(def) => a.def = TaskDef::with_body(&a.def, def),
            None => unresolved.push(a.task_id),
        }
    }
    unresolved
}

/// The assignments among `sends` that still lack their body.
fn assignments(sends: &mut [(SessionId, ToWorker)]) -> impl Iterator<Item = &mut Assignment> {
    sends.iter_mut().filter_map(|(_, msg)| match msg {
        ToWorker::Assign(a) if a.def.spec.is_in_store() => Some(a),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::{LeaseToken, TaskRecord, TaskSpec, TaskState, Upstream};

    fn def(spec: TaskSpec) -> Arc<TaskDef> {
        Arc::new(TaskDef {
            namespace: "default".into(),
            queue: "q".into(),
            kind: String::new(),
            priority: 0,
            spec,
            max_attempts: 1,
            backoff_ms: 0,
            timeout_ms: None,
            idempotency_key: Some("k".into()),
            placement: Default::default(),
            concurrency: None,
        })
    }

    fn exec() -> TaskSpec {
        TaskSpec::Exec {
            argv: vec!["echo".into(), "hi".into()],
            env: vec![],
            cwd: None,
            secret_env: vec![],
        }
    }

    fn insert(id: u128) -> Write {
        Write::Task {
            record: TaskRecord::new(
                TaskId(id),
                id as u64,
                def(exec()),
                TaskState::Queued,
                None,
                0,
            ),
            is_new: true,
        }
    }

    fn assign(id: u128) -> (SessionId, ToWorker) {
        let lean = Arc::new(def(exec()).lean());
        let a = Assignment {
            task_id: TaskId(id),
            attempt: 1,
            lease: LeaseToken(1),
            def: lean,
            upstream: Upstream::default(),
        };
        (1, ToWorker::Assign(a))
    }

    fn spec_of(send: &(SessionId, ToWorker)) -> &TaskSpec {
        match &send.1 {
            ToWorker::Assign(a) => &a.def.spec,
            _ => unreachable!(),
        }
    }

    #[test]
    fn cached_bodies_resolve_once_and_the_rest_is_read() {
        let mut b = Bodies::default();
        b.remember(&[insert(1)]);
        let mut sends = vec![assign(1), assign(2)];
        assert_eq!(b.resolve(&mut sends), vec![TaskId(2)]);
        assert_eq!(spec_of(&sends[0]), &exec());
        assert!(spec_of(&sends[1]).is_in_store());
        // Taken out: a second attempt of task 1 needs a read.
        assert_eq!(b.resolve(&mut [assign(1)]), vec![TaskId(1)]);
        let read = HashMap::from([(TaskId(2), def(exec()))]);
        assert!(fill(&mut sends, &read).is_empty());
        assert_eq!(spec_of(&sends[1]), &exec());
        let mut lost = vec![assign(3)];
        assert_eq!(fill(&mut lost, &read), vec![TaskId(3)]);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut b = Bodies::default();
        let writes: Vec<Write> = (0..CACHED_BODIES as u128 + 10).map(insert).collect();
        b.remember(&writes);
        assert_eq!(b.defs.len(), CACHED_BODIES);
        // The oldest went first.
        assert_eq!(b.resolve(&mut [assign(0)]), vec![TaskId(0)]);
        assert!(b
            .resolve(&mut [assign(CACHED_BODIES as u128 + 9)])
            .is_empty());
    }
}
