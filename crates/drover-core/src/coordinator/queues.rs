//! Queue configuration (`drover queue set|pause|resume`) and the live counts per queue.

use std::collections::BTreeMap;

use super::io::{Effects, Write};
use super::ready::{QueueConfig, QueueStats};
use super::Coordinator;
use crate::model::{Micros, Scoped, TaskState};

impl Coordinator {
    /// Replaces a queue's configuration: durable, and applied to its tasks at once.
    pub(super) fn configure_queue(&mut self, now: Micros, config: QueueConfig, fx: &mut Effects) {
        match config.strategy {
            Some(s) => self.cfg.queue_strategies.insert(config.key(), s),
            None => self.cfg.queue_strategies.remove(&config.key()),
        };
        fx.writes.push(Write::Queue(config.clone()));
        let mut leased = Vec::new();
        let mut queued = Vec::new();
        let key = config.key();
        for t in self.tasks.values().filter(|t| t.rec.def.queue_key() == key) {
            match t.rec.state {
                s if s.is_leased() => leased.push(t.ready_key()),
                TaskState::Queued => queued.push(t.ready_key()),
                _ => {}
            }
        }
        self.ready
            .configure(config, leased.into_iter(), queued.into_iter(), (now, false));
    }

    /// Configured queues plus every queue with active tasks, with live counts.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        let mut m: BTreeMap<Scoped, QueueStats> = BTreeMap::new();
        for q in self.ready.configs() {
            let s = QueueStats {
                namespace: q.namespace.clone(),
                name: q.name.clone(),
                config: q.clone(),
                ..QueueStats::default()
            };
            m.insert(q.key(), s);
        }
        for t in self.tasks.values() {
            let def = &t.rec.def;
            let s = m.entry(def.queue_key()).or_insert_with(|| QueueStats {
                namespace: def.namespace.clone(),
                name: def.queue.clone(),
                config: QueueConfig {
                    namespace: def.namespace.clone(),
                    name: def.queue.clone(),
                    ..QueueConfig::default()
                },
                ..QueueStats::default()
            });
            if t.rec.state.is_leased() {
                s.running += 1;
            } else {
                s.depth += 1;
            }
        }
        m.into_values().collect()
    }

    pub fn queue_config(&self, name: &Scoped) -> Option<&QueueConfig> {
        self.ready.config(name)
    }
}
