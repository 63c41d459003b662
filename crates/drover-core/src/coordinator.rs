//! The coordinator: the one owner of scheduling state, as a pure state machine.
//!
//! Values in, values out: `handle(now, input, &mut effects)`, `handle_timeout(now, ..)`,
//! `poll_timeout()`. The driver must commit `effects.writes` durably *before* it performs
//! `effects.sends` and `effects.replies` (persist before send), so workers and clients only
//! ever learn of committed decisions.
//!
//! The coordinator composes components that each own their indexes and answer with
//! decisions: the active set (`tasks`), the ready index and its gates (`ready`), dependencies
//! (`deps`), idempotency keys, schedules, workflows, the worker registry and its liveness,
//! and placement (`placer`). This file wires inputs to them; `lifecycle` moves tasks between
//! states, and a terminal transition runs the hooks listed in `lifecycle::after_terminal`.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::model::{EventKind, Micros, TaskId, TaskRecord, TaskState, WorkerEventState};
use crate::placement::Ranker;

mod attempts;
mod backlog;
mod defs;
mod deps;
mod dispatch;
mod fires;
mod flow;
mod idempotency;
mod invariants;
mod io;
mod lanes;
mod lifecycle;
mod limits;
mod liveness;
mod membership;
mod placer;
mod queries;
mod queues;
mod rate;
mod ready;
mod restore;
mod schedules;
mod tasks;
mod timers;
mod workers;
mod workflows;

pub use backlog::QueueFull;
pub use deps::MAX_OUTPUT;
pub use flow::{FlowRecord, FlowSpec, FlowTask, UpstreamPolicy};
pub use invariants::{Invariant, Violation};
pub use io::{
    Assignment, CancelError, CoreConfig, Effects, Input, JoinError, NewTask, Outcome, Reply,
    RequestId, ScheduleError, SessionId, Snapshot, SubmitError, ToWorker, Upstream, Write,
};
pub use lanes::MAX_WEIGHT;
pub use rate::Rate;
pub use ready::{QueueConfig, QueueStats};
pub use schedules::{ScheduleOp, ScheduleSummary};
pub use workers::{DrainError, WorkerSummary};

use deps::Deps;
use idempotency::Idempotency;
use lifecycle::Ended;
use liveness::{Liveness, Thresholds};
use placer::Placer;
use ready::Ready;
use schedules::Schedules;
use tasks::Tasks;
use timers::Timers;
use workers::Workers;
use workflows::{NodeStates, Workflows};

pub struct Coordinator {
    cfg: CoreConfig,
    rng: ChaCha20Rng,
    tasks: Tasks,
    ready: Ready,
    /// Pending tasks by the time they become ready (delay, retry backoff).
    delayed: Timers<TaskId>,
    /// Lease deadlines; lazily maintained (renewals do not move entries, expiry re-checks).
    leases: Timers<TaskId>,
    /// Start deadlines (`expired` if not started by then).
    deadlines: Timers<TaskId>,
    deps: Deps,
    idempotency: Idempotency,
    schedules: Schedules,
    workflows: Workflows,
    workers: Workers,
    liveness: Liveness,
    placer: Placer,
    /// The shared lean definitions of the active tasks.
    defs: defs::Defs,
    /// Terminal transitions whose hooks have not run yet: a worklist, so skips cascade
    /// through dependencies without recursion.
    ended: Vec<Ended>,
    ending: bool,
    next_task_seq: u64,
    next_event_seq: u64,
    /// When dispatch last ran: a rate-limited queue's next token is a timer only if it comes
    /// after that (tokens it already had wait for workers, not time).
    last_dispatch: Micros,
}

impl Coordinator {
    /// Rebuilds the coordinator from a snapshot. `seed` feeds the random source (lease tokens,
    /// jitter, random placement): the same seed and inputs give the same outputs.
    pub fn new(cfg: CoreConfig, seed: [u8; 32], now: Micros, snapshot: Snapshot) -> Self {
        let mut c = Coordinator {
            rng: ChaCha20Rng::from_seed(seed),
            tasks: Tasks::default(),
            ready: Ready::default(),
            delayed: Timers::default(),
            leases: Timers::default(),
            deadlines: Timers::default(),
            deps: Deps::default(),
            idempotency: Idempotency::default(),
            schedules: Schedules::default(),
            workflows: Workflows::default(),
            workers: Workers::default(),
            liveness: Liveness::default(),
            placer: Placer::new(&cfg),
            defs: defs::Defs::default(),
            ended: Vec::new(),
            ending: false,
            last_dispatch: now,
            next_task_seq: snapshot.next_task_seq,
            next_event_seq: snapshot.next_event_seq,
            cfg,
        };
        c.restore(now, snapshot);
        c
    }

    /// The next time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Micros> {
        [
            self.delayed.next(),
            self.leases.next(),
            self.deadlines.next(),
            self.schedules.next_timer(),
            self.liveness.next_timer(),
            self.ready.next_token_at(self.last_dispatch),
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
            Input::Submit { req, tasks } => {
                let reply = match self.admit(tasks.iter().map(|t| &t.def)) {
                    Ok(()) => Reply::Submitted(self.submit_and_fan_out(now, tasks, fx)),
                    Err(full) => Reply::SubmitRefused(SubmitError::QueueFull(full)),
                };
                fx.replies.push((req, reply));
            }
            Input::SubmitPlaced { req, tasks } => self.submit_placed_input(now, req, tasks, fx),
            Input::DrainWorker { req, name } => {
                let r = self.drain(now, &name, workers::Drain::Start, fx);
                fx.replies.push((req, Reply::Drain(r)));
            }
            Input::ResumeWorker { req, name } => {
                let r = self.drain(now, &name, workers::Drain::Resume, fx);
                fx.replies.push((req, Reply::Drain(r)));
            }
            Input::Cancel { req, task_id } => {
                let r = self.cancel(now, task_id, fx);
                fx.replies.push((req, Reply::Cancelled(r)));
            }
            Input::SubmitFlow {
                req,
                tasks,
                workflow,
            } => {
                let reply = match self.submit_flow(now, tasks, workflow, fx) {
                    Ok(ids) => Reply::Submitted(ids),
                    Err(e) => Reply::SubmitRefused(e),
                };
                fx.replies.push((req, reply));
            }
            Input::ForgetKeys { keys } => {
                for (k, id) in keys {
                    let active = self.tasks.contains(&id);
                    self.idempotency.forget(&k, id, active);
                }
            }
            Input::ConfigureQueue { req, config } => {
                self.configure_queue(now, config, fx);
                fx.replies.push((req, Reply::Done));
            }
            Input::Schedule { req, op } => {
                let r = self.schedule_op(now, op, fx);
                fx.replies.push((req, Reply::Scheduled(r)));
            }
            Input::WorkerJoin {
                req,
                session,
                info,
                held,
            } => {
                let r = self.worker_join(now, session, info, held, fx);
                fx.replies.push((req, Reply::Joined(r)));
            }
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
            Input::DeliveryResumed { paused } => self.extend_leases(paused),
        }
    }

    /// `Input::SubmitPlaced`: admitted whole or refused whole.
    fn submit_placed_input(
        &mut self,
        now: Micros,
        req: RequestId,
        tasks: Vec<(NewTask, crate::placement::PlacementSpec)>,
        fx: &mut Effects,
    ) {
        let reply = match self.admit(tasks.iter().map(|t| &t.0.def)) {
            Ok(()) => Reply::Submitted(self.submit_placed(now, tasks, fx)),
            Err(full) => Reply::SubmitRefused(SubmitError::QueueFull(full)),
        };
        fx.replies.push((req, reply));
    }

    /// Promotes due tasks, expires missed deadlines, fires schedules, notices silent workers,
    /// reclaims expired leases, then dispatches.
    pub fn handle_timeout(&mut self, now: Micros, fx: &mut Effects) {
        while let Some((_, id)) = self.delayed.pop_due(now) {
            self.promote(now, id, fx);
        }
        self.expire_due(now, fx);
        self.fire_due(now, fx);
        self.liveness_due(now, fx);
        self.reclaim_due(now, fx);
        self.dispatch(now, fx);
    }

    /// Installs (or with `None` removes) an external ranking rule that replaces every task's
    /// strategy in all later dispatches. For the simulator's baselines; a server never sets
    /// one.
    pub fn set_ranker(&mut self, ranker: Option<Box<dyn Ranker + Send>>) {
        self.placer.external = ranker;
    }

    /// Places ready tasks now, without the timers of `handle_timeout`: for tests that step
    /// inputs one by one.
    #[cfg(any(test, feature = "testing"))]
    pub fn dispatch_now(&mut self, now: Micros, fx: &mut Effects) {
        self.dispatch(now, fx);
    }

    // ---- shared plumbing of the components ----

    fn take_task_seq(&mut self) -> u64 {
        let seq = self.next_task_seq;
        self.next_task_seq += 1;
        seq
    }

    /// A new task: its whole record goes to the store, the active set keeps it without its
    /// body (`TaskDef::lean`, shared with the tasks of the same shape), which the driver reads
    /// back when it assigns the task.
    fn insert_record(&mut self, mut rec: TaskRecord, fx: &mut Effects) {
        let lean = self.defs.share(&rec.def);
        fx.writes.push(Write::Task {
            record: rec.clone(),
            is_new: true,
        });
        rec.def = lean;
        self.tasks.insert(tasks::ActiveTask::new(rec, None));
    }

    fn write_task(&self, id: TaskId, is_new: bool, fx: &mut Effects) {
        fx.writes.push(Write::Task {
            record: self.tasks.expect(&id).rec.clone(),
            is_new,
        });
    }

    /// A task became queued: into the ready index unless a gate parks it.
    fn enqueue(&mut self, id: TaskId) {
        let t = self.tasks.expect(&id);
        debug_assert_eq!(t.rec.state, TaskState::Queued);
        let serial = self.deps.serial_key(&id).map(|k| t.rec.def.scoped(k));
        let limit = t.rec.def.key_limit();
        let limit = limit.as_ref().map(|(k, n)| (k, *n));
        self.ready.enqueue(
            t.ready_key(),
            &t.rec.def.queue_key(),
            serial.as_ref(),
            limit,
        );
    }

    fn thresholds(&self) -> Thresholds {
        let suspect_after = ms(self.cfg.suspect_after_ms);
        Thresholds {
            suspect_after,
            lost_after: ms(self.cfg.lease_ms).max(suspect_after),
        }
    }

    /// Writes an event with the next sequence number. A workflow node's task event names its
    /// workflow, and may change the workflow's state (terminal ones are counted once the node
    /// has left the active set, by `after_terminal`).
    fn emit(&mut self, now: Micros, mut kind: EventKind, fx: &mut Effects) {
        let mut node_of = None;
        if let EventKind::Task {
            task_id,
            namespace,
            workflow,
            state,
            ..
        } = &mut kind
        {
            *workflow = self.deps.workflow_of(task_id).map(str::to_string);
            node_of = workflow
                .clone()
                .filter(|_| !state.is_terminal())
                .map(|wf| (wf, namespace.clone()));
        }
        let seq = self.next_event_seq;
        self.next_event_seq += 1;
        fx.writes
            .push(Write::Event(crate::model::Event { seq, at: now, kind }));
        if let Some((wf, namespace)) = node_of {
            if let Some(state) = self.workflows.changed(&wf, &self.tasks) {
                self.emit_workflow(now, wf, namespace, state, fx);
            }
        }
    }

    fn emit_workflow(
        &mut self,
        now: Micros,
        workflow_id: String,
        namespace: String,
        state: crate::model::WorkflowState,
        fx: &mut Effects,
    ) {
        let kind = EventKind::Workflow {
            workflow_id,
            namespace,
            state,
        };
        self.emit(now, kind, fx);
    }

    fn emit_worker(&mut self, now: Micros, name: &str, state: WorkerEventState, fx: &mut Effects) {
        let name = name.to_string();
        self.emit(now, EventKind::Worker { name, state }, fx);
    }
}

impl NodeStates for Tasks {
    fn node(&self, id: &TaskId) -> Option<(TaskState, u32)> {
        self.get(id).map(|t| (t.rec.state, t.rec.attempt))
    }
}

fn ms(v: u64) -> Micros {
    (v as i64).saturating_mul(1000)
}
