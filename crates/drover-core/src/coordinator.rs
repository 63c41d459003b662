//! The coordinator: the one owner of scheduling state, as a pure state machine.
//!
//! Values in, values out: `handle(now, input, &mut effects)`, `handle_timeout(now, ..)`,
//! `poll_timeout()`. The driver must commit `effects.writes` durably *before* it performs
//! `effects.sends` and `effects.replies` (persist before send), so workers and clients only
//! ever learn of committed decisions.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::model::*;
use crate::placement::{AdaptiveConfig, PlacementSpec, Strategy};
use crate::retry;

mod dispatch;
mod flow;
mod liveness;
mod sched;
mod workflows;
pub use dispatch::DrainError;
pub use flow::{
    FlowRecord, FlowSnapshot, FlowSpec, FlowTask, QueueConfig, QueueStats, SubmitError,
    UpstreamPolicy,
};
pub use liveness::Silence;
pub use sched::{ScheduleOp, ScheduleSummary};

/// A connection of a worker, numbered by the driver.
pub type SessionId = u64;
/// A request waiting for a reply, numbered by the driver.
pub type RequestId = u64;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// How long an attempt's lease lasts without a heartbeat renewing it.
    pub lease_ms: u64,
    /// After a restart, how long leased tasks wait for their workers to re-attach.
    pub restart_grace_ms: u64,
    /// Lease expiries after which a task is declared `dead` (poison).
    pub max_lost: u32,
    pub backoff_cap_ms: u64,
    pub default_strategy: Strategy,
    /// A worker silent this long (no heartbeat or update) gets no new assignments.
    pub suspect_after_ms: u64,
    /// Output kept per attempt and stream; the rest is dropped with a marker.
    pub max_log_bytes: usize,
    /// Unplaceable tasks looked at per dispatch round before giving up (head-of-line bound).
    pub dispatch_scan_limit: usize,
    /// Default strategy per queue (`drover queue set Q --strategy S`); a task's own
    /// override wins, `default_strategy` applies to other queues.
    pub queue_strategies: BTreeMap<String, Strategy>,
    /// Tuning of the `adaptive` strategy's model.
    pub adaptive: AdaptiveConfig,
    /// Virtual nodes per worker on the `consistent_hash` ring.
    pub hash_vnodes: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            lease_ms: 15_000,
            restart_grace_ms: 20_000,
            max_lost: 3,
            backoff_cap_ms: 300_000,
            default_strategy: Strategy::default(),
            suspect_after_ms: 3_000,
            max_log_bytes: 1 << 20,
            dispatch_scan_limit: 1024,
            queue_strategies: BTreeMap::new(),
            adaptive: AdaptiveConfig::default(),
            hash_vnodes: crate::placement::hash::DEFAULT_VNODES,
        }
    }
}

/// A task as submitted; the shell has generated its id and validated it.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub id: TaskId,
    pub def: TaskDef,
    pub not_before: Option<Micros>,
}

/// How a worker says an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kind: AttemptOutcome,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Input {
    Submit {
        req: RequestId,
        tasks: Vec<NewTask>,
    },
    /// Submit with placement specs (strategy override, routing key, resources, selector)
    /// until `TaskDef` carries its own. Replies like `Submit`.
    SubmitPlaced {
        req: RequestId,
        tasks: Vec<(NewTask, PlacementSpec)>,
    },
    /// Take nothing new; what it holds runs to the end. Replies `Reply::Drain`.
    DrainWorker {
        req: RequestId,
        name: String,
    },
    /// Undo `DrainWorker`. Replies `Reply::Drain`.
    ResumeWorker {
        req: RequestId,
        name: String,
    },
    Cancel {
        req: RequestId,
        task_id: TaskId,
    },
    /// Submit with flow options (dependencies, serial key, deadline, workflow). Replies
    /// `Submitted` or `SubmitRefused` (nothing stored).
    SubmitFlow {
        req: RequestId,
        tasks: Vec<FlowTask>,
        /// Written with the tasks when the submit is accepted (a workflow or its rerun).
        workflow: Option<crate::dag::WorkflowRecord>,
    },
    /// Task retention deleted these tasks: a key names its task only while the task is
    /// kept, so a later submit with it creates a new one. No reply.
    ForgetKeys {
        keys: Vec<(String, TaskId)>,
    },
    /// Replace a queue's configuration. Replies `Reply::Done`.
    ConfigureQueue {
        req: RequestId,
        config: QueueConfig,
    },
    /// Add, change, pause, delete, run or backfill a schedule.
    Schedule {
        req: RequestId,
        op: ScheduleOp,
    },
    WorkerJoin {
        session: SessionId,
        info: WorkerInfo,
        /// Attempts it still holds from before (re-attach after a reconnect or server restart).
        held: Vec<AttemptRef>,
    },
    WorkerLeave {
        session: SessionId,
    },
    Heartbeat {
        session: SessionId,
        held: Vec<AttemptRef>,
    },
    Started {
        session: SessionId,
        attempt: AttemptRef,
    },
    Finished {
        session: SessionId,
        attempt: AttemptRef,
        outcome: Outcome,
    },
    Log {
        session: SessionId,
        attempt: AttemptRef,
        stream: LogStream,
        data: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub task_id: TaskId,
    pub attempt: u32,
    pub lease: LeaseToken,
    pub def: Arc<TaskDef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToWorker {
    Assign(Assignment),
    /// Stop this attempt: cancelled, reclaimed, or unknown.
    Cancel(AttemptRef),
    /// A result or start for a stale attempt was refused.
    Reject {
        attempt: AttemptRef,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Submitted(Vec<TaskId>),
    Cancelled(Result<(), CancelError>),
    Drain(Result<(), DrainError>),
    /// A flow submit refused as a whole.
    SubmitRefused(SubmitError),
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelError {
    /// Not in the active set: unknown or already finished (the shell tells which).
    NotActive,
}

/// One durable mutation. A batch of them is committed in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// The whole current record; `is_new` on the first write of a task.
    Task {
        record: TaskRecord,
        is_new: bool,
    },
    Attempt(AttemptRecord),
    Event(Event),
    Log(LogChunk),
    /// A task's flow state (options, upstreams still waited on); upsert by task id.
    Flow(FlowRecord),
    /// A queue's configuration; upsert by name.
    Queue(QueueConfig),
    /// A workflow and the task of each node; upsert by id (a rerun replaces node tasks).
    Workflow(crate::dag::WorkflowRecord),
    /// A schedule and its last handled slot; upsert by name.
    Schedule(crate::cron::ScheduleRecord),
    ScheduleDeleted(String),
    /// A worker was drained (`true`) or resumed; kept across restarts and reconnects.
    WorkerDrain {
        name: String,
        drained: bool,
    },
}

/// What a call produced, for the driver to carry out: writes first, then the rest.
#[derive(Debug, Default)]
pub struct Effects {
    pub writes: Vec<Write>,
    pub sends: Vec<(SessionId, ToWorker)>,
    pub replies: Vec<(RequestId, Reply)>,
    /// Results or starts refused because their lease was stale.
    pub stale_rejected: u64,
    /// Leases reclaimed by expiry.
    pub reclaimed: u64,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.sends.is_empty() && self.replies.is_empty()
    }
}

/// The active state loaded from the store at start.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Non-terminal tasks with their current attempt.
    pub tasks: Vec<(TaskRecord, Option<AttemptRecord>)>,
    pub next_task_seq: u64,
    pub next_event_seq: u64,
    /// Flow records of active tasks, queue configs, idempotency keys.
    pub flow: FlowSnapshot,
}

#[derive(Debug)]
struct ActiveTask {
    rec: TaskRecord,
    attempt: Option<AttemptRecord>,
    /// In memory only: after a restart every lease gets `restart_grace_ms`.
    lease_expires: Micros,
    log_bytes: [usize; 2],
}

#[derive(Debug)]
struct WorkerState {
    info: WorkerInfo,
    session: SessionId,
    /// Attempts it holds: task id -> attempt. Includes cancelled attempts not yet reported
    /// back, so a worker is never sent more than its credit.
    held: BTreeMap<TaskId, u32>,
    draining: bool,
    joined_at: Micros,
    last_seen: Micros,
    silence: Silence,
    /// Its entry in the liveness timers (0: none).
    silence_timer: Micros,
}

/// A read-only summary of a connected worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSummary {
    pub info: WorkerInfo,
    pub held: usize,
    pub running: usize,
    pub draining: bool,
    pub joined_at: Micros,
    pub last_seen: Micros,
    /// `alive`, `suspect` or `lost` by the core's silence timers.
    pub silence: Silence,
    /// Declared resources minus what its held attempts requested.
    pub resources_free: BTreeMap<String, u64>,
}

pub struct Coordinator {
    cfg: CoreConfig,
    rng: ChaCha20Rng,
    tasks: BTreeMap<TaskId, ActiveTask>,
    /// Queued tasks: higher priority first, then submission order.
    ready: BTreeSet<(Reverse<i32>, u64, TaskId)>,
    /// Pending tasks by the time they become ready.
    delayed: BTreeSet<(Micros, TaskId)>,
    /// Lease deadlines; lazily maintained (renewals do not move entries, expiry re-checks).
    leases: BTreeSet<(Micros, TaskId)>,
    workers: BTreeMap<String, WorkerState>,
    sessions: BTreeMap<SessionId, String>,
    /// Strategy state, placement specs, pending reasons, drained names.
    pl: dispatch::Placer,
    /// Dependencies, serial keys, queue gates, deadlines, idempotency keys.
    flow: flow::Flow,
    /// Cron, fixed-rate and fixed-delay schedules.
    sched: sched::Scheds,
    /// Silence timers of connected workers.
    liveness: liveness::Liveness,
    /// Aggregate state of workflows with active nodes.
    workflows: workflows::Runs,
    next_task_seq: u64,
    next_event_seq: u64,
}

impl Coordinator {
    /// Rebuilds the coordinator from a snapshot. `seed` feeds the random source (lease tokens,
    /// jitter, random placement): the same seed and inputs give the same outputs.
    pub fn new(cfg: CoreConfig, seed: [u8; 32], now: Micros, snapshot: Snapshot) -> Self {
        let mut c = Coordinator {
            rng: ChaCha20Rng::from_seed(seed),
            tasks: BTreeMap::new(),
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            leases: BTreeSet::new(),
            workers: BTreeMap::new(),
            sessions: BTreeMap::new(),
            pl: dispatch::Placer::new(&cfg),
            flow: flow::Flow::default(),
            sched: sched::Scheds::default(),
            liveness: liveness::Liveness::default(),
            workflows: workflows::Runs::default(),
            next_task_seq: snapshot.next_task_seq,
            next_event_seq: snapshot.next_event_seq,
            cfg,
        };
        let grace = now + ms(c.cfg.restart_grace_ms);
        for (rec, attempt) in snapshot.tasks {
            debug_assert!(!rec.state.is_terminal());
            let id = rec.id;
            let mut t = ActiveTask {
                rec,
                attempt,
                lease_expires: 0,
                log_bytes: [0; 2],
            };
            match t.rec.state {
                TaskState::Queued => {
                    c.ready.insert(ready_key(&t.rec));
                }
                TaskState::Pending => {
                    c.delayed
                        .insert((t.rec.not_before.unwrap_or(now), t.rec.id));
                }
                _ => {
                    t.lease_expires = grace;
                    c.leases.insert((grace, id));
                }
            }
            c.tasks.insert(id, t);
        }
        let mut flow = snapshot.flow;
        let workflows_ended = std::mem::take(&mut flow.workflows_ended);
        c.pl.restore_drained(std::mem::take(&mut flow.drained_workers));
        c.restore_flow(now, flow);
        c.restore_workflows(workflows_ended);
        c
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The next time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Micros> {
        let d = self.delayed.first().map(|e| e.0);
        let l = self.leases.first().map(|e| e.0);
        [
            d,
            l,
            self.flow.next_deadline(),
            self.sched.next_timer(),
            self.liveness.next_timer(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle(&mut self, now: Micros, input: Input, fx: &mut Effects) {
        if let Input::Started { session, .. }
        | Input::Finished { session, .. }
        | Input::Log { session, .. } = &input
        {
            self.touch(now, *session, fx);
        }
        match input {
            Input::Submit { req, tasks } => self.submit_and_fan_out(now, req, tasks, fx),
            Input::SubmitPlaced { req, tasks } => self.submit_placed(now, req, tasks, fx),
            Input::DrainWorker { req, name } => self.drain_input(now, req, &name, true, fx),
            Input::ResumeWorker { req, name } => self.drain_input(now, req, &name, false, fx),
            Input::Cancel { req, task_id } => {
                let r = self.cancel(now, task_id, fx);
                fx.replies.push((req, Reply::Cancelled(r)));
            }
            Input::SubmitFlow {
                req,
                tasks,
                workflow,
            } => self.submit_flow(now, req, tasks, workflow, fx),
            Input::ForgetKeys { keys } => self.forget_keys(keys),
            Input::ConfigureQueue { req, config } => {
                self.configure_queue(config, fx);
                fx.replies.push((req, Reply::Done));
            }
            Input::Schedule { req, op } => self.schedule_op(now, req, op, fx),
            Input::WorkerJoin {
                session,
                info,
                held,
            } => self.worker_join(now, session, info, held, fx),
            Input::WorkerLeave { session } => self.worker_leave(now, session, fx),
            Input::Heartbeat { session, held } => self.heartbeat(now, session, held, fx),
            Input::Started { session, attempt } => self.started(now, session, attempt, fx),
            Input::Finished {
                session,
                attempt,
                outcome,
            } => self.finished(now, session, attempt, outcome, fx),
            Input::Log {
                session,
                attempt,
                stream,
                data,
            } => self.log(session, attempt, stream, data, fx),
        }
    }

    /// Promotes due tasks and reclaims expired leases, then dispatches.
    pub fn handle_timeout(&mut self, now: Micros, fx: &mut Effects) {
        while let Some(&(at, id)) = self.delayed.first() {
            if at > now {
                break;
            }
            self.delayed.pop_first();
            self.promote(now, id, fx);
        }
        self.expire_due(now, fx);
        self.fire_due(now, fx);
        self.liveness_due(now, fx);
        while let Some(&(at, id)) = self.leases.first() {
            if at > now {
                break;
            }
            self.leases.pop_first();
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if !t.rec.state.is_leased() {
                continue;
            }
            if t.lease_expires > now {
                // Renewed since this entry was made.
                let renewed = t.lease_expires;
                self.leases.insert((renewed, id));
                continue;
            }
            self.reclaim(now, id, fx);
        }
        self.dispatch(now, fx);
    }

    /// Connected workers, for the API.
    pub fn workers(&self) -> Vec<WorkerSummary> {
        self.workers
            .values()
            .map(|w| WorkerSummary {
                info: w.info.clone(),
                held: w.held.len(),
                running: w
                    .held
                    .keys()
                    .filter(|id| {
                        self.tasks
                            .get(id)
                            .is_some_and(|t| t.rec.state == TaskState::Running)
                    })
                    .count(),
                draining: w.draining,
                resources_free: self.worker_resources_free(&w.info.name).unwrap_or_default(),
                joined_at: w.joined_at,
                last_seen: w.last_seen,
                silence: w.silence,
            })
            .collect()
    }

    /// Active tasks per state.
    pub fn active_counts(&self) -> BTreeMap<TaskState, usize> {
        let mut m = BTreeMap::new();
        for t in self.tasks.values() {
            *m.entry(t.rec.state).or_default() += 1;
        }
        m
    }

    pub fn is_active(&self, id: TaskId) -> bool {
        self.tasks.contains_key(&id)
    }

    /// An active task's record; terminal tasks live only in the store.
    pub fn task(&self, id: TaskId) -> Option<&TaskRecord> {
        self.tasks.get(&id).map(|t| &t.rec)
    }

    /// Checks the structural invariants; used by tests and the simulator after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, t) in &self.tasks {
            let r = &t.rec;
            if r.state.is_terminal() {
                return Err(format!(
                    "ACTIVE_NOT_TERMINAL: {id} is {} but active",
                    r.state
                ));
            }
            let in_ready = self.ready.contains(&ready_key(r));
            if in_ready != (r.state == TaskState::Queued && !self.gated(*id)) {
                return Err(format!(
                    "READY_INDEX: {id} is {} (in ready: {in_ready})",
                    r.state
                ));
            }
            if r.state == TaskState::Pending
                && !self.waits_on_upstreams(*id)
                && !self.delayed.iter().any(|&(_, d)| d == *id)
            {
                return Err(format!("DELAY_INDEX: pending {id} has no timer"));
            }
            if r.state.is_leased() {
                if r.lease.is_none() || r.worker.is_none() || r.attempt == 0 {
                    return Err(format!(
                        "LEASED_FIELDS: {id} is leased without lease/worker"
                    ));
                }
                if !self
                    .leases
                    .iter()
                    .any(|&(at, l)| l == *id && at <= t.lease_expires)
                {
                    return Err(format!("LEASE_TIMER: {id} has no lease timer"));
                }
            }
        }
        for (name, w) in &self.workers {
            for (id, attempt) in &w.held {
                if let Some(t) = self.tasks.get(id) {
                    if t.rec.state.is_leased()
                        && t.rec.attempt == *attempt
                        && t.rec.worker.as_deref() != Some(name)
                    {
                        return Err(format!(
                            "SINGLE_OWNER: {id} held by {name} but owned by {:?}",
                            t.rec.worker
                        ));
                    }
                }
            }
        }
        self.check_liveness()?;
        self.check_workflows()?;
        self.check_flow()
    }

    // ---- inputs ----

    fn submit(&mut self, now: Micros, req: RequestId, tasks: Vec<NewTask>, fx: &mut Effects) {
        let mut ids = Vec::with_capacity(tasks.len());
        for nt in tasks {
            let key = nt.def.idempotency_key.clone();
            if let Some(existing) = key.as_deref().and_then(|k| self.idempotent(k)) {
                // A repeated submit returns the original task.
                ids.push(existing);
                continue;
            }
            ids.push(nt.id);
            let id = nt.id;
            self.insert_new(now, nt, false, fx);
            if let Some(k) = key {
                self.flow_remember_key(k, id);
            }
        }
        fx.replies.push((req, Reply::Submitted(ids)));
    }

    fn cancel(&mut self, now: Micros, id: TaskId, fx: &mut Effects) -> Result<(), CancelError> {
        let t = self.tasks.get_mut(&id).ok_or(CancelError::NotActive)?;
        match t.rec.state {
            TaskState::Queued => {
                self.ready.remove(&ready_key(&t.rec));
            }
            TaskState::Pending => {
                if let Some(at) = t.rec.not_before {
                    self.delayed.remove(&(at, id));
                }
                // A retry backoff timer may have been keyed differently; sweep to be sure.
                self.delayed.retain(|&(_, d)| d != id);
            }
            TaskState::Assigned | TaskState::Running => {
                let r = attempt_ref(&t.rec);
                if let Some(a) = t.attempt.as_mut() {
                    a.finished_at = Some(now);
                    a.outcome = Some(AttemptOutcome::Cancelled);
                }
                // The worker keeps the attempt in `held` until it reports back, so its
                // credit stays honest while the process is being killed.
                if let Some(w) = t.rec.worker.as_ref().and_then(|n| self.workers.get(n)) {
                    fx.sends.push((w.session, ToWorker::Cancel(r)));
                }
                if t.attempt.is_some() {
                    let a = t.attempt.clone().unwrap();
                    fx.writes.push(Write::Attempt(a));
                }
            }
            _ => return Err(CancelError::NotActive),
        }
        self.finish(
            now,
            id,
            TaskState::Cancelled,
            None,
            Some("cancelled by request".into()),
            fx,
        );
        Ok(())
    }

    fn worker_join(
        &mut self,
        now: Micros,
        session: SessionId,
        info: WorkerInfo,
        held: Vec<AttemptRef>,
        fx: &mut Effects,
    ) {
        let name = info.name.clone();
        if let Some(old) = self.workers.remove(&name) {
            self.sessions.remove(&old.session);
            self.liveness_left(&name, old.silence_timer);
        }
        self.sessions.insert(session, name.clone());
        self.workers.insert(
            name.clone(),
            WorkerState {
                info,
                session,
                held: BTreeMap::new(),
                draining: self.pl.is_drained(&name),
                joined_at: now,
                last_seen: now,
                silence: Silence::Heard,
                silence_timer: 0,
            },
        );
        self.liveness_joined(now, &name);
        for r in held {
            match self.tasks.get_mut(&r.task_id) {
                Some(t) if t.rec.state.is_leased() && same_attempt(&t.rec, &r) => {
                    // Re-attach: the attempt lives on under this worker.
                    t.lease_expires = now + ms(self.cfg.lease_ms);
                    self.leases.insert((t.lease_expires, r.task_id));
                    if t.rec.worker.as_deref() != Some(&name) {
                        t.rec.worker = Some(name.clone());
                        self.write_task(r.task_id, false, fx);
                    }
                    self.workers
                        .get_mut(&name)
                        .expect("just inserted")
                        .held
                        .insert(r.task_id, r.attempt);
                }
                _ => fx.sends.push((session, ToWorker::Cancel(r))),
            }
        }
        self.emit(
            now,
            EventKind::Worker {
                name,
                state: WorkerEventState::Joined,
            },
            fx,
        );
    }

    fn worker_leave(&mut self, now: Micros, session: SessionId, fx: &mut Effects) {
        let Some(name) = self.sessions.remove(&session) else {
            return;
        };
        if self
            .workers
            .get(&name)
            .is_some_and(|w| w.session == session)
        {
            // Its attempts keep their leases: it may reconnect and re-attach before they expire.
            let w = self.workers.remove(&name).expect("checked");
            self.liveness_left(&name, w.silence_timer);
            self.emit(
                now,
                EventKind::Worker {
                    name,
                    state: WorkerEventState::Left,
                },
                fx,
            );
        }
    }

    fn heartbeat(
        &mut self,
        now: Micros,
        session: SessionId,
        held: Vec<AttemptRef>,
        fx: &mut Effects,
    ) {
        let Some(name) = self.sessions.get(&session).cloned() else {
            return;
        };
        self.liveness_heard(now, &name, fx);
        let lease_until = now + ms(self.cfg.lease_ms);
        let mut listed = BTreeSet::new();
        for r in &held {
            listed.insert(r.task_id);
            match self.tasks.get_mut(&r.task_id) {
                Some(t)
                    if t.rec.state.is_leased()
                        && same_attempt(&t.rec, r)
                        && t.rec.worker.as_deref() == Some(&name) =>
                {
                    t.lease_expires = lease_until;
                }
                // A cancelled attempt still dying: it keeps its credit until reported.
                _ if self.workers[&name].held.get(&r.task_id) == Some(&r.attempt) => {}
                _ => fx.sends.push((session, ToWorker::Cancel(*r))),
            }
        }
        let w = self
            .workers
            .get_mut(&name)
            .expect("session maps to a worker");
        // Drop attempts the worker no longer has and that are not live assignments (zombies of
        // cancel/reclaim). Live ones stay: an assignment may be on the wire.
        let tasks = &self.tasks;
        w.held.retain(|id, attempt| {
            listed.contains(id)
                || tasks.get(id).is_some_and(|t| {
                    t.rec.state.is_leased()
                        && t.rec.attempt == *attempt
                        && t.rec.worker.as_deref() == Some(name.as_str())
                })
        });
    }

    fn started(&mut self, now: Micros, session: SessionId, r: AttemptRef, fx: &mut Effects) {
        if !self.owns(session, &r) {
            fx.stale_rejected += 1;
            fx.sends.push((session, ToWorker::Cancel(r)));
            return;
        }
        let lease_until = now + ms(self.cfg.lease_ms);
        let t = self.tasks.get_mut(&r.task_id).expect("owned");
        t.lease_expires = lease_until;
        if t.rec.state != TaskState::Assigned {
            return;
        }
        t.rec.started_at = Some(now);
        set_state(t, TaskState::Running, now);
        if let Some(a) = t.attempt.as_mut() {
            a.started_at = Some(now);
            fx.writes.push(Write::Attempt(a.clone()));
        }
        let ev = task_event(&t.rec, None);
        self.write_task(r.task_id, false, fx);
        self.emit(now, ev, fx);
    }

    fn finished(
        &mut self,
        now: Micros,
        session: SessionId,
        r: AttemptRef,
        o: Outcome,
        fx: &mut Effects,
    ) {
        if let Some(name) = self.sessions.get(&session) {
            let w = self
                .workers
                .get_mut(name)
                .expect("session maps to a worker");
            if w.held.get(&r.task_id) == Some(&r.attempt) {
                w.held.remove(&r.task_id);
            }
        }
        if !self.owns(session, &r) {
            fx.stale_rejected += 1;
            fx.sends.push((
                session,
                ToWorker::Reject {
                    attempt: r,
                    reason: "stale lease: the attempt was reclaimed, cancelled or is unknown"
                        .into(),
                },
            ));
            return;
        }
        let id = r.task_id;
        let t = self.tasks.get_mut(&id).expect("owned");
        if let (Some(w), Some(a)) = (t.rec.worker.as_deref(), t.attempt.as_ref()) {
            let ran = a.started_at.map(|s| now - s);
            self.pl.learn(w, &t.rec.def.kind, ran, o.kind);
        }
        if t.rec.started_at.is_none() {
            t.rec.started_at = Some(now);
        }
        let attempt_no = t.rec.attempt;
        if let Some(a) = t.attempt.as_mut() {
            a.started_at.get_or_insert(now);
            a.finished_at = Some(now);
            a.outcome = Some(o.kind);
            a.exit_code = o.exit_code;
            a.error = o.error.clone();
            fx.writes.push(Write::Attempt(a.clone()));
        }
        let retries_left = attempt_no < t.rec.def.max_attempts;
        match o.kind {
            AttemptOutcome::Succeeded => {
                self.finish(now, id, TaskState::Succeeded, o.exit_code, o.error, fx)
            }
            AttemptOutcome::Failed | AttemptOutcome::TimedOut if retries_left => {
                let delay = retry::backoff_ms(
                    t.rec.def.backoff_ms,
                    attempt_no,
                    self.cfg.backoff_cap_ms,
                    &mut self.rng,
                );
                let at = now + ms(delay);
                release(t);
                t.rec.exit_code = o.exit_code;
                t.rec.error = o.error;
                t.rec.not_before = Some(at);
                set_state(t, TaskState::Pending, now);
                self.delayed.insert((at, id));
                let reason = format!(
                    "attempt {attempt_no} {}; retry in {delay}ms",
                    o.kind.as_str()
                );
                let ev = task_event(&t.rec, Some(reason));
                self.write_task(id, false, fx);
                self.emit(now, ev, fx);
                self.left_for_pending(id);
            }
            AttemptOutcome::Failed => {
                self.finish(now, id, TaskState::Failed, o.exit_code, o.error, fx)
            }
            AttemptOutcome::TimedOut => {
                self.finish(now, id, TaskState::TimedOut, o.exit_code, o.error, fx)
            }
            // The worker gave the attempt back (shutting down): run it elsewhere.
            AttemptOutcome::Cancelled | AttemptOutcome::Lost => {
                release(t);
                set_state(t, TaskState::Queued, now);
                let ev = task_event(&t.rec, Some("released by worker".into()));
                self.enqueue(id);
                self.write_task(id, false, fx);
                self.emit(now, ev, fx);
            }
        }
    }

    fn log(
        &mut self,
        session: SessionId,
        r: AttemptRef,
        stream: LogStream,
        data: Vec<u8>,
        fx: &mut Effects,
    ) {
        if !self.owns(session, &r) {
            return;
        }
        if stream == LogStream::Stdout {
            self.note_output(r.task_id, &data);
        }
        let max = self.cfg.max_log_bytes;
        let t = self.tasks.get_mut(&r.task_id).expect("owned");
        // `used` counts kept bytes; past `max` it means the cut is already marked.
        let used = &mut t.log_bytes[stream as usize];
        if *used > max || data.is_empty() {
            return;
        }
        let room = max - *used;
        let mut data = data;
        if data.len() > room {
            data.truncate(room);
            data.extend_from_slice(
                format!(
                    "\n[drover: {} truncated after {max} bytes]\n",
                    stream.as_str()
                )
                .as_bytes(),
            );
            *used = max + 1;
        } else {
            *used += data.len();
        }
        fx.writes.push(Write::Log(LogChunk {
            task_id: r.task_id,
            attempt: r.attempt,
            stream,
            data,
        }));
    }

    // ---- internals ----

    fn touch(&mut self, now: Micros, session: SessionId, fx: &mut Effects) {
        let Some(name) = self.sessions.get(&session) else {
            return;
        };
        let Some(w) = self.workers.get_mut(name) else {
            return;
        };
        w.last_seen = now;
        if w.silence != Silence::Heard {
            let name = name.clone();
            self.liveness_heard(now, &name, fx);
        }
    }

    /// Drain or resume a worker; a change is a worker event.
    fn drain_input(
        &mut self,
        now: Micros,
        req: RequestId,
        name: &str,
        drain: bool,
        fx: &mut Effects,
    ) {
        let changed = self.pl.is_drained(name) != drain;
        let r = self.set_draining(name, drain);
        if r.is_ok() && changed {
            fx.writes.push(Write::WorkerDrain {
                name: name.to_string(),
                drained: drain,
            });
            let state = if drain {
                WorkerEventState::Draining
            } else {
                WorkerEventState::Resumed
            };
            self.emit_worker(now, name, state, fx);
        }
        fx.replies.push((req, Reply::Drain(r)));
    }

    fn owns(&self, session: SessionId, r: &AttemptRef) -> bool {
        let Some(name) = self.sessions.get(&session) else {
            return false;
        };
        self.tasks.get(&r.task_id).is_some_and(|t| {
            t.rec.state.is_leased()
                && same_attempt(&t.rec, r)
                && t.rec.worker.as_ref() == Some(name)
        })
    }

    fn assign(&mut self, now: Micros, id: TaskId, worker: &str, fx: &mut Effects) {
        let def = self.assignment_def(id);
        let lease = LeaseToken(self.rng.random());
        let lease_until = now + ms(self.cfg.lease_ms);
        let w = self
            .workers
            .get_mut(worker)
            .expect("placed on a known worker");
        let t = self.tasks.get_mut(&id).expect("ready task is active");
        t.rec.attempt += 1;
        t.rec.lease = Some(lease);
        t.rec.worker = Some(worker.to_string());
        t.rec.started_at = None;
        t.lease_expires = lease_until;
        t.log_bytes = [0; 2];
        set_state(t, TaskState::Assigned, now);
        let a = AttemptRecord {
            task_id: id,
            attempt: t.rec.attempt,
            worker: worker.to_string(),
            assigned_at: now,
            started_at: None,
            finished_at: None,
            outcome: None,
            exit_code: None,
            error: None,
        };
        t.attempt = Some(a.clone());
        w.held.insert(id, t.rec.attempt);
        self.leases.insert((lease_until, id));
        fx.writes.push(Write::Attempt(a));
        fx.sends.push((
            w.session,
            ToWorker::Assign(Assignment {
                task_id: id,
                attempt: t.rec.attempt,
                lease,
                def,
            }),
        ));
        let ev = task_event(&t.rec, None);
        self.write_task(id, false, fx);
        self.emit(now, ev, fx);
    }

    /// The lease expired: the worker vanished or stalled. Never decided by worker identity.
    fn reclaim(&mut self, now: Micros, id: TaskId, fx: &mut Effects) {
        fx.reclaimed += 1;
        let t = self.tasks.get_mut(&id).expect("checked by caller");
        if let Some(w) = t.rec.worker.as_deref() {
            self.pl
                .learn(w, &t.rec.def.kind, None, AttemptOutcome::Lost);
        }
        let r = attempt_ref(&t.rec);
        if let Some(w) = t.rec.worker.as_ref().and_then(|n| self.workers.get_mut(n)) {
            // If it is alive but stalled, stop the old attempt so it does not run twice.
            w.held.remove(&id);
            fx.sends.push((w.session, ToWorker::Cancel(r)));
        }
        if let Some(a) = t.attempt.as_mut() {
            a.finished_at = Some(now);
            a.outcome = Some(AttemptOutcome::Lost);
            a.error = Some("lease expired".into());
            fx.writes.push(Write::Attempt(a.clone()));
        }
        t.rec.lost += 1;
        if t.rec.lost >= self.cfg.max_lost {
            let msg = format!("lost its worker {} times", t.rec.lost);
            self.finish(now, id, TaskState::Dead, None, Some(msg), fx);
            return;
        }
        release(t);
        set_state(t, TaskState::Queued, now);
        let ev = task_event(&t.rec, Some("lease expired; requeued".into()));
        self.enqueue(id);
        self.write_task(id, false, fx);
        self.emit(now, ev, fx);
    }

    /// Moves a task to a terminal state and out of the active set.
    fn finish(
        &mut self,
        now: Micros,
        id: TaskId,
        state: TaskState,
        exit_code: Option<i32>,
        error: Option<String>,
        fx: &mut Effects,
    ) {
        debug_assert!(state.is_terminal());
        let mut t = self.tasks.remove(&id).expect("finishing an active task");
        self.pl.forget(id);
        t.rec.lease = None;
        t.rec.not_before = None;
        t.rec.finished_at = Some(now);
        t.rec.exit_code = exit_code.or(t.rec.exit_code);
        t.rec.error = error;
        set_state(&mut t, state, now);
        let ev = task_event(&t.rec, t.rec.error.clone());
        let def = t.rec.def.clone();
        fx.writes.push(Write::Task {
            record: t.rec,
            is_new: false,
        });
        self.emit(now, ev, fx);
        self.on_terminal(now, id, state, def, fx);
    }

    fn write_task(&self, id: TaskId, is_new: bool, fx: &mut Effects) {
        fx.writes.push(Write::Task {
            record: self.tasks[&id].rec.clone(),
            is_new,
        });
    }

    fn emit(&mut self, now: Micros, mut kind: EventKind, fx: &mut Effects) {
        // A workflow node's change may change its workflow (terminal ones are counted once
        // the node has left the active set, in `after_terminal`).
        let mut node_of = None;
        if let EventKind::Task {
            task_id,
            workflow,
            state,
            ..
        } = &mut kind
        {
            *workflow = self.workflow_of(*task_id).map(str::to_string);
            node_of = workflow.clone().filter(|_| !state.is_terminal());
        }
        let seq = self.next_event_seq;
        self.next_event_seq += 1;
        fx.writes.push(Write::Event(Event { seq, at: now, kind }));
        if let Some(wf) = node_of {
            self.workflow_changed(now, &wf, fx);
        }
    }
}

fn ms(v: u64) -> Micros {
    (v as i64).saturating_mul(1000)
}

fn ready_key(r: &TaskRecord) -> (Reverse<i32>, u64, TaskId) {
    (Reverse(r.def.priority), r.seq, r.id)
}

fn same_attempt(rec: &TaskRecord, r: &AttemptRef) -> bool {
    rec.attempt == r.attempt && rec.lease == Some(r.lease)
}

fn attempt_ref(rec: &TaskRecord) -> AttemptRef {
    AttemptRef {
        task_id: rec.id,
        attempt: rec.attempt,
        lease: rec.lease.unwrap_or_default(),
    }
}

fn set_state(t: &mut ActiveTask, state: TaskState, now: Micros) {
    t.rec.state = state;
    t.rec.updated_at = now;
}

/// Takes the attempt away from its worker (the lease is void from now on).
fn release(t: &mut ActiveTask) {
    t.rec.lease = None;
    t.rec.worker = None;
    t.lease_expires = 0;
}

fn task_event(rec: &TaskRecord, reason: Option<String>) -> EventKind {
    EventKind::Task {
        task_id: rec.id,
        queue: rec.def.queue.clone(),
        state: rec.state,
        attempt: rec.attempt,
        worker: rec.worker.clone(),
        reason,
        // Filled in by `emit`, which knows the task's flow record.
        workflow: None,
    }
}
