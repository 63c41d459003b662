//! The coordinator's placement state: the strategy state (rotation cursor, hash ring,
//! adaptive model), per-task placement specs that differ from the default, and the last
//! reason a queued task could not be placed.

use std::collections::HashMap;
use std::sync::Arc;

use super::io::CoreConfig;
use crate::model::{AttemptOutcome, Micros, TaskDef, TaskId};
use crate::placement::hash::FixedState;
use crate::placement::{PlacementSpec, PlacementState, Ranker, Strategy, Unplaced};

pub(super) struct Placer {
    /// An external ranking rule replacing every task's strategy (the simulator's oracle).
    pub(super) external: Option<Box<dyn Ranker + Send>>,
    pub(super) state: PlacementState,
    /// Specs that differ from the default (submitted with `SubmitPlaced`, derived from the
    /// def, or a broadcast copy's shard).
    specs: HashMap<TaskId, Arc<PlacementSpec>, FixedState>,
    /// The last reason dispatch recorded for a queued task it could not place.
    why: HashMap<TaskId, Unplaced, FixedState>,
    default_spec: Arc<PlacementSpec>,
}

/// THE place where a task's placement comes from its definition.
pub(super) fn spec_from_def(def: &TaskDef) -> Option<PlacementSpec> {
    (!def.placement.is_default()).then(|| def.placement.clone())
}

/// The strategy that ranks a task: its own, else its queue's, else the default.
pub(super) fn strategy_for(cfg: &CoreConfig, spec: &PlacementSpec, def: &TaskDef) -> Strategy {
    spec.strategy
        .or_else(|| cfg.queue_strategies.get(&def.queue_key()).copied())
        .unwrap_or(cfg.default_strategy)
}

impl Placer {
    pub(super) fn new(cfg: &CoreConfig) -> Self {
        Placer {
            external: None,
            state: PlacementState::new(cfg.adaptive.clone(), cfg.hash_vnodes),
            specs: HashMap::default(),
            why: HashMap::default(),
            default_spec: Arc::new(PlacementSpec::default()),
        }
    }

    pub(super) fn spec_of(&self, id: TaskId, def: &TaskDef) -> Arc<PlacementSpec> {
        if let Some(s) = self.specs.get(&id) {
            return s.clone();
        }
        match spec_from_def(def) {
            Some(s) => Arc::new(s),
            None => self.default_spec.clone(),
        }
    }

    pub(super) fn set_spec(&mut self, id: TaskId, spec: Arc<PlacementSpec>) {
        self.specs.insert(id, spec);
    }

    /// Keeps a spec unless the task already has one.
    pub(super) fn offer_spec(&mut self, id: TaskId, spec: PlacementSpec) {
        self.specs.entry(id).or_insert_with(|| Arc::new(spec));
    }

    pub(super) fn why(&self, id: &TaskId) -> Option<&Unplaced> {
        self.why.get(id)
    }

    /// Records why a task was not placed; blocked tasks are looked at again every round, so
    /// only a change is stored.
    pub(super) fn note_unplaced(&mut self, id: TaskId, u: Unplaced) {
        let same = self.why.get(&id).is_some_and(|old| {
            old.note == u.note && old.workers == u.workers && old.rejected == u.rejected
        });
        if !same {
            self.why.insert(id, u);
        }
    }

    pub(super) fn placed(&mut self, id: &TaskId) {
        self.why.remove(id);
    }

    /// Feeds the adaptive model with one ended attempt.
    pub(super) fn learn(
        &mut self,
        worker: &str,
        kind: &str,
        run_us: Option<Micros>,
        outcome: AttemptOutcome,
    ) {
        let failed = match outcome {
            AttemptOutcome::Succeeded => false,
            AttemptOutcome::Failed | AttemptOutcome::TimedOut | AttemptOutcome::Lost => true,
            // Given back or stopped on request: says nothing about the worker.
            AttemptOutcome::Cancelled => return,
        };
        // A loss has no meaningful run time.
        let run = if outcome == AttemptOutcome::Lost {
            None
        } else {
            run_us
        };
        self.state.adaptive.observe(worker, kind, run, failed);
    }

    /// The task left the active set.
    pub(super) fn forget(&mut self, id: &TaskId) {
        self.specs.remove(id);
        self.why.remove(id);
    }
}
