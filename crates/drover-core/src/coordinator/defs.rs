//! One shared lean definition per distinct shape. Without its body (`TaskDef::lean`) a
//! definition holds nothing of one task alone (queue, kind, priority, retries, placement,
//! concurrency key), so the tasks of a backlog share a handful of them: a queued task costs
//! the active set a pointer, not a definition.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use crate::model::TaskDef;
use crate::placement::hash::FixedState;

/// Definitions kept before the first sweep of those no task holds any more.
const FIRST_SWEEP: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Defs {
    /// By a hash of the fields that tell shapes apart; equal hashes compare whole.
    by_shape: HashMap<u64, Vec<Arc<TaskDef>>, FixedState>,
    len: usize,
    /// Sweep when `len` reaches it: twice what the last sweep kept.
    sweep_at: usize,
}

impl Defs {
    /// The shared lean definition of `def` (`TaskDef::lean`): `def` itself if it is lean and
    /// none equal is known yet (a snapshot's definitions are lean already: no copy is made).
    pub(super) fn share(&mut self, def: &Arc<TaskDef>) -> Arc<TaskDef> {
        let def = if def.spec.is_in_store() && def.idempotency_key.is_none() {
            def.clone()
        } else {
            Arc::new(def.lean())
        };
        let bucket = self.by_shape.entry(shape(&def)).or_default();
        if let Some(d) = bucket.iter().find(|d| **d == def) {
            return d.clone();
        }
        bucket.push(def.clone());
        self.len += 1;
        if self.len >= self.sweep_at.max(FIRST_SWEEP) {
            self.sweep();
        }
        def
    }

    /// Forgets the definitions only this table holds (their tasks ended).
    fn sweep(&mut self) {
        self.by_shape.retain(|_, bucket| {
            bucket.retain(|d| Arc::strong_count(d) > 1);
            !bucket.is_empty()
        });
        self.len = self.by_shape.values().map(Vec::len).sum();
        self.sweep_at = self.len * 2;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

fn shape(d: &TaskDef) -> u64 {
    let mut h = FixedState::default().build_hasher();
    (&d.namespace, &d.queue, &d.kind, d.priority).hash(&mut h);
    (d.max_attempts, d.backoff_ms, d.timeout_ms).hash(&mut h);
    d.concurrency.as_ref().map(|c| (&c.key, c.max)).hash(&mut h);
    d.placement.key.hash(&mut h);
    d.placement
        .shard
        .as_ref()
        .map(|s| (s.group, s.index))
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyLimit, TaskSpec};

    fn lean(queue: &str, key: Option<&str>) -> TaskDef {
        TaskDef {
            namespace: "default".into(),
            queue: queue.into(),
            kind: String::new(),
            priority: 0,
            spec: TaskSpec::InStore { handler: false },
            max_attempts: 1,
            backoff_ms: 0,
            timeout_ms: None,
            idempotency_key: None,
            placement: Default::default(),
            concurrency: key.map(|k| KeyLimit {
                key: k.into(),
                max: 2,
            }),
        }
    }

    fn share(defs: &mut Defs, def: TaskDef) -> Arc<TaskDef> {
        defs.share(&Arc::new(def))
    }

    #[test]
    fn equal_shapes_share_one_definition() {
        let mut defs = Defs::default();
        let a = share(&mut defs, lean("q", None));
        let b = share(&mut defs, lean("q", None));
        let c = share(&mut defs, lean("q", Some("customer-42")));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, lean("q", Some("customer-42")));
    }

    #[test]
    fn definitions_no_task_holds_are_swept() {
        let mut defs = Defs::default();
        let kept = share(&mut defs, lean("kept", None));
        for i in 0..FIRST_SWEEP * 3 {
            share(&mut defs, lean(&format!("gone-{i}"), None));
        }
        assert!(defs.len() < FIRST_SWEEP * 2, "{} kept", defs.len());
        assert!(Arc::ptr_eq(&kept, &share(&mut defs, lean("kept", None))));
    }
}
