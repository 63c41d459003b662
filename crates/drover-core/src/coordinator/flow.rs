//! Serial and parallel execution on top of the task lifecycle: dependencies (`--after`),
//! per-key serial order (`--key K --serial`), queue gates (pause, concurrency), start
//! deadlines (`expired`) and idempotency keys.
//!
//! A child module of `coordinator`, so it sees the private state without widening it.
//!
//! Invariants (checked by `check_flow`):
//! - DEPS_PENDING: a task with upstreams still waiting is `pending`; it has no ready entry,
//!   and a timer only if it also waits for its time.
//! - DEPS_DURABLE: every change of a task's waiting set is a `Write::Flow` in the same batch
//!   as the upstream's terminal write, so a restart sees exactly the upstreams still active.
//! - KEY_SERIAL: of the active tasks with one serial key, only the first by submission order
//!   may be in the ready index or leased.
//! - QUEUE_GATE: a configured queue never has more than `concurrency` tasks admitted (ready
//!   or leased), and a paused one has none in the ready index.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::*;

/// What happens to a task when one of its upstreams does not succeed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpstreamPolicy {
    /// The task becomes `skipped`, naming the upstream (the default).
    #[default]
    Skip,
    /// The task runs anyway once every upstream is terminal.
    Run,
}

impl UpstreamPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamPolicy::Skip => "skip",
            UpstreamPolicy::Run => "run",
        }
    }
}

impl std::str::FromStr for UpstreamPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(UpstreamPolicy::Skip),
            "run" => Ok(UpstreamPolicy::Run),
            _ => Err(format!("'{s}' is not an upstream policy (skip or run)")),
        }
    }
}

/// Execution options of a task beyond its `TaskDef`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSpec {
    /// Upstream tasks that must succeed first.
    pub after: Vec<TaskId>,
    pub on_upstream_failure: UpstreamPolicy,
    /// Tasks with the same serial key run one at a time, in submission order.
    pub serial_key: Option<String>,
    /// A task not started (assigned) by then becomes `expired`.
    pub deadline: Option<Micros>,
    /// Workflow membership: (workflow id, node name).
    pub workflow: Option<(String, String)>,
}

impl FlowSpec {
    pub fn is_default(&self) -> bool {
        *self == FlowSpec::default()
    }
}

/// The durable flow state of a task (`Write::Flow`): its options and what it still waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub task_id: TaskId,
    pub spec: FlowSpec,
    /// Upstreams not yet terminal (a subset of `spec.after`).
    pub waiting: Vec<TaskId>,
    /// The first upstream that did not succeed, with its state (`run` policy keeps going).
    pub upstream_failed: Option<(TaskId, TaskState)>,
    /// Outputs of succeeded workflow upstreams: (node name, last non-empty stdout line).
    /// The worker gets them as `DROVER_UPSTREAM_<NODE>_OUTPUT`.
    pub upstream_outputs: Vec<(String, String)>,
}

/// A task to submit with flow options. `upstream_states` carries the state the shell read
/// from the store for each upstream that is not in this submit (the core trusts its own
/// active set first; a terminal state is used for an upstream that is no longer active).
#[derive(Clone, Debug)]
pub struct FlowTask {
    pub task: NewTask,
    pub flow: FlowSpec,
    pub upstream_states: Vec<(TaskId, TaskState)>,
}

/// A queue's durable configuration (`drover queue set|pause|resume`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    pub name: String,
    /// At most this many tasks of the queue ready or running at once.
    pub concurrency: Option<u32>,
    pub paused: bool,
    pub strategy: Option<Strategy>,
}

/// A queue's live counts, for `drover queue list`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    /// Tasks waiting: pending or queued.
    pub depth: usize,
    /// Tasks assigned or running.
    pub running: usize,
    pub config: QueueConfig,
}

/// Why a submit was refused as a whole (nothing was stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// An upstream is neither active, nor in this submit, nor known terminal: the shell
    /// should re-read the store and retry (it finished meanwhile) or reject it as unknown.
    UnknownUpstream(TaskId),
    /// A schedule's trigger does not parse (cron syntax, zone, zero interval).
    BadSchedule(String),
    NoSuchSchedule(String),
    /// A workflow rerun while the workflow still has active nodes.
    WorkflowRunning(String),
}

#[derive(Default)]
pub(super) struct Flow {
    recs: HashMap<TaskId, FlowRecord>,
    /// upstream -> downstream tasks waiting on it.
    waiters: HashMap<TaskId, Vec<TaskId>>,
    /// serial key -> active tasks with that key, by submission order.
    keys: HashMap<String, BTreeSet<(u64, TaskId)>>,
    /// Queued tasks of configured queues kept out of the ready index (paused, full).
    held: HashMap<String, BTreeSet<(Reverse<i32>, u64, TaskId)>>,
    queues: BTreeMap<String, QueueConfig>,
    /// Tasks of configured queues counted against the concurrency, and the counts.
    admitted: HashSet<TaskId>,
    admitted_count: HashMap<String, usize>,
    deadlines: BTreeSet<(Micros, TaskId)>,
    /// Idempotency key -> task (active or finished since the store was loaded).
    idem: HashMap<String, TaskId>,
    /// Stdout tails of running tasks that have downstream tasks (for their outputs).
    tails: HashMap<TaskId, Vec<u8>>,
    /// Terminal transitions whose downstream effects are not processed yet (no recursion).
    cascade: Vec<(TaskId, TaskState, Arc<TaskDef>)>,
    cascading: bool,
}

/// What the snapshot gives the flow layer.
#[derive(Clone, Debug, Default)]
pub struct FlowSnapshot {
    /// Flow records of non-terminal tasks.
    pub flows: Vec<FlowRecord>,
    pub queues: Vec<QueueConfig>,
    /// Every stored idempotency key with its task.
    pub idempotency: Vec<(String, TaskId)>,
    pub schedules: Vec<crate::cron::ScheduleRecord>,
    /// For each workflow with active nodes: the terminal states of its other current nodes
    /// (the shell reads them; the core keeps no history).
    pub workflows_ended: Vec<(String, Vec<TaskState>)>,
    /// Workers drained by an operator (they take nothing new when they connect).
    pub drained_workers: Vec<String>,
}

impl Flow {
    pub(super) fn flow_spec(&self, id: TaskId) -> Option<&FlowSpec> {
        self.recs.get(&id).map(|r| &r.spec)
    }

    pub(super) fn next_deadline(&self) -> Option<Micros> {
        self.deadlines.first().map(|d| d.0)
    }

    fn is_blocked(&self, id: TaskId) -> bool {
        self.recs.get(&id).is_some_and(|r| !r.waiting.is_empty())
    }
}

impl Coordinator {
    /// The flow record of an active task, if it has one.
    pub fn flow(&self, id: TaskId) -> Option<&FlowRecord> {
        self.flow.recs.get(&id)
    }

    /// Rebuilds the flow indexes after `new` loaded the tasks: waiters, keys, deadlines,
    /// gates (queued tasks go through them again, in submission order).
    pub(super) fn restore_flow(&mut self, now: Micros, snap: FlowSnapshot) {
        for q in snap.queues {
            if let Some(s) = q.strategy {
                self.cfg.queue_strategies.insert(q.name.clone(), s);
            }
            self.flow.queues.insert(q.name.clone(), q);
        }
        for (k, id) in snap.idempotency {
            // The first task with a key is the original (broadcast copies share it).
            self.flow.idem.entry(k).or_insert(id);
        }
        for mut r in snap.flows {
            let Some(t) = self.tasks.get(&r.task_id) else {
                continue;
            };
            let id = r.task_id;
            // Upstreams resolve in the same transaction as their terminal write, so every
            // upstream still waited on is active; anything else is dropped defensively.
            r.waiting.retain(|u| self.tasks.contains_key(u));
            for u in &r.waiting {
                self.flow.waiters.entry(*u).or_default().push(id);
            }
            if let Some(k) = &r.spec.serial_key {
                self.flow
                    .keys
                    .entry(k.clone())
                    .or_default()
                    .insert((t.rec.seq, id));
            }
            if let Some(d) = r.spec.deadline {
                if matches!(t.rec.state, TaskState::Pending | TaskState::Queued) {
                    self.flow.deadlines.insert((d, id));
                }
            }
            self.flow.recs.insert(id, r);
        }
        // Leased tasks of configured queues are admitted; queued ones pass the gates again.
        let mut queued: Vec<(u64, TaskId)> = Vec::new();
        for t in self.tasks.values() {
            if t.rec.state.is_leased() && self.flow.queues.contains_key(&t.rec.def.queue) {
                self.flow.admitted.insert(t.rec.id);
                *self
                    .flow
                    .admitted_count
                    .entry(t.rec.def.queue.clone())
                    .or_default() += 1;
            }
            if t.rec.state == TaskState::Queued {
                queued.push((t.rec.seq, t.rec.id));
            }
        }
        queued.sort();
        for (_, id) in queued {
            let key = ready_key(&self.tasks[&id].rec);
            self.ready.remove(&key);
            self.enqueue(id);
        }
        self.restore_schedules(now, snap.schedules);
    }

    /// Puts a task that just became `queued` into the ready index, unless a gate holds it:
    /// its serial key's turn, its queue paused or full.
    pub(super) fn enqueue(&mut self, id: TaskId) {
        let Some(t) = self.tasks.get(&id) else {
            return;
        };
        debug_assert_eq!(t.rec.state, TaskState::Queued);
        if let Some(k) = self
            .flow
            .recs
            .get(&id)
            .and_then(|r| r.spec.serial_key.as_ref())
        {
            if self
                .flow
                .keys
                .get(k)
                .and_then(|s| s.first())
                .is_some_and(|&(_, first)| first != id)
            {
                // Waits for its turn; `key_released` enqueues it.
                return;
            }
        }
        let key = ready_key(&t.rec);
        let queue = &t.rec.def.queue;
        if let Some(q) = self.flow.queues.get(queue) {
            if q.paused {
                if self.flow.admitted.remove(&id) {
                    if let Some(c) = self.flow.admitted_count.get_mut(queue) {
                        *c = c.saturating_sub(1);
                    }
                }
                self.flow.held.entry(queue.clone()).or_default().insert(key);
                return;
            }
            if !self.flow.admitted.contains(&id) {
                let count = self.flow.admitted_count.get(queue).copied().unwrap_or(0);
                if q.concurrency.is_some_and(|c| count >= c as usize) {
                    self.flow.held.entry(queue.clone()).or_default().insert(key);
                    return;
                }
                self.flow.admitted.insert(id);
                *self.flow.admitted_count.entry(queue.clone()).or_default() += 1;
            }
        }
        self.ready.insert(key);
    }

    /// The task left the ready/leased set (back to pending, or terminal): its queue slot
    /// frees up.
    fn unadmit(&mut self, id: TaskId, queue: &str) {
        if self.flow.admitted.remove(&id) {
            if let Some(c) = self.flow.admitted_count.get_mut(queue) {
                *c = c.saturating_sub(1);
            }
            self.release_queue(queue);
        }
    }

    /// Moves held tasks of a queue into the ready index while it has room.
    fn release_queue(&mut self, queue: &str) {
        loop {
            let Some(q) = self.flow.queues.get(queue) else {
                // Unconfigured: nothing is held.
                if let Some(h) = self.flow.held.remove(queue) {
                    for k in h {
                        self.ready.insert(k);
                    }
                }
                return;
            };
            if q.paused {
                return;
            }
            let count = self.flow.admitted_count.get(queue).copied().unwrap_or(0);
            if q.concurrency.is_some_and(|c| count >= c as usize) {
                return;
            }
            let Some(k) = self.flow.held.get_mut(queue).and_then(|h| h.pop_first()) else {
                return;
            };
            self.flow.admitted.insert(k.2);
            *self
                .flow
                .admitted_count
                .entry(queue.to_string())
                .or_default() += 1;
            self.ready.insert(k);
        }
    }

    /// A queued task moved into `pending` (retry backoff) from a leased state.
    pub(super) fn left_for_pending(&mut self, id: TaskId) {
        if let Some(t) = self.tasks.get(&id) {
            let q = t.rec.def.queue.clone();
            self.unadmit(id, &q);
        }
    }

    /// Sets a queue's configuration (replacing it). Replies nothing; writes `Write::Queue`.
    pub fn configure_queue(&mut self, config: QueueConfig, fx: &mut Effects) {
        let name = config.name.clone();
        let first = !self.flow.queues.contains_key(&name);
        self.set_queue_strategy(&name, config.strategy);
        fx.writes.push(Write::Queue(config.clone()));
        self.flow.queues.insert(name.clone(), config);
        if first {
            // Start counting: what is ready or leased now is admitted.
            let mut n = 0;
            for t in self.tasks.values() {
                if t.rec.def.queue == name
                    && (t.rec.state.is_leased()
                        || (t.rec.state == TaskState::Queued
                            && self.ready.contains(&ready_key(&t.rec))))
                {
                    self.flow.admitted.insert(t.rec.id);
                    n += 1;
                }
            }
            self.flow.admitted_count.insert(name.clone(), n);
        }
        if self.flow.queues[&name].paused {
            // Take the queue's ready tasks back out of the ready index.
            let ids: Vec<TaskId> = self
                .ready
                .iter()
                .filter(|k| self.tasks[&k.2].rec.def.queue == name)
                .map(|k| k.2)
                .collect();
            for id in ids {
                let key = ready_key(&self.tasks[&id].rec);
                self.ready.remove(&key);
                self.enqueue(id);
            }
        } else {
            self.release_queue(&name);
        }
    }

    /// Configured queues plus every queue with active tasks, with live counts.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        let mut m: BTreeMap<String, QueueStats> = BTreeMap::new();
        for (name, q) in &self.flow.queues {
            m.insert(
                name.clone(),
                QueueStats {
                    name: name.clone(),
                    config: q.clone(),
                    ..QueueStats::default()
                },
            );
        }
        for t in self.tasks.values() {
            let s = m
                .entry(t.rec.def.queue.clone())
                .or_insert_with(|| QueueStats {
                    name: t.rec.def.queue.clone(),
                    config: QueueConfig {
                        name: t.rec.def.queue.clone(),
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

    pub fn queue_config(&self, name: &str) -> Option<&QueueConfig> {
        self.flow.queues.get(name)
    }

    /// The task already submitted with this idempotency key, if any.
    pub fn idempotent(&self, key: &str) -> Option<TaskId> {
        self.flow.idem.get(key).copied()
    }

    /// Submit with flow options. All or nothing: an unknown upstream refuses the batch.
    pub(super) fn submit_flow(
        &mut self,
        now: Micros,
        req: RequestId,
        tasks: Vec<FlowTask>,
        workflow: Option<crate::dag::WorkflowRecord>,
        fx: &mut Effects,
    ) {
        let in_batch: HashSet<TaskId> = tasks.iter().map(|t| t.task.id).collect();
        for ft in &tasks {
            for u in &ft.flow.after {
                let known = in_batch.contains(u)
                    || self.tasks.contains_key(u)
                    || ft
                        .upstream_states
                        .iter()
                        .any(|(id, st)| id == u && st.is_terminal());
                if !known {
                    fx.replies
                        .push((req, Reply::SubmitRefused(SubmitError::UnknownUpstream(*u))));
                    return;
                }
            }
        }
        if let Some(w) = workflow {
            if self.workflow_active(&w.id) {
                fx.replies.push((
                    req,
                    Reply::SubmitRefused(SubmitError::WorkflowRunning(w.id)),
                ));
                return;
            }
            let submitted = tasks
                .iter()
                .filter(|t| t.flow.workflow.as_ref().is_some_and(|(id, _)| *id == w.id))
                .count();
            self.workflow_run_begins(&w, submitted);
            fx.writes.push(Write::Workflow(w));
        }
        let mut ids = Vec::with_capacity(tasks.len());
        // Terminal states of upstreams, known before or decided in this submit.
        let mut terminal: HashMap<TaskId, TaskState> = HashMap::new();
        for ft in tasks {
            let FlowTask {
                task: nt,
                flow: spec,
                upstream_states,
            } = ft;
            for (u, st) in upstream_states {
                if st.is_terminal() && !self.tasks.contains_key(&u) {
                    terminal.insert(u, st);
                }
            }
            if let Some(existing) = nt
                .def
                .idempotency_key
                .as_ref()
                .and_then(|k| self.flow.idem.get(k))
            {
                ids.push(*existing);
                continue;
            }
            let id = nt.id;
            let mut rec = FlowRecord {
                task_id: id,
                spec,
                waiting: Vec::new(),
                upstream_failed: None,
                upstream_outputs: Vec::new(),
            };
            let mut skip_reason = None;
            for u in rec.spec.after.clone() {
                match terminal.get(&u) {
                    Some(TaskState::Succeeded) => {}
                    Some(&st) => {
                        rec.upstream_failed.get_or_insert((u, st));
                        if rec.spec.on_upstream_failure == UpstreamPolicy::Skip
                            && skip_reason.is_none()
                        {
                            skip_reason = Some(format!("upstream {u} {st}"));
                        }
                    }
                    None => {
                        if !rec.waiting.contains(&u) {
                            rec.waiting.push(u);
                        }
                    }
                }
            }
            let blocked = !rec.waiting.is_empty() || skip_reason.is_some();
            let def_key = nt.def.idempotency_key.clone();
            if !rec.spec.is_default() {
                // Known before the task is created, so its first enqueue sees the gates.
                if skip_reason.is_none() {
                    for u in &rec.waiting {
                        self.flow.waiters.entry(*u).or_default().push(id);
                    }
                }
                if let Some(k) = &rec.spec.serial_key {
                    self.flow
                        .keys
                        .entry(k.clone())
                        .or_default()
                        .insert((self.next_task_seq, id));
                }
                if let Some(d) = rec.spec.deadline {
                    self.flow.deadlines.insert((d, id));
                }
                fx.writes.push(Write::Flow(rec.clone()));
                if let Some((wf, _)) = &rec.spec.workflow {
                    self.workflow_node_added(wf, id);
                }
                self.flow.recs.insert(id, rec);
            }
            self.insert_new(now, nt, blocked, fx);
            ids.push(id);
            if let Some(k) = def_key {
                self.flow.idem.insert(k, id);
            }
            if let Some(reason) = skip_reason {
                self.take_out(id);
                self.finish(now, id, TaskState::Skipped, None, Some(reason), fx);
                terminal.insert(id, TaskState::Skipped);
            }
        }
        fx.replies.push((req, Reply::Submitted(ids)));
    }

    /// Creates an active task: pending if delayed or `blocked` on upstreams, else queued
    /// (through the gates). Writes the record and its event.
    pub(super) fn insert_new(&mut self, now: Micros, nt: NewTask, blocked: bool, fx: &mut Effects) {
        let seq = self.next_task_seq;
        self.next_task_seq += 1;
        let delayed = nt.not_before.filter(|&nb| nb > now);
        let state = if delayed.is_some() || blocked {
            TaskState::Pending
        } else {
            TaskState::Queued
        };
        let rec = TaskRecord::new(nt.id, seq, Arc::new(nt.def), state, delayed, now);
        let id = rec.id;
        if let Some(at) = delayed {
            self.delayed.insert((at, id));
        }
        let ev = task_event(&rec, blocked.then(|| "waiting for upstream tasks".into()));
        let queued = rec.state == TaskState::Queued;
        fx.writes.push(Write::Task {
            record: rec.clone(),
            is_new: true,
        });
        self.tasks.insert(
            id,
            ActiveTask {
                rec,
                attempt: None,
                lease_expires: 0,
                log_bytes: [0; 2],
            },
        );
        if queued {
            self.enqueue(id);
        }
        self.emit(now, ev, fx);
    }

    /// Removes an active, not leased task from the ready, delay and held indexes.
    fn take_out(&mut self, id: TaskId) {
        let Some(t) = self.tasks.get(&id) else {
            return;
        };
        let key = ready_key(&t.rec);
        self.ready.remove(&key);
        if let Some(at) = t.rec.not_before {
            self.delayed.remove(&(at, id));
        }
        if let Some(h) = self.flow.held.get_mut(&t.rec.def.queue) {
            h.remove(&key);
        }
    }

    /// A pending task's timer fired: it queues unless it still waits for upstreams.
    pub(super) fn promote(&mut self, now: Micros, id: TaskId, fx: &mut Effects) {
        let blocked = self.flow.is_blocked(id);
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if t.rec.state != TaskState::Pending {
            return;
        }
        t.rec.not_before = None;
        if blocked {
            self.write_task(id, false, fx);
            return;
        }
        set_state(t, TaskState::Queued, now);
        let ev = task_event(&t.rec, None);
        self.write_task(id, false, fx);
        self.emit(now, ev, fx);
        self.enqueue(id);
    }

    /// Expires tasks whose start deadline passed.
    pub(super) fn expire_due(&mut self, now: Micros, fx: &mut Effects) {
        while let Some(&(at, id)) = self.flow.deadlines.first() {
            if at > now {
                break;
            }
            self.flow.deadlines.pop_first();
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if !matches!(t.rec.state, TaskState::Pending | TaskState::Queued) {
                continue;
            }
            self.take_out(id);
            self.finish(
                now,
                id,
                TaskState::Expired,
                None,
                Some("deadline passed before the task started".into()),
                fx,
            );
        }
    }

    /// Called by `finish` after a task left the active set: frees its queue slot and key,
    /// and resolves the tasks waiting on it (cascading skips without recursion).
    pub(super) fn on_terminal(
        &mut self,
        now: Micros,
        id: TaskId,
        state: TaskState,
        def: Arc<TaskDef>,
        fx: &mut Effects,
    ) {
        self.flow.cascade.push((id, state, def));
        if self.flow.cascading {
            return;
        }
        self.flow.cascading = true;
        while let Some((id, state, def)) = self.flow.cascade.pop() {
            self.after_terminal(now, id, state, &def, fx);
        }
        self.flow.cascading = false;
    }

    fn after_terminal(
        &mut self,
        now: Micros,
        id: TaskId,
        state: TaskState,
        def: &TaskDef,
        fx: &mut Effects,
    ) {
        if let Some(h) = self.flow.held.get_mut(&def.queue) {
            h.retain(|k| k.2 != id);
        }
        self.unadmit(id, &def.queue);
        self.sched_on_terminal(now, id, fx);
        let rec = self.flow.recs.remove(&id);
        if let Some((wf, _)) = rec.as_ref().and_then(|r| r.spec.workflow.as_ref()) {
            self.workflow_node_ended(now, wf, id, state, fx);
        }
        if let Some(r) = &rec {
            if let Some(d) = r.spec.deadline {
                self.flow.deadlines.remove(&(d, id));
            }
            if let Some(k) = &r.spec.serial_key {
                self.key_released(k, id);
            }
            for u in &r.waiting {
                if let Some(w) = self.flow.waiters.get_mut(u) {
                    w.retain(|d| *d != id);
                }
            }
        }
        let tail = self.flow.tails.remove(&id);
        let Some(downs) = self.flow.waiters.remove(&id) else {
            return;
        };
        // A succeeded workflow node hands its output to its downstream nodes.
        let output = match (&rec, state) {
            (Some(r), TaskState::Succeeded) => r.spec.workflow.as_ref().and_then(|(_, node)| {
                tail.as_deref()
                    .and_then(last_line)
                    .map(|l| (node.clone(), l))
            }),
            _ => None,
        };
        for d in downs {
            let Some(r) = self.flow.recs.get_mut(&d) else {
                continue;
            };
            r.waiting.retain(|u| *u != id);
            if let Some(o) = &output {
                r.upstream_outputs.push(o.clone());
            }
            if state != TaskState::Succeeded {
                r.upstream_failed.get_or_insert((id, state));
                if r.spec.on_upstream_failure == UpstreamPolicy::Skip {
                    let reason = format!("upstream {id} {state}");
                    fx.writes.push(Write::Flow(r.clone()));
                    self.take_out(d);
                    self.finish(now, d, TaskState::Skipped, None, Some(reason), fx);
                    continue;
                }
            }
            fx.writes.push(Write::Flow(r.clone()));
            if !r.waiting.is_empty() {
                continue;
            }
            let Some(t) = self.tasks.get_mut(&d) else {
                continue;
            };
            if t.rec.state == TaskState::Pending && t.rec.not_before.is_none() {
                set_state(t, TaskState::Queued, now);
                let ev = task_event(&t.rec, Some("upstream tasks done".into()));
                self.write_task(d, false, fx);
                self.emit(now, ev, fx);
                self.enqueue(d);
            }
        }
    }

    /// A task with a serial key left the active set: the next one of the key may go.
    fn key_released(&mut self, k: &str, id: TaskId) {
        let Some(set) = self.flow.keys.get_mut(k) else {
            return;
        };
        set.retain(|e| e.1 != id);
        let Some(&(_, next)) = set.first() else {
            self.flow.keys.remove(k);
            return;
        };
        if let Some(t) = self.tasks.get(&next) {
            if t.rec.state == TaskState::Queued && !self.ready.contains(&ready_key(&t.rec)) {
                self.enqueue(next);
            }
        }
    }

    /// Whether a queued task is legitimately outside the ready index (held by a gate).
    pub(super) fn gated(&self, id: TaskId) -> bool {
        let Some(t) = self.tasks.get(&id) else {
            return false;
        };
        if self
            .flow
            .held
            .get(&t.rec.def.queue)
            .is_some_and(|h| h.contains(&ready_key(&t.rec)))
        {
            return true;
        }
        self.flow
            .recs
            .get(&id)
            .and_then(|r| r.spec.serial_key.as_ref())
            .and_then(|k| self.flow.keys.get(k))
            .and_then(|s| s.first())
            .is_some_and(|&(_, first)| first != id)
    }

    /// Whether a pending task legitimately has no timer (it waits for upstreams).
    pub(super) fn waits_on_upstreams(&self, id: TaskId) -> bool {
        self.flow.is_blocked(id)
    }

    /// The flow invariants (see the module docs).
    pub(super) fn check_flow(&self) -> Result<(), String> {
        for (id, r) in &self.flow.recs {
            let Some(t) = self.tasks.get(id) else {
                return Err(format!("FLOW_ACTIVE: flow record of inactive {id}"));
            };
            if !r.waiting.is_empty() && t.rec.state != TaskState::Pending {
                return Err(format!(
                    "DEPS_PENDING: {id} is {} but waits on {:?}",
                    t.rec.state, r.waiting
                ));
            }
            for u in &r.waiting {
                if !self.tasks.contains_key(u) {
                    return Err(format!("DEPS_ACTIVE: {id} waits on inactive {u}"));
                }
            }
        }
        for (k, set) in &self.flow.keys {
            for (i, &(_, id)) in set.iter().enumerate() {
                let Some(t) = self.tasks.get(&id) else {
                    return Err(format!("KEY_SERIAL: inactive {id} holds key {k}"));
                };
                if i > 0
                    && (t.rec.state.is_leased()
                        || (t.rec.state == TaskState::Queued
                            && self.ready.contains(&ready_key(&t.rec))))
                {
                    return Err(format!(
                        "KEY_SERIAL: {id} of key {k} is {} behind an earlier task",
                        t.rec.state
                    ));
                }
            }
        }
        for (name, q) in &self.flow.queues {
            let n = self.flow.admitted_count.get(name).copied().unwrap_or(0);
            let actual = self
                .flow
                .admitted
                .iter()
                .filter(|id| self.tasks.get(id).is_some_and(|t| &t.rec.def.queue == name))
                .count();
            if n != actual {
                return Err(format!(
                    "QUEUE_GATE: {name} counts {n} admitted, has {actual}"
                ));
            }
            if q.paused
                && self.ready.iter().any(|k| {
                    self.tasks
                        .get(&k.2)
                        .is_some_and(|t| &t.rec.def.queue == name)
                })
            {
                return Err(format!("QUEUE_GATE: paused {name} has ready tasks"));
            }
        }
        Ok(())
    }
}

impl Coordinator {
    pub(super) fn forget_keys(&mut self, keys: Vec<(String, TaskId)>) {
        for (k, id) in keys {
            // Only if it still names that task (a newer task may hold the key by now).
            if self.flow.idem.get(&k) == Some(&id) && !self.tasks.contains_key(&id) {
                self.flow.idem.remove(&k);
            }
        }
    }

    pub(super) fn flow_remember_key(&mut self, key: String, id: TaskId) {
        self.flow.idem.insert(key, id);
    }
}

/// Most bytes of a node's output passed downstream.
pub const MAX_OUTPUT: usize = 4096;

/// The last non-empty line of a stdout tail, at most `MAX_OUTPUT` bytes.
fn last_line(tail: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(tail);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    let mut end = line.len().min(MAX_OUTPUT);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Some(line[..end].to_string())
}

impl Coordinator {
    /// Keeps the stdout tail of a task that has downstream tasks (its output).
    pub(super) fn note_output(&mut self, id: TaskId, data: &[u8]) {
        if !self.flow.waiters.contains_key(&id) {
            return;
        }
        let tail = self.flow.tails.entry(id).or_default();
        tail.extend_from_slice(data);
        // Keep the last two lines' worth: a line may be split across chunks.
        if tail.len() > 2 * MAX_OUTPUT + 2 {
            let cut = tail.len() - (2 * MAX_OUTPUT + 2);
            tail.drain(..cut);
        }
    }

    /// The definition an attempt is sent with: with `DROVER_UPSTREAM_<NODE>_OUTPUT` for
    /// each upstream output, when there are any.
    pub(super) fn assignment_def(&mut self, id: TaskId) -> Arc<TaskDef> {
        let def = self.tasks[&id].rec.def.clone();
        // A new attempt starts a new output.
        self.flow.tails.remove(&id);
        let Some(r) = self.flow.recs.get(&id) else {
            return def;
        };
        if r.upstream_outputs.is_empty() {
            return def;
        }
        let mut d = (*def).clone();
        if let TaskSpec::Exec { env, .. } = &mut d.spec {
            for (node, out) in &r.upstream_outputs {
                env.push((
                    format!("DROVER_UPSTREAM_{}_OUTPUT", crate::dag::env_name(node)),
                    out.clone(),
                ));
            }
        }
        Arc::new(d)
    }
}

impl Coordinator {
    /// Why an active task waits, in a sentence: its upstreams, its key's turn, its queue's
    /// pause or limit; otherwise the placement reason (`why_pending`).
    pub fn why_waiting(&self, id: TaskId) -> Option<String> {
        let t = self.tasks.get(&id)?;
        let r = self.flow.recs.get(&id);
        match t.rec.state {
            TaskState::Pending => {
                if let Some(r) = r.filter(|r| !r.waiting.is_empty()) {
                    let ids: Vec<String> = r.waiting.iter().map(|u| u.to_string()).collect();
                    return Some(format!("waiting for upstream tasks: {}", ids.join(", ")));
                }
            }
            TaskState::Queued => {
                if let Some(k) = r.and_then(|r| r.spec.serial_key.as_ref()) {
                    if let Some(&(_, first)) = self.flow.keys.get(k).and_then(|s| s.first()) {
                        if first != id {
                            return Some(format!(
                                "waiting for its turn on key {k} (behind task {first})"
                            ));
                        }
                    }
                }
                let q = &t.rec.def.queue;
                if self
                    .flow
                    .held
                    .get(q)
                    .is_some_and(|h| h.contains(&ready_key(&t.rec)))
                {
                    let cfg = &self.flow.queues[q];
                    return Some(if cfg.paused {
                        format!("queue {q} is paused")
                    } else {
                        format!(
                            "queue {q} is at its concurrency limit ({})",
                            cfg.concurrency.unwrap_or(0)
                        )
                    });
                }
            }
            _ => {}
        }
        self.why_pending(id)
    }
}
