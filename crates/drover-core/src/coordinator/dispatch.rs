//! The coordinator's side of placement: the strategy state it owns (rotation cursor, hash
//! ring, adaptive model), per-task placement specs, the last reason a queued task was not
//! placed, drain, broadcast fan-out, and the dispatch loop itself.
//!
//! A child module of `coordinator`, so it sees the private state without widening it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::placement::hash::{fnv1a, mix, FixedState};
use crate::placement::{
    broadcast_targets, candidates, rank, PlacementSpec, PlacementState, Ranker, Shard, Strategy,
    Unplaced, WorkerView,
};

use super::*;

/// Why a drain request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainError {
    /// No connected worker has this name.
    NotConnected,
}

/// Placement state owned by the coordinator.
pub(super) struct Placer {
    /// An external ranking rule replacing every task's strategy (the simulator's oracle).
    external: Option<Box<dyn Ranker + Send>>,
    pub(super) state: PlacementState,
    /// Specs of tasks that differ from the default (submitted with `SubmitPlaced`, derived
    /// from the def, or a broadcast copy). In memory; see `spec_from_def`.
    specs: HashMap<TaskId, Arc<PlacementSpec>, FixedState>,
    /// The last reason dispatch recorded for a queued task it could not place.
    why: HashMap<TaskId, Unplaced, FixedState>,
    /// Names of drained workers; kept across reconnects.
    drain_set: BTreeSet<String>,
    default_spec: Arc<PlacementSpec>,
}

/// THE place where a task's placement comes from its definition. When `TaskDef` gains a
/// `placement: PlacementSpec` field this body becomes
/// `(!def.placement.is_default()).then(|| def.placement.clone())`.
fn spec_from_def(def: &TaskDef) -> Option<PlacementSpec> {
    (!def.placement.is_default()).then(|| def.placement.clone())
}

impl Placer {
    pub(super) fn new(cfg: &CoreConfig) -> Self {
        Placer {
            external: None,
            state: PlacementState::new(cfg.adaptive.clone(), cfg.hash_vnodes),
            specs: HashMap::default(),
            why: HashMap::default(),
            drain_set: BTreeSet::new(),
            default_spec: Arc::new(PlacementSpec::default()),
        }
    }

    fn spec_of(&self, id: TaskId, def: &TaskDef) -> Arc<PlacementSpec> {
        if let Some(s) = self.specs.get(&id) {
            return s.clone();
        }
        match spec_from_def(def) {
            Some(s) => Arc::new(s),
            None => self.default_spec.clone(),
        }
    }

    pub(super) fn restore_drained(&mut self, names: Vec<String>) {
        self.drain_set.extend(names);
    }

    pub(super) fn is_drained(&self, name: &str) -> bool {
        self.drain_set.contains(name)
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
    pub(super) fn forget(&mut self, id: TaskId) {
        self.specs.remove(&id);
        self.why.remove(&id);
    }
}

fn strategy_for(cfg: &CoreConfig, spec: &PlacementSpec, def: &TaskDef) -> Strategy {
    spec.strategy
        .or_else(|| cfg.queue_strategies.get(&def.queue).copied())
        .unwrap_or(cfg.default_strategy)
}

/// A broadcast copy's id: the parent's UUIDv7 timestamp and version, the rest derived from
/// (parent, index, salt), so copies sort next to the parent and replay identically.
fn child_id(parent: TaskId, index: u32, salt: u32) -> TaskId {
    const TOP52: u128 = !((1u128 << 76) - 1);
    let seed = fnv1a(&parent.0.to_le_bytes()) ^ mix(((salt as u64) << 32) | index as u64);
    let lo = mix(seed);
    let hi = mix(lo ^ 0x9e37_79b9_7f4a_7c15);
    let rand = ((hi as u128) << 64) | lo as u128;
    let v = (parent.0 & TOP52) | (rand & !TOP52);
    TaskId((v & !(0b11u128 << 62)) | (0b10u128 << 62))
}

/// A task's key in the ready index.
type ReadyKey = (Reverse<i32>, u64, TaskId);

/// A round's decisions, applied once the views are dropped.
struct Round {
    place: Vec<(ReadyKey, String)>,
    fan_out: Vec<TaskId>,
}

impl WorkerSummary {
    /// `alive`, `draining` (still finishing what it holds) or `drained` (holds nothing).
    pub fn state(&self) -> &'static str {
        match (self.draining, self.held) {
            (false, _) => "alive",
            (true, 0) => "drained",
            (true, _) => "draining",
        }
    }
}

impl Coordinator {
    /// Places queued tasks on workers with free credit, each by its strategy. Call after a
    /// batch of inputs. Work per call is bounded by the free credit plus
    /// `dispatch_scan_limit` misses, each O(workers): never O(all tasks).
    pub fn dispatch(&mut self, now: Micros, fx: &mut Effects) {
        let mut ext = self.pl.external.take();
        match ext.as_deref_mut() {
            Some(r) => self.dispatch_inner(now, fx, Some(r)),
            None => self.dispatch_inner(now, fx, None),
        }
        self.pl.external = ext;
    }

    /// Installs (or with `None` removes) an external ranking rule that replaces every task's
    /// strategy in all later dispatches, including those inside `handle_timeout`. For the
    /// simulator's baselines; a server never sets one.
    pub fn set_ranker(&mut self, ranker: Option<Box<dyn Ranker + Send>>) {
        self.pl.external = ranker;
    }

    /// Like `dispatch`, but `ranker` chooses among the feasible workers instead of the tasks'
    /// strategies (the simulator's oracle). Feasibility, credit and fan-out stay the core's.
    pub fn dispatch_with(&mut self, now: Micros, fx: &mut Effects, ranker: &mut dyn Ranker) {
        self.dispatch_inner(now, fx, Some(ranker));
    }

    fn dispatch_inner<'r>(
        &mut self,
        now: Micros,
        fx: &mut Effects,
        mut ranker: Option<&mut (dyn Ranker + 'r)>,
    ) {
        // A second pass places the copies a broadcast fan-out just queued.
        for _ in 0..2 {
            if self.ready.is_empty() {
                return;
            }
            let quiet = ms(self.cfg.suspect_after_ms);
            let budget: usize = self
                .workers
                .values()
                .filter(|w| !w.draining && now - w.last_seen <= quiet)
                .map(|w| w.info.credit_limit().saturating_sub(w.held.len()))
                .sum();
            if budget == 0 {
                return;
            }
            let round = self.plan_round(now, budget, ranker.as_deref_mut());
            for (key, name) in round.place {
                self.ready.remove(&key);
                self.pl.why.remove(&key.2);
                self.assign(now, key.2, &name, fx);
            }
            let mut fanned = false;
            for id in round.fan_out {
                fanned |= self.fan_out(now, id, fx);
            }
            if !fanned {
                return;
            }
        }
    }

    fn plan_round<'r>(
        &mut self,
        now: Micros,
        mut budget: usize,
        mut ranker: Option<&mut (dyn Ranker + 'r)>,
    ) -> Round {
        let Coordinator {
            ref cfg,
            ref mut rng,
            ref tasks,
            ref ready,
            ref workers,
            ref mut pl,
            ..
        } = *self;
        let quiet = ms(cfg.suspect_after_ms);
        let mut views: Vec<WorkerView<'_>> = workers
            .values()
            .map(|w| {
                let mut v = WorkerView::new(&w.info, w.held.len(), w.draining);
                v.suspect = now - w.last_seen > quiet;
                v
            })
            .collect();
        pl.state.begin_round(&views);
        if let Some(r) = ranker.as_deref_mut() {
            r.begin_round(&views);
        }
        let mut round = Round {
            place: Vec::new(),
            fan_out: Vec::new(),
        };
        let mut used_known = false;
        let mut cached: Option<(String, Arc<PlacementSpec>, crate::placement::Candidates)> = None;
        let mut misses = 0;
        for key in ready.iter() {
            if budget == 0 || misses > cfg.dispatch_scan_limit {
                break;
            }
            let id = key.2;
            let def = &tasks[&id].rec.def;
            let spec = pl.spec_of(id, def);
            let strategy = strategy_for(cfg, &spec, def);
            if strategy == Strategy::Broadcast && spec.shard.is_none() {
                round.fan_out.push(id);
                misses += 1;
                continue;
            }
            if !spec.resources.is_empty() && !used_known {
                // Resources held per worker: summed once per round, only when asked for.
                for (v, w) in views.iter_mut().zip(workers.values()) {
                    for held in w.held.keys() {
                        if let Some(t) = tasks.get(held) {
                            let s = pl.spec_of(*held, &t.rec.def);
                            for (k, n) in s.resources.iter() {
                                *v.used.entry(k.to_string()).or_default() += n;
                            }
                        }
                    }
                }
                used_known = true;
            }
            // Tasks of one placement class see the same candidates until a decision
            // changes the views: evaluate feasibility once per class, not once per task.
            let same_class = cached.as_ref().is_some_and(|(k, s, _)| {
                k == &def.kind
                    && s.selector == spec.selector
                    && s.resources == spec.resources
                    && s.shard == spec.shard
            });
            if !same_class {
                let c = candidates(&spec, &def.kind, &views);
                cached = Some((def.kind.clone(), spec.clone(), c));
            }
            let cands = &cached.as_ref().expect("just set").2;
            let choice = match ranker.as_deref_mut() {
                Some(r) => r
                    .choose(&def.kind, &spec, &views, &cands.ok, &cands.eligible)
                    .filter(|i| cands.ok.binary_search(i).is_ok())
                    .ok_or(None),
                None => rank(
                    strategy,
                    &spec,
                    &def.kind,
                    &views,
                    cands,
                    &mut pl.state,
                    rng,
                ),
            };
            match choice {
                Ok(i) => {
                    cached = None;
                    views[i].take(&spec.resources);
                    round.place.push((*key, views[i].info.name.clone()));
                    budget -= 1;
                }
                Err(note) => {
                    misses += 1;
                    // Blocked tasks are looked at again every round: write only changes.
                    let same = pl.why.get(&id).is_some_and(|old| {
                        old.note == note
                            && old.workers == cands.unplaced.workers
                            && old.rejected == cands.unplaced.rejected
                    });
                    if !same {
                        let mut u = cands.unplaced.clone();
                        u.note = note;
                        pl.why.insert(id, u);
                    }
                }
            }
        }
        round
    }

    /// Turns a queued broadcast task into one copy per worker that could take it: the task
    /// itself becomes shard 0, the others are new tasks with derived ids. Returns false (and
    /// records why) when no worker could take it; dispatch tries again later.
    fn fan_out(&mut self, now: Micros, id: TaskId, fx: &mut Effects) -> bool {
        let Some(t) = self.tasks.get(&id) else {
            return false;
        };
        if t.rec.state != TaskState::Queued {
            return false;
        }
        let def = t.rec.def.clone();
        let spec = self.pl.spec_of(id, &def);
        if spec.shard.is_some() {
            return false;
        }
        let quiet = ms(self.cfg.suspect_after_ms);
        let views: Vec<WorkerView<'_>> = self
            .workers
            .values()
            .map(|w| {
                let mut v = WorkerView::new(&w.info, w.held.len(), w.draining);
                v.suspect = now - w.last_seen > quiet;
                v
            })
            .collect();
        let targets: Vec<String> = broadcast_targets(&spec, &def.kind, &views)
            .into_iter()
            .map(|i| views[i].info.name.clone())
            .collect();
        if targets.is_empty() {
            let u = candidates(&spec, &def.kind, &views).unplaced;
            drop(views);
            self.pl.why.insert(id, u);
            return false;
        }
        drop(views);
        let count = targets.len() as u32;
        for (i, worker) in targets.into_iter().enumerate() {
            let shard = Shard {
                group: id,
                index: i as u32,
                count,
                worker: worker.clone(),
            };
            let copy = Arc::new(PlacementSpec {
                shard: Some(shard),
                ..(*spec).clone()
            });
            // The shard is part of the definition, so it survives a restart.
            let shard_def = Arc::new(TaskDef {
                placement: (*copy).clone(),
                ..(*def).clone()
            });
            if i == 0 {
                self.pl.specs.insert(id, copy);
                self.pl.why.remove(&id);
                if let Some(t) = self.tasks.get_mut(&id) {
                    t.rec.def = shard_def;
                }
                self.write_task(id, false, fx);
                continue;
            }
            let mut salt = 0;
            let mut cid = child_id(id, i as u32, salt);
            while self.tasks.contains_key(&cid) {
                salt += 1;
                cid = child_id(id, i as u32, salt);
            }
            let seq = self.next_task_seq;
            self.next_task_seq += 1;
            let rec = TaskRecord::new(cid, seq, shard_def, TaskState::Queued, None, now);
            let ev = task_event(
                &rec,
                Some(format!(
                    "broadcast copy {i} of {count} of task {id}, for worker {worker}"
                )),
            );
            fx.writes.push(Write::Task {
                record: rec.clone(),
                is_new: true,
            });
            self.tasks.insert(
                cid,
                ActiveTask {
                    rec,
                    attempt: None,
                    lease_expires: 0,
                    log_bytes: [0; 2],
                },
            );
            self.pl.specs.insert(cid, copy);
            // Through the queue's gates, like any task that becomes queued.
            self.enqueue(cid);
            self.emit(now, ev, fx);
        }
        true
    }

    /// Remembers the placement specs of tasks about to be submitted.
    pub(super) fn submit_placed(
        &mut self,
        now: Micros,
        req: RequestId,
        tasks: Vec<(NewTask, PlacementSpec)>,
        fx: &mut Effects,
    ) {
        let mut plain = Vec::with_capacity(tasks.len());
        for (nt, mut spec) in tasks {
            // Shards are the core's to assign.
            spec.shard = None;
            if !spec.is_default() {
                self.pl.specs.insert(nt.id, Arc::new(spec));
            }
            plain.push(nt);
        }
        self.submit_and_fan_out(now, req, plain, fx);
    }

    /// Submit, then fan out the broadcast tasks among them (submit-time fan-out).
    pub(super) fn submit_and_fan_out(
        &mut self,
        now: Micros,
        req: RequestId,
        tasks: Vec<NewTask>,
        fx: &mut Effects,
    ) {
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        for t in &tasks {
            if let Some(s) = spec_from_def(&t.def) {
                self.pl.specs.entry(t.id).or_insert_with(|| Arc::new(s));
            }
        }
        self.submit(now, req, tasks, fx);
        for id in ids {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            let spec = self.pl.spec_of(id, &t.rec.def);
            if strategy_for(&self.cfg, &spec, &t.rec.def) == Strategy::Broadcast {
                self.fan_out(now, id, fx);
            }
        }
    }

    /// Stops (`drain = true`) or resumes new assignments to a worker. What it holds runs to
    /// the end; `WorkerSummary::state` shows `draining`, then `drained`. Survives reconnects.
    /// Drains or resumes a worker. A drained worker that is not connected can be resumed
    /// (its drain is kept for when it comes back); draining one needs it connected.
    pub fn set_draining(&mut self, name: &str, drain: bool) -> Result<(), DrainError> {
        match self.workers.get_mut(name) {
            Some(w) => w.draining = drain,
            None if !drain && self.pl.is_drained(name) => {}
            None => return Err(DrainError::NotConnected),
        }
        if drain {
            self.pl.drain_set.insert(name.to_string());
        } else {
            self.pl.drain_set.remove(name);
        }
        Ok(())
    }

    /// Why a queued task is not placed, in a sentence ("no worker has kind gpu-render",
    /// "2 workers lack label zone=b; 1 worker has no free slot"). `None` for tasks that are
    /// not waiting (or not active). The reason is the one recorded by the last dispatch
    /// round that looked at the task; a task no round looked at is checked now against the
    /// connected workers (O(workers), never a scan of the tasks).
    pub fn why_pending(&self, id: TaskId) -> Option<String> {
        let t = self.tasks.get(&id)?;
        match t.rec.state {
            TaskState::Queued => {
                let spec = self.pl.spec_of(id, &t.rec.def);
                if let Some(u) = self.pl.why.get(&id) {
                    return Some(u.explain(&spec, &t.rec.def.kind));
                }
                let views: Vec<WorkerView<'_>> = self
                    .workers
                    .values()
                    .map(|w| WorkerView::new(&w.info, w.held.len(), w.draining))
                    .collect();
                let c = candidates(&spec, &t.rec.def.kind, &views);
                Some(if c.ok.is_empty() {
                    c.unplaced.explain(&spec, &t.rec.def.kind)
                } else {
                    "queued behind earlier tasks".into()
                })
            }
            TaskState::Pending => Some(match t.rec.not_before {
                Some(at) => format!(
                    "waiting for its time ({at} µs since the epoch): delay or retry backoff"
                ),
                None => "waiting for its time: delay or retry backoff".into(),
            }),
            _ => None,
        }
    }

    /// A connected worker's resources not held by its attempts (declared minus the requests
    /// of the attempts it holds), for `drover workers`. O(attempts it holds).
    pub fn worker_resources_free(&self, name: &str) -> Option<BTreeMap<String, u64>> {
        let w = self.workers.get(name)?;
        let mut free = w.info.resources.clone();
        for id in w.held.keys() {
            if let Some(t) = self.tasks.get(id) {
                for (k, n) in self.pl.spec_of(*id, &t.rec.def).resources.iter() {
                    if let Some(v) = free.get_mut(k) {
                        *v = v.saturating_sub(n);
                    }
                }
            }
        }
        Some(free)
    }

    /// The placement spec the core uses for an active task.
    pub fn placement_spec(&self, id: TaskId) -> Option<Arc<PlacementSpec>> {
        let t = self.tasks.get(&id)?;
        Some(self.pl.spec_of(id, &t.rec.def))
    }

    /// The shard of a broadcast copy: the driver puts `index` and `count` in the worker's
    /// environment as `DROVER_SHARD_INDEX` and `DROVER_SHARD_COUNT`.
    pub fn shard(&self, id: TaskId) -> Option<Shard> {
        self.placement_spec(id)?.shard.clone()
    }

    /// Strategy state: cursor, hash ring and the adaptive model's learned statistics.
    pub fn placement_state(&self) -> &PlacementState {
        &self.pl.state
    }

    /// Sets (or with `None` clears) a queue's default strategy.
    pub fn set_queue_strategy(&mut self, queue: &str, strategy: Option<Strategy>) {
        match strategy {
            Some(s) => {
                self.cfg.queue_strategies.insert(queue.to_string(), s);
            }
            None => {
                self.cfg.queue_strategies.remove(queue);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_keep_the_parent_timestamp_and_uuid_v7_shape() {
        let parent = TaskId(
            uuid::Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057")
                .unwrap()
                .as_u128(),
        );
        let c = child_id(parent, 1, 0);
        let u = uuid::Uuid::from_u128(c.0);
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(c.0 >> 80, parent.0 >> 80);
        assert_ne!(c, parent);
        assert_ne!(child_id(parent, 2, 0), c);
        assert_eq!(child_id(parent, 1, 0), c);
    }
}
