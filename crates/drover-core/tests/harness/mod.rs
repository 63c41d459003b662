//! A test bench around the coordinator: a controllable clock, a model store that applies every
//! committed write, and the messages sent to each worker session.

#![allow(dead_code)]

use std::collections::BTreeMap;

use drover_core::*;

pub const LEASE_MS: u64 = 1_000;
pub const GRACE_MS: u64 = 2_000;

pub fn config() -> CoreConfig {
    CoreConfig {
        lease_ms: LEASE_MS,
        restart_grace_ms: GRACE_MS,
        max_lost: 3,
        backoff_cap_ms: 10_000,
        ..CoreConfig::default()
    }
}

pub fn exec_def(queue: &str) -> TaskDef {
    TaskDef {
        namespace: DEFAULT_NAMESPACE.into(),
        queue: queue.into(),
        kind: "default".into(),
        priority: 0,
        spec: TaskSpec::Exec {
            argv: vec!["true".into()],
            env: vec![],
            cwd: None,
            secret_env: vec![],
        },
        max_attempts: 1,
        backoff_ms: 100,
        timeout_ms: None,
        idempotency_key: None,
        placement: Default::default(),
        concurrency: None,
    }
}

pub fn worker(name: &str, slots: u32, prefetch: u32) -> WorkerInfo {
    WorkerInfo {
        name: name.into(),
        slots,
        prefetch,
        ..WorkerInfo::default()
    }
}

pub struct Bench {
    pub core: Coordinator,
    pub now: Micros,
    /// The model store: every committed task record, attempt and event.
    pub tasks: BTreeMap<TaskId, TaskRecord>,
    pub attempts: BTreeMap<(TaskId, u32), AttemptRecord>,
    pub events: Vec<Event>,
    /// Everything sent to workers, in order.
    pub sent: Vec<(SessionId, ToWorker)>,
    pub replies: Vec<(RequestId, Reply)>,
    pub stale_rejected: u64,
    pub flows: BTreeMap<TaskId, FlowRecord>,
    pub queues: BTreeMap<Scoped, QueueConfig>,
    pub schedules: BTreeMap<Scoped, drover_core::schedule::ScheduleRecord>,
    pub workflows: BTreeMap<String, drover_core::dag::WorkflowRecord>,
    pub drained: std::collections::BTreeSet<String>,
    next_id: u128,
    next_req: u64,
}

impl Bench {
    pub fn new(seed: u8) -> Self {
        Self::from_snapshot(seed, 1_000_000, Snapshot::default())
    }

    /// A fresh bench whose core runs with `cfg` instead of `config()`.
    pub fn with_config(seed: u8, cfg: CoreConfig) -> Self {
        let mut b = Self::new(seed);
        b.core = Coordinator::new(cfg, [seed; 32], b.now, Snapshot::default());
        b
    }

    pub fn from_snapshot(seed: u8, now: Micros, snapshot: Snapshot) -> Self {
        Bench {
            core: Coordinator::new(config(), [seed; 32], now, snapshot),
            now,
            tasks: BTreeMap::new(),
            attempts: BTreeMap::new(),
            events: Vec::new(),
            sent: Vec::new(),
            replies: Vec::new(),
            stale_rejected: 0,
            flows: BTreeMap::new(),
            queues: BTreeMap::new(),
            schedules: BTreeMap::new(),
            workflows: BTreeMap::new(),
            drained: Default::default(),
            next_id: 1,
            next_req: 1,
        }
    }

    /// A server restart: a new core from the snapshot, over the same model store.
    pub fn restarted(&self, seed: u8) -> Bench {
        let mut b = Bench::from_snapshot(seed, self.now, self.snapshot());
        b.tasks = self.tasks.clone();
        b.attempts = self.attempts.clone();
        b.events = self.events.clone();
        b.flows = self.flows.clone();
        b.queues = self.queues.clone();
        b.schedules = self.schedules.clone();
        b.workflows = self.workflows.clone();
        b.drained = self.drained.clone();
        b.next_id = self.next_id;
        b.next_req = self.next_req;
        b
    }

    /// What `Store::load_snapshot` would return from the model store.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            tasks: self
                .tasks
                .values()
                .filter(|t| !t.state.is_terminal())
                .map(|t| (t.clone(), self.attempts.get(&(t.id, t.attempt)).cloned()))
                .collect(),
            next_task_seq: self.tasks.values().map(|t| t.seq + 1).max().unwrap_or(0),
            next_event_seq: self.events.last().map(|e| e.seq + 1).unwrap_or(1),
            flows: self
                .flows
                .values()
                .filter(|f| {
                    self.tasks
                        .get(&f.task_id)
                        .is_some_and(|t| !t.state.is_terminal())
                })
                .cloned()
                .collect(),
            queues: self.queues.values().cloned().collect(),
            schedules: self.schedules.values().cloned().collect(),
            idempotency_keys: self
                .tasks
                .values()
                .filter_map(|t| {
                    t.def
                        .idempotency_key
                        .as_ref()
                        .map(|k| (t.def.scoped(k), t.id))
                })
                .collect(),
            workflows_ended: self.workflows_ended(),
            drained_workers: self.drained.iter().cloned().collect(),
        }
    }

    /// What the server reads at start: for each workflow with an active node, the states
    /// of its terminal nodes.
    fn workflows_ended(&self) -> Vec<(String, Vec<TaskState>)> {
        self.workflows
            .values()
            .filter_map(|w| {
                let states: Vec<TaskState> = w
                    .nodes
                    .iter()
                    .map(|n| self.tasks[&n.task_id].state)
                    .collect();
                states.iter().any(|s| !s.is_terminal()).then(|| {
                    let ended = states.into_iter().filter(|s| s.is_terminal()).collect();
                    (w.id.clone(), ended)
                })
            })
            .collect()
    }

    fn apply(&mut self, fx: Effects) {
        for w in fx.writes {
            match w {
                Write::Task { record, is_new } => {
                    assert_eq!(is_new, !self.tasks.contains_key(&record.id), "is_new flag");
                    self.tasks.insert(record.id, record);
                }
                Write::Attempt(a) => {
                    self.attempts.insert((a.task_id, a.attempt), a);
                }
                Write::Event(e) => {
                    if let Some(last) = self.events.last() {
                        assert_eq!(e.seq, last.seq + 1, "event seqs are gapless");
                    }
                    self.events.push(e);
                }
                Write::Log(_) => {}
                Write::Flow(f) => {
                    self.flows.insert(f.task_id, f);
                }
                Write::Queue(q) => {
                    self.queues.insert(q.key(), q);
                }
                Write::Workflow(w) => {
                    self.workflows.insert(w.id.clone(), w);
                }
                Write::Schedule(s) => {
                    self.schedules.insert(s.spec.key(), s);
                }
                Write::ScheduleDeleted(n) => {
                    self.schedules.remove(&n);
                }
                Write::WorkerDrain { name, drained } => {
                    if drained {
                        self.drained.insert(name);
                    } else {
                        self.drained.remove(&name);
                    }
                }
            }
        }
        self.sent.extend(fx.sends);
        self.replies.extend(fx.replies);
        self.stale_rejected += fx.stale_rejected;
        if let Err(e) = self.core.check_invariants() {
            panic!("invariant broken: {e}");
        }
        self.check_credit();
    }

    /// CAPACITY: no worker holds more live assignments than its slots plus prefetch.
    fn check_credit(&self) {
        let ws = self.core.workers();
        for w in ws {
            let live = self
                .tasks
                .values()
                .filter(|t| {
                    t.state.is_leased() && t.worker.as_deref() == Some(w.info.name.as_str())
                })
                .count();
            assert!(
                live <= w.info.credit_limit(),
                "{} holds {live} > {}",
                w.info.name,
                w.info.credit_limit()
            );
        }
    }

    /// One input without the dispatch round that normally follows it.
    pub fn input_only(&mut self, input: Input) {
        let mut fx = Effects::default();
        self.core.handle(self.now, input, &mut fx);
        self.apply(fx);
    }

    pub fn input(&mut self, input: Input) {
        let mut fx = Effects::default();
        self.core.handle(self.now, input, &mut fx);
        self.core.dispatch_now(self.now, &mut fx);
        self.apply(fx);
    }

    pub fn advance_ms(&mut self, ms: i64) {
        self.now += ms * 1000;
        let mut fx = Effects::default();
        self.core.handle_timeout(self.now, &mut fx);
        self.apply(fx);
    }

    pub fn submit_def(&mut self, def: TaskDef) -> TaskId {
        self.submit_with(def, None)
    }

    pub fn submit_with(&mut self, def: TaskDef, not_before: Option<Micros>) -> TaskId {
        let id = TaskId(self.next_id);
        self.next_id += 1;
        let req = self.next_req;
        self.next_req += 1;
        self.input(Input::Submit {
            req,
            tasks: vec![NewTask {
                id,
                def,
                not_before,
            }],
        });
        id
    }

    /// Submits one task with flow options; `None` when the submit was refused.
    pub fn submit_flow(&mut self, def: TaskDef, flow: FlowSpec) -> Option<TaskId> {
        self.submit_flow_known(def, flow, vec![])
    }

    /// Like `submit_flow`, with upstream states the shell read from the store.
    pub fn submit_flow_known(
        &mut self,
        def: TaskDef,
        flow: FlowSpec,
        upstream_states: Vec<(TaskId, TaskState)>,
    ) -> Option<TaskId> {
        let id = TaskId(self.next_id);
        self.next_id += 1;
        let req = self.next_req;
        self.next_req += 1;
        self.input(Input::SubmitFlow {
            req,
            tasks: vec![FlowTask {
                task: NewTask {
                    id,
                    def,
                    not_before: None,
                },
                flow,
                upstream_states,
            }],
            workflow: None,
        });
        match self.replies.last() {
            Some((r, Reply::Submitted(ids))) if *r == req => Some(ids[0]),
            _ => None,
        }
    }

    /// Reserves a task id for a hand-built input.
    pub fn fresh_id(&mut self) -> TaskId {
        let id = TaskId(self.next_id);
        self.next_id += 1;
        id
    }

    pub fn fresh_req(&mut self) -> RequestId {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    pub fn submit(&mut self, n: usize) -> Vec<TaskId> {
        (0..n).map(|_| self.submit_def(exec_def("q"))).collect()
    }

    /// Joins a worker; panics if the join is refused.
    pub fn join(&mut self, session: SessionId, info: WorkerInfo) {
        let name = info.name.clone();
        let r = self.join_with(session, info, vec![]);
        assert_eq!(r, Ok(()), "join of {name} refused");
    }

    /// Joins a worker that holds `held`; the core's answer.
    pub fn join_with(
        &mut self,
        session: SessionId,
        info: WorkerInfo,
        held: Vec<AttemptRef>,
    ) -> Result<(), JoinError> {
        let req = self.fresh_req();
        self.input(Input::WorkerJoin {
            req,
            session,
            info,
            held,
        });
        match self.replies.last() {
            Some((r, Reply::Joined(j))) if *r == req => j.clone(),
            other => panic!("no join reply: {other:?}"),
        }
    }

    pub fn state(&self, id: TaskId) -> TaskState {
        self.tasks[&id].state
    }

    pub fn attempt_ref(&self, id: TaskId) -> AttemptRef {
        let t = &self.tasks[&id];
        AttemptRef {
            task_id: id,
            attempt: t.attempt,
            lease: t.lease.expect("leased"),
        }
    }

    /// Assignments sent to `session` so far.
    pub fn assigned_to(&self, session: SessionId) -> Vec<Assignment> {
        self.sent
            .iter()
            .filter(|(s, _)| *s == session)
            .filter_map(|(_, m)| match m {
                ToWorker::Assign(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn finish(
        &mut self,
        session: SessionId,
        r: AttemptRef,
        kind: AttemptOutcome,
        code: Option<i32>,
    ) {
        self.input(Input::Finished {
            session,
            attempt: r,
            outcome: Outcome {
                kind,
                exit_code: code,
                error: None,
                result: None,
            },
        });
    }

    pub fn run_ok(&mut self, session: SessionId, id: TaskId) {
        let r = self.attempt_ref(id);
        self.input(Input::Started {
            session,
            attempt: r,
        });
        self.finish(session, r, AttemptOutcome::Succeeded, Some(0));
    }

    /// Task states in the order their events were committed.
    pub fn history(&self, id: TaskId) -> Vec<TaskState> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Task { task_id, state, .. } if *task_id == id => Some(*state),
                _ => None,
            })
            .collect()
    }
}
