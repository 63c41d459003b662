//! The invariants of the scheduler, by name. ARCHITECTURE.md lists exactly these (a test
//! compares the two); `check_invariants` checks every one that a state of the core can show,
//! and the others are kept by the driver or the store and covered by tests.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::Coordinator;
use crate::model::{TaskId, TaskState};

macro_rules! invariants {
    ($($variant:ident => $name:literal, $core:literal;)+) => {
        /// An invariant of the scheduler; its name is the one ARCHITECTURE.md uses.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Invariant {
            $($variant,)+
        }

        impl Invariant {
            pub const ALL: &'static [Invariant] = &[$(Invariant::$variant,)+];

            pub fn name(self) -> &'static str {
                match self {
                    $(Invariant::$variant => $name,)+
                }
            }

            /// Whether `Coordinator::check_invariants` checks it.
            pub fn checked_by_core(self) -> bool {
                match self {
                    $(Invariant::$variant => $core,)+
                }
            }
        }
    };
}

invariants! {
    PersistBeforeSend => "PERSIST_BEFORE_SEND", false;
    FencedAttempts => "FENCED_ATTEMPTS", false;
    ReclaimByLease => "RECLAIM_BY_LEASE", false;
    Credit => "CREDIT", true;
    SingleOwner => "SINGLE_OWNER", true;
    ActiveIndexes => "ACTIVE_INDEXES", true;
    GaplessEvents => "GAPLESS_EVENTS", false;
    SilenceTimer => "SILENCE_TIMER", true;
    WorkflowRuns => "WORKFLOW_RUNS", true;
    Determinism => "DETERMINISM", false;
    DurableDrain => "DURABLE_DRAIN", true;
    FeasibleOnly => "FEASIBLE_ONLY", false;
    DurablePlacement => "DURABLE_PLACEMENT", false;
    DepsPending => "DEPS_PENDING", true;
    DepsDurable => "DEPS_DURABLE", false;
    KeySerial => "KEY_SERIAL", true;
    QueueGate => "QUEUE_GATE", true;
    KeyLimit => "KEY_LIMIT", true;
    OneFirePerSlot => "ONE_FIRE_PER_SLOT", false;
    NeverStops => "NEVER_STOPS", true;
    IdempotentSubmit => "IDEMPOTENT_SUBMIT", false;
    BoundedBacklog => "BOUNDED_BACKLOG", true;
    EventsAfterCommit => "EVENTS_AFTER_COMMIT", false;
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant, with what broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

fn broken(invariant: Invariant, detail: String) -> Result<(), Violation> {
    Err(Violation { invariant, detail })
}

impl Coordinator {
    /// Checks every invariant the core's state can show (`Invariant::checked_by_core`); the
    /// property tests and the simulator call it after every step. Costs O(active set).
    pub fn check_invariants(&self) -> Result<(), Violation> {
        self.check_active_indexes()?;
        self.check_workers()?;
        self.check_deps()?;
        self.check_key_serial()?;
        self.check_queue_gates()?;
        self.check_key_limits()?;
        let tag = |i: Invariant| {
            move |detail| Violation {
                invariant: i,
                detail,
            }
        };
        self.schedules.check().map_err(tag(Invariant::NeverStops))?;
        self.tasks
            .check_waiting()
            .map_err(tag(Invariant::BoundedBacklog))?;
        let mut nodes: HashMap<&str, BTreeSet<TaskId>> = HashMap::new();
        for id in self.tasks.ids() {
            if let Some(wf) = self.deps.workflow_of(id) {
                nodes.entry(wf).or_default().insert(*id);
            }
        }
        self.workflows
            .check(nodes)
            .map_err(tag(Invariant::WorkflowRuns))
    }

    /// ACTIVE_INDEXES: the active set holds no terminal task; a queued task is in the ready
    /// index unless a gate parks it; a pending one has a timer unless it waits on upstreams;
    /// a leased one has its lease, worker, attempt and a lease timer.
    fn check_active_indexes(&self) -> Result<(), Violation> {
        let bad = |detail| broken(Invariant::ActiveIndexes, detail);
        let delayed: BTreeSet<TaskId> = self.delayed.iter().map(|e| e.1).collect();
        // The earliest lease timer of each task (renewals leave later ones behind).
        let mut leases: HashMap<TaskId, crate::model::Micros> = HashMap::new();
        for &(at, id) in self.leases.iter() {
            leases.entry(id).or_insert(at);
        }
        let mut ready = 0;
        for t in self.tasks.values() {
            let (r, id) = (&t.rec, t.rec.id);
            if r.state.is_terminal() {
                return bad(format!("{id} is {} but active", r.state));
            }
            let key = t.ready_key();
            let in_ready = self.ready.contains(&key, &r.def.queue_key());
            ready += usize::from(in_ready);
            let limit = r.def.key_limit().map(|(k, _)| k);
            let parked = self
                .ready
                .is_parked(&key, &r.def.queue_key(), limit.as_ref());
            if in_ready != (r.state == TaskState::Queued && !parked) {
                return bad(format!("{id} is {} (in ready: {in_ready})", r.state));
            }
            if r.state == TaskState::Pending && !self.deps.is_waiting(&id) && !delayed.contains(&id)
            {
                return bad(format!("pending {id} has no timer"));
            }
            if r.state.is_leased() {
                if r.lease.is_none() || r.worker.is_none() || r.attempt == 0 {
                    return bad(format!("{id} is leased without lease/worker"));
                }
                let timer = leases.get(&id);
                if timer.is_none_or(|at| t.lease_expires.is_none_or(|exp| *at > exp)) {
                    return bad(format!("{id} has no lease timer"));
                }
            }
        }
        if ready != self.ready.len() {
            return bad(format!(
                "{} ready entries, {ready} of active tasks",
                self.ready.len()
            ));
        }
        Ok(())
    }

    /// CREDIT, SINGLE_OWNER, SILENCE_TIMER and DURABLE_DRAIN.
    fn check_workers(&self) -> Result<(), Violation> {
        for (name, w) in self.workers.iter() {
            let mut live = 0;
            for (id, attempt) in &w.held {
                let Some(t) = self.tasks.get(id) else {
                    continue;
                };
                if !(t.rec.state.is_leased() && t.rec.attempt == *attempt) {
                    continue;
                }
                if t.rec.worker.as_deref() != Some(name) {
                    let detail = format!("{id} held by {name} but owned by {:?}", t.rec.worker);
                    return broken(Invariant::SingleOwner, detail);
                }
                live += 1;
            }
            if live > w.info.credit_limit() {
                let detail = format!("{name} holds {live} > {}", w.info.credit_limit());
                return broken(Invariant::Credit, detail);
            }
        }
        let watches = self.workers.iter().map(|(n, w)| (n, &w.watch));
        self.liveness
            .check(watches)
            .or_else(|d| broken(Invariant::SilenceTimer, d))?;
        self.workers
            .check_drains()
            .or_else(|d| broken(Invariant::DurableDrain, d))
    }

    /// DEPS_PENDING: a task with upstreams still waiting is `pending`, and every upstream it
    /// waits on is active; flow records belong to active tasks.
    fn check_deps(&self) -> Result<(), Violation> {
        for r in self.deps.records() {
            let id = r.task_id;
            let Some(t) = self.tasks.get(&id) else {
                return broken(
                    Invariant::DepsPending,
                    format!("flow record of inactive {id}"),
                );
            };
            if !r.waiting.is_empty() && t.rec.state != TaskState::Pending {
                let detail = format!("{id} is {} but waits on {:?}", t.rec.state, r.waiting);
                return broken(Invariant::DepsPending, detail);
            }
            if let Some(u) = r.waiting.iter().find(|u| !self.tasks.contains(u)) {
                return broken(
                    Invariant::DepsPending,
                    format!("{id} waits on inactive {u}"),
                );
            }
        }
        Ok(())
    }

    /// KEY_SERIAL: of the active tasks with one serial key, only the first by submission
    /// order is ready or leased.
    fn check_key_serial(&self) -> Result<(), Violation> {
        for (k, line) in self.ready.lines() {
            for (i, id) in line.enumerate() {
                let Some(t) = self.tasks.get(&id) else {
                    return broken(Invariant::KeySerial, format!("inactive {id} holds key {k}"));
                };
                let going = t.rec.state.is_leased()
                    || self.ready.contains(&t.ready_key(), &t.rec.def.queue_key());
                if i > 0 && going {
                    let detail =
                        format!("{id} of key {k} is {} behind an earlier task", t.rec.state);
                    return broken(Invariant::KeySerial, detail);
                }
            }
        }
        Ok(())
    }

    /// KEY_LIMIT: a concurrency key admits only active tasks of the key that are queued or
    /// leased, no more than their limit; the tasks it parks are queued and not ready.
    fn check_key_limits(&self) -> Result<(), Violation> {
        let bad = |detail| broken(Invariant::KeyLimit, detail);
        for (key, admitted, parked) in self.ready.key_gates() {
            let limit_of = |id: &TaskId| {
                let t = self.tasks.get(id)?;
                let (k, max) = t.rec.def.key_limit()?;
                let live = t.rec.state.is_leased() || t.rec.state == TaskState::Queued;
                (k == *key && live).then_some((t, max))
            };
            let mut most = 0;
            for id in &admitted {
                let Some((_, max)) = limit_of(id) else {
                    return bad(format!("key {key} admits {id}, not a live task of it"));
                };
                most = most.max(max as usize);
            }
            if admitted.len() > most {
                return bad(format!("key {key} admits {} > {most}", admitted.len()));
            }
            for id in &parked {
                let ready = limit_of(id).is_some_and(|(t, _)| {
                    t.rec.state != TaskState::Queued
                        || self.ready.contains(&t.ready_key(), &t.rec.def.queue_key())
                });
                if limit_of(id).is_none() || ready {
                    return bad(format!(
                        "key {key} parks {id}, which is not a queued task of it"
                    ));
                }
            }
        }
        Ok(())
    }

    /// QUEUE_GATE: a configured queue admits exactly its ready and leased tasks; while any of
    /// them is ready, no more than its concurrency are admitted; a paused one has none ready.
    fn check_queue_gates(&self) -> Result<(), Violation> {
        let bad = |detail| broken(Invariant::QueueGate, detail);
        for (config, admitted, ready) in self.ready.gates() {
            let name = config.key();
            for id in &admitted {
                let Some(t) = self.tasks.get(id).filter(|t| t.rec.def.queue_key() == name) else {
                    return bad(format!("{name} admits {id}, not an active task of it"));
                };
                if !t.rec.state.is_leased() && !self.ready.contains(&t.ready_key(), &name) {
                    return bad(format!("{name} admits {id}, which is {}", t.rec.state));
                }
            }
            if config.paused && ready > 0 {
                return bad(format!("paused {name} has {ready} ready tasks"));
            }
            if let Some(c) = config.concurrency.filter(|_| ready > 0) {
                if admitted.len() > c as usize {
                    return bad(format!(
                        "{name} admits {} > concurrency {c}",
                        admitted.len()
                    ));
                }
            }
        }
        for t in self.tasks.values() {
            let key = t.ready_key();
            let queue = t.rec.def.queue_key();
            if self.ready.contains(&key, &queue) && !self.ready.admitted_by(&key, &queue) {
                return bad(format!(
                    "{} is ready but not admitted by its queue",
                    t.rec.id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::io::{CoreConfig, Effects, Input, NewTask, Snapshot};
    use super::super::ready::QueueConfig;
    use super::super::Coordinator;
    use super::Invariant;
    use crate::model::{TaskDef, TaskId, TaskSpec, WorkerInfo};

    fn core_with_worker() -> Coordinator {
        let mut c = Coordinator::new(CoreConfig::default(), [1; 32], 0, Snapshot::default());
        let info = WorkerInfo {
            name: "w".into(),
            slots: 1,
            ..WorkerInfo::default()
        };
        let join = Input::WorkerJoin {
            req: 0,
            session: 1,
            info,
            held: vec![],
        };
        c.handle(0, join, &mut Effects::default());
        c
    }

    fn submit(c: &mut Coordinator, id: u128, queue: &str) {
        let def = TaskDef {
            namespace: crate::model::DEFAULT_NAMESPACE.into(),
            queue: queue.into(),
            kind: "default".into(),
            priority: 0,
            spec: TaskSpec::Noop,
            max_attempts: 1,
            backoff_ms: 0,
            timeout_ms: None,
            idempotency_key: None,
            placement: Default::default(),
            concurrency: None,
        };
        let tasks = vec![NewTask {
            id: TaskId(id),
            def,
            not_before: None,
        }];
        c.handle(0, Input::Submit { req: 1, tasks }, &mut Effects::default());
    }

    fn broken(c: &Coordinator) -> Invariant {
        c.check_invariants().expect_err("a broken state").invariant
    }

    #[test]
    fn a_worker_holding_more_than_its_credit_breaks_credit() {
        let mut c = core_with_worker();
        for id in 1..=2 {
            submit(&mut c, id, "q");
        }
        c.dispatch(0, &mut Effects::default());
        assert!(c.check_invariants().is_ok());
        // Lease the second task to the worker behind the core's back.
        let first = c.tasks.expect(&TaskId(1)).rec.clone();
        let t2 = c.tasks.expect_mut(&TaskId(2));
        t2.rec.state = first.state;
        t2.rec.attempt = 1;
        t2.rec.lease = first.lease;
        t2.rec.worker = first.worker.clone();
        let (key, queue) = (t2.ready_key(), t2.rec.def.queue_key());
        t2.lease_expires = Some(1);
        c.ready.assigned(&key, &queue, 0);
        c.leases.arm(1, TaskId(2));
        c.workers.get_mut("w").unwrap().held.insert(TaskId(2), 1);
        assert_eq!(broken(&c), Invariant::Credit);
    }

    #[test]
    fn a_ready_task_past_its_queue_concurrency_breaks_queue_gate() {
        let mut c = core_with_worker();
        let config = QueueConfig {
            name: "q".into(),
            concurrency: Some(1),
            ..QueueConfig::default()
        };
        c.handle(
            0,
            Input::ConfigureQueue { req: 1, config },
            &mut Effects::default(),
        );
        submit(&mut c, 1, "q");
        submit(&mut c, 2, "q");
        assert!(c.check_invariants().is_ok());
        // Admit the parked one behind the gate's back.
        let key = c.tasks.expect(&TaskId(2)).ready_key();
        c.ready
            .force_admit(key, &crate::model::Scoped::default_ns("q"));
        assert_eq!(broken(&c), Invariant::QueueGate);
    }

    #[test]
    fn a_queued_task_missing_from_the_index_breaks_active_indexes() {
        let mut c = core_with_worker();
        submit(&mut c, 1, "q");
        let t = c.tasks.expect(&TaskId(1));
        let (key, queue) = (t.ready_key(), t.rec.def.queue_key());
        c.ready.assigned(&key, &queue, 0);
        assert_eq!(broken(&c), Invariant::ActiveIndexes);
    }
}
