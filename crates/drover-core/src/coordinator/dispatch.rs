//! The dispatch loop: places ready tasks on workers with free credit, each by its strategy,
//! and fans broadcast tasks out into one copy per feasible worker.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;

use super::io::{CoreConfig, Effects, NewTask};
use super::placer::{spec_from_def, strategy_for, Placer};
use super::ready::Ready;
use super::tasks::{task_event, ReadyKey, Tasks};
use super::workers::Workers;
use super::{ms, Coordinator};
use crate::model::{Micros, Scoped, TaskDef, TaskId, TaskRecord, TaskState};
use crate::placement::hash::{fnv1a, mix};
use crate::placement::{
    broadcast_targets, candidates, rank, Candidates, Job, PlacementSpec, Ranker, Shard, Strategy,
    WaitNote, WorkerView,
};

/// A round's decisions, applied once the views are dropped.
#[derive(Default)]
struct Round {
    /// Task, its queue, the worker it goes to.
    place: Vec<(ReadyKey, Scoped, String)>,
    fan_out: Vec<TaskId>,
}

/// A round gives up after this many times `dispatch_scan_limit` misses over all queues.
const MAX_ROUND_MISSES: usize = 8;

/// What a dispatch round reads and the state it advances.
struct RoundInputs<'a> {
    cfg: &'a CoreConfig,
    tasks: &'a Tasks,
    workers: &'a Workers,
    placer: &'a mut Placer,
    rng: &'a mut ChaCha20Rng,
}

/// Feasibility is evaluated once per placement class (namespace, kind, selector, resources,
/// shard) until a decision changes the views.
struct ClassCache {
    namespace: String,
    kind: String,
    spec: Arc<PlacementSpec>,
    cands: Candidates,
}

impl ClassCache {
    /// The candidates of `def`'s class: the cached ones if the class is the cached one.
    fn refresh<'c>(
        cached: &'c mut Option<ClassCache>,
        def: &TaskDef,
        spec: &Arc<PlacementSpec>,
        views: &[WorkerView<'_>],
    ) -> &'c ClassCache {
        if !cached
            .as_ref()
            .is_some_and(|c| c.matches(Job::of(def), spec))
        {
            *cached = Some(ClassCache {
                namespace: def.namespace.clone(),
                kind: def.kind.clone(),
                spec: spec.clone(),
                cands: candidates(spec, Job::of(def), views),
            });
        }
        cached.as_ref().expect("just set")
    }

    fn matches(&self, job: Job<'_>, spec: &PlacementSpec) -> bool {
        self.kind == job.kind
            && self.namespace == job.namespace
            && self.spec.selector == spec.selector
            && self.spec.resources == spec.resources
            && self.spec.shard == spec.shard
    }
}

/// The workers as placement sees them at `now`.
fn views(workers: &Workers, now: Micros, quiet: Micros) -> Vec<WorkerView<'_>> {
    workers
        .values()
        .map(|w| {
            let mut v = WorkerView::new(&w.info, w.held.len(), w.draining);
            v.suspect = now - w.watch.last_seen > quiet;
            v
        })
        .collect()
}

impl Coordinator {
    /// Places queued tasks on workers with free credit. Work per call is bounded by the free
    /// credit plus `dispatch_scan_limit` misses, each O(workers): never O(all tasks).
    pub(super) fn dispatch(&mut self, now: Micros, fx: &mut Effects) {
        self.last_dispatch = now;
        let mut ext = self.placer.external.take();
        match ext.as_deref_mut() {
            Some(r) => self.dispatch_with(now, fx, Some(r)),
            None => self.dispatch_with(now, fx, None),
        }
        self.placer.external = ext;
    }

    fn dispatch_with<'r>(
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
                .filter(|w| !w.draining && now - w.watch.last_seen <= quiet)
                .map(|w| w.free_credit())
                .sum();
            if budget == 0 {
                return;
            }
            let round = plan_round(
                RoundInputs {
                    cfg: &self.cfg,
                    tasks: &self.tasks,
                    workers: &self.workers,
                    placer: &mut self.placer,
                    rng: &mut self.rng,
                },
                &self.ready,
                now,
                budget,
                ranker.as_deref_mut(),
            );
            for (key, queue, name) in round.place {
                self.ready.assigned(&key, &queue, now);
                self.placer.placed(&key.2);
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

    /// Turns a queued broadcast task into one copy per worker that could take it: the task
    /// itself becomes shard 0, the others are new tasks with derived ids. Returns false (and
    /// records why) when no worker could take it; dispatch tries again later.
    fn fan_out(&mut self, now: Micros, id: TaskId, fx: &mut Effects) -> bool {
        if !self.tasks.is_in(&id, TaskState::Queued) {
            return false;
        }
        let def = self.tasks.expect(&id).rec.def.clone();
        let spec = self.placer.spec_of(id, &def);
        if spec.shard.is_some() {
            return false;
        }
        let views = views(&self.workers, now, ms(self.cfg.suspect_after_ms));
        let targets: Vec<String> = broadcast_targets(&spec, Job::of(&def), &views)
            .into_iter()
            .map(|i| views[i].info.name.clone())
            .collect();
        if targets.is_empty() {
            let u = candidates(&spec, Job::of(&def), &views).unplaced;
            drop(views);
            self.placer.note_unplaced(id, u);
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
                self.placer.set_spec(id, copy);
                self.placer.placed(&id);
                self.tasks.expect_mut(&id).rec.def = shard_def;
                self.write_task(id, false, fx);
                continue;
            }
            let reason = format!("broadcast copy {i} of {count} of task {id}, for worker {worker}");
            self.add_copy(
                now,
                self.free_copy_id(id, i as u32),
                shard_def,
                copy,
                reason,
                fx,
            );
        }
        true
    }

    /// A broadcast copy's id, unused by any active task.
    fn free_copy_id(&self, parent: TaskId, index: u32) -> TaskId {
        (0..)
            .map(|salt| child_id(parent, index, salt))
            .find(|c| !self.tasks.contains(c))
            .expect("some salt is free")
    }

    fn add_copy(
        &mut self,
        now: Micros,
        cid: TaskId,
        def: Arc<TaskDef>,
        spec: Arc<PlacementSpec>,
        reason: String,
        fx: &mut Effects,
    ) {
        let seq = self.take_task_seq();
        let rec = TaskRecord::new(cid, seq, def, TaskState::Queued, None, now);
        let ev = task_event(&rec, Some(reason));
        self.insert_record(rec, fx);
        self.placer.set_spec(cid, spec);
        // Through the queue's gates, like any task that becomes queued.
        self.enqueue(cid);
        self.emit(now, ev, fx);
    }

    /// Submit, then fan out the broadcast tasks among them (submit-time fan-out).
    pub(super) fn submit_and_fan_out(
        &mut self,
        now: Micros,
        tasks: Vec<NewTask>,
        fx: &mut Effects,
    ) -> Vec<TaskId> {
        for t in &tasks {
            if let Some(s) = spec_from_def(&t.def) {
                self.placer.offer_spec(t.id, s);
            }
        }
        let created: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let ids = self.submit(now, tasks, fx);
        for id in created {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            let spec = self.placer.spec_of(id, &t.rec.def);
            if strategy_for(&self.cfg, &spec, &t.rec.def) == Strategy::Broadcast {
                self.fan_out(now, id, fx);
            }
        }
        ids
    }

    /// Remembers the placement specs of tasks about to be submitted.
    pub(super) fn submit_placed(
        &mut self,
        now: Micros,
        tasks: Vec<(NewTask, PlacementSpec)>,
        fx: &mut Effects,
    ) -> Vec<TaskId> {
        let mut plain = Vec::with_capacity(tasks.len());
        for (nt, mut spec) in tasks {
            // Shards are the core's to assign.
            spec.shard = None;
            if !spec.is_default() {
                self.placer.set_spec(nt.id, Arc::new(spec));
            }
            plain.push(nt);
        }
        self.submit_and_fan_out(now, plain, fx)
    }
}

/// One placement round: the ready tasks queue by queue in the fair order (`lanes.rs`), each
/// placed or noted why not, until the free credit is used or every queue is done. A queue
/// whose tasks do not fit leaves the round after `dispatch_scan_limit` misses, so it never
/// holds up another; the round stops after `MAX_ROUND_MISSES` in all.
fn plan_round<'r>(
    io: RoundInputs<'_>,
    ready: &Ready,
    now: Micros,
    mut budget: usize,
    mut ranker: Option<&mut (dyn Ranker + 'r)>,
) -> Round {
    let RoundInputs {
        cfg,
        tasks,
        workers,
        placer,
        rng,
    } = io;
    let mut views = views(workers, now, ms(cfg.suspect_after_ms));
    placer.state.begin_round(&views);
    if let Some(r) = ranker.as_deref_mut() {
        r.begin_round(&views);
    }
    let mut round = Round::default();
    let mut used_known = false;
    let mut cached: Option<ClassCache> = None;
    let mut misses = 0;
    let mut order = ready.round(cfg.dispatch_scan_limit, now);
    while budget > 0 && misses <= MAX_ROUND_MISSES * cfg.dispatch_scan_limit {
        let Some((queue, key)) = order.next() else {
            break;
        };
        let id = key.2;
        let def = &tasks.expect(&id).rec.def;
        let spec = placer.spec_of(id, def);
        let strategy = strategy_for(cfg, &spec, def);
        if strategy == Strategy::Broadcast && spec.shard.is_none() {
            round.fan_out.push(id);
            misses += 1;
            order.missed(queue);
            continue;
        }
        if !spec.resources.is_empty() && !used_known {
            add_held_resources(&mut views, workers, tasks, placer);
            used_known = true;
        }
        let cands = &ClassCache::refresh(&mut cached, def, &spec, &views).cands;
        let pick = Pick {
            strategy,
            spec: &spec,
            kind: &def.kind,
            cands,
        };
        let choice = choose(pick, &views, ranker.as_deref_mut(), placer, rng);
        match choice {
            Ok(i) => {
                cached = None;
                views[i].take(&spec.resources);
                round
                    .place
                    .push((key, queue.clone(), views[i].info.name.clone()));
                order.placed(queue);
                budget -= 1;
            }
            Err(note) => {
                misses += 1;
                order.missed(queue);
                let mut u = cands.unplaced.clone();
                u.note = note;
                placer.note_unplaced(id, u);
            }
        }
    }
    round
}

/// One task's placement question within a round.
struct Pick<'a> {
    strategy: Strategy,
    spec: &'a PlacementSpec,
    kind: &'a str,
    cands: &'a Candidates,
}

/// The worker a task goes to (an index into `views`), by the external ranker if one is set,
/// else by the task's strategy; or why none (a note for `why_pending`).
fn choose<'r>(
    p: Pick<'_>,
    views: &[WorkerView<'_>],
    ranker: Option<&mut (dyn Ranker + 'r)>,
    placer: &mut Placer,
    rng: &mut ChaCha20Rng,
) -> Result<usize, Option<WaitNote>> {
    let cands = p.cands;
    match ranker {
        Some(r) => r
            .choose(p.kind, p.spec, views, &cands.ok, &cands.eligible)
            .filter(|i| cands.ok.binary_search(i).is_ok())
            .ok_or(None),
        None => rank(
            p.strategy,
            p.spec,
            p.kind,
            views,
            cands,
            &mut placer.state,
            rng,
        ),
    }
}

/// Resources held per worker: summed once per round, only when a task asks for some.
fn add_held_resources(
    views: &mut [WorkerView<'_>],
    workers: &Workers,
    tasks: &Tasks,
    placer: &Placer,
) {
    for (v, w) in views.iter_mut().zip(workers.values()) {
        for held in w.held.keys() {
            if let Some(t) = tasks.get(held) {
                let s = placer.spec_of(*held, &t.rec.def);
                for (k, n) in s.resources.iter() {
                    *v.used.entry(k.to_string()).or_default() += n;
                }
            }
        }
    }
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
