//! A task's way through its states: created (pending or queued), assigned, running, and
//! retried, requeued or ended, with the attempt records, events and timers each step needs.
//!
//! A terminal transition (`finish`) takes the task out of the active set, writes it with its
//! event, then runs the hooks of `after_terminal`, in their listed order, through a worklist:
//! a skip it causes downstream is one more terminal transition, handled after it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::deps::Next;
use super::flow::{FlowRecord, FlowTask};
use super::io::{CancelError, Effects, NewTask, SubmitError, ToWorker, Upstream, Write};
use super::tasks::ReadyKey;
use super::{ms, Coordinator};
use crate::dag::WorkflowRecord;
use crate::model::{AttemptOutcome, AttemptRecord, Micros, TaskDef, TaskId, TaskRecord, TaskState};

/// A terminal transition whose hooks have not run yet.
#[derive(Debug)]
pub(super) struct Ended {
    id: TaskId,
    state: TaskState,
    key: ReadyKey,
    def: Arc<TaskDef>,
    /// A handler's result, handed to its waiting workflow downstreams.
    result: Option<Arc<str>>,
}

impl Coordinator {
    /// Plain submit: a repeated idempotency key returns the original task.
    pub(super) fn submit(
        &mut self,
        now: Micros,
        tasks: Vec<NewTask>,
        fx: &mut Effects,
    ) -> Vec<TaskId> {
        let mut ids = Vec::with_capacity(tasks.len());
        for nt in tasks {
            let key = nt.def.idempotency_key.as_ref().map(|k| nt.def.scoped(k));
            if let Some(existing) = key.as_ref().and_then(|k| self.idempotency.get(k)) {
                ids.push(existing);
                continue;
            }
            ids.push(nt.id);
            let id = nt.id;
            self.insert_new(now, nt, false, fx);
            if let Some(k) = key {
                self.idempotency.remember(k, id);
            }
        }
        ids
    }

    /// Submit with flow options. All or nothing: an unknown upstream, a rerun of a workflow
    /// still running, or a backlog at its limit refuses the whole batch with nothing written.
    pub(super) fn submit_flow(
        &mut self,
        now: Micros,
        tasks: Vec<FlowTask>,
        workflow: Option<WorkflowRecord>,
        fx: &mut Effects,
    ) -> Result<Vec<TaskId>, SubmitError> {
        self.check_upstreams(&tasks)?;
        if let Some(w) = &workflow {
            if self.workflows.is_running(&w.id) {
                return Err(SubmitError::WorkflowRunning(w.id.clone()));
            }
        }
        self.admit(tasks.iter().map(|t| &t.task.def))
            .map_err(SubmitError::QueueFull)?;
        if let Some(w) = workflow {
            let submitted = tasks
                .iter()
                .filter(|t| t.flow.workflow.as_ref().is_some_and(|(id, _)| *id == w.id))
                .count();
            self.workflows.begin(&w, submitted);
            fx.writes.push(Write::Workflow(w));
        }
        let mut ids = Vec::with_capacity(tasks.len());
        // Terminal states of upstreams, known before or decided in this submit.
        let mut terminal: HashMap<TaskId, TaskState> = HashMap::new();
        for ft in tasks {
            for (u, st) in &ft.upstream_states {
                if st.is_terminal() && !self.tasks.contains(u) {
                    terminal.insert(*u, *st);
                }
            }
            let def = &ft.task.def;
            let key = def.idempotency_key.as_ref().map(|k| def.scoped(k));
            if let Some(existing) = key.and_then(|k| self.idempotency.get(&k)) {
                ids.push(existing);
                continue;
            }
            let (id, skipped) = self.insert_with_flow(now, ft, &terminal, fx);
            ids.push(id);
            if skipped {
                terminal.insert(id, TaskState::Skipped);
            }
        }
        Ok(ids)
    }

    /// UNKNOWN_UPSTREAM: every upstream is active, in this submit, or known terminal.
    fn check_upstreams(&self, tasks: &[FlowTask]) -> Result<(), SubmitError> {
        let in_batch: HashSet<TaskId> = tasks.iter().map(|t| t.task.id).collect();
        for ft in tasks {
            for u in &ft.flow.after {
                let known = in_batch.contains(u)
                    || self.tasks.contains(u)
                    || ft
                        .upstream_states
                        .iter()
                        .any(|(id, st)| id == u && st.is_terminal());
                if !known {
                    return Err(SubmitError::UnknownUpstream(*u));
                }
            }
        }
        Ok(())
    }

    /// Creates one task with its flow. Returns its id and whether it was skipped at once.
    fn insert_with_flow(
        &mut self,
        now: Micros,
        ft: FlowTask,
        terminal: &HashMap<TaskId, TaskState>,
        fx: &mut Effects,
    ) -> (TaskId, bool) {
        let FlowTask { task: nt, flow, .. } = ft;
        let id = nt.id;
        let (rec, skip) = FlowRecord::new(id, flow, |u| terminal.get(u).copied());
        let blocked = !rec.waiting.is_empty() || skip.is_some();
        let def_key = nt.def.idempotency_key.as_ref().map(|k| nt.def.scoped(k));
        if !rec.spec.is_default() {
            // Known before the task is created, so its first enqueue sees the gates.
            if let Some(k) = &rec.spec.serial_key {
                self.ready
                    .join_line(&nt.def.scoped(k), self.next_task_seq, id);
            }
            if let Some(d) = rec.spec.deadline {
                self.deadlines.arm(d, id);
            }
            fx.writes.push(Write::Flow(rec.clone()));
            if let Some((wf, _)) = &rec.spec.workflow {
                self.workflows.node_added(wf, id);
            }
            self.deps.add(rec, skip.is_none());
        }
        self.insert_new(now, nt, blocked, fx);
        if let Some(k) = def_key {
            self.idempotency.remember(k, id);
        }
        let skipped = skip.is_some();
        if let Some(reason) = skip {
            self.finish(now, id, TaskState::Skipped, None, Some(reason), fx);
        }
        (id, skipped)
    }

    /// Creates an active task: pending if delayed or `blocked` on upstreams, else queued
    /// (through the gates). Writes the record and its event.
    fn insert_new(&mut self, now: Micros, nt: NewTask, blocked: bool, fx: &mut Effects) {
        let seq = self.take_task_seq();
        let delayed = nt.not_before.filter(|&nb| nb > now);
        let state = if delayed.is_some() || blocked {
            TaskState::Pending
        } else {
            TaskState::Queued
        };
        let rec = TaskRecord::new(nt.id, seq, Arc::new(nt.def), state, delayed, now);
        let id = rec.id;
        if let Some(at) = delayed {
            self.delayed.arm(at, id);
        }
        let ev =
            super::tasks::task_event(&rec, blocked.then(|| "waiting for upstream tasks".into()));
        self.insert_record(rec, fx);
        if state == TaskState::Queued {
            self.enqueue(id);
        }
        self.emit(now, ev, fx);
    }

    pub(super) fn cancel(
        &mut self,
        now: Micros,
        id: TaskId,
        fx: &mut Effects,
    ) -> Result<(), CancelError> {
        let t = self.tasks.get_mut(&id).ok_or(CancelError::NotActive)?;
        if t.rec.state == TaskState::Pending {
            // A timer may have been keyed differently (a restart arms waiting tasks at once).
            self.delayed.disarm_all(&id);
        }
        if t.rec.state.is_leased() {
            let r = t.attempt_ref();
            if let Some(a) = t.attempt.as_mut() {
                a.finished_at = Some(now);
                a.outcome = Some(AttemptOutcome::Cancelled);
                fx.writes.push(Write::Attempt((**a).clone()));
            }
            // The worker keeps the attempt in `held` until it reports back, so its credit
            // stays honest while the process is being killed.
            if let Some(w) = t.rec.worker.as_deref().and_then(|n| self.workers.get(n)) {
                fx.sends.push((w.session, ToWorker::Cancel(r)));
            }
        }
        let reason = Some("cancelled by request".into());
        self.finish(now, id, TaskState::Cancelled, None, reason, fx);
        Ok(())
    }

    pub(super) fn assign(&mut self, now: Micros, id: TaskId, worker: &str, fx: &mut Effects) {
        let (def, upstream) = self.assignment_def(id);
        let lease = crate::model::LeaseToken(rand::Rng::random(&mut self.rng));
        let lease_until = now + ms(self.cfg.lease_ms);
        let t = self.tasks.set_state(&id, TaskState::Assigned, now);
        t.rec.attempt += 1;
        t.rec.lease = Some(lease);
        t.rec.worker = Some(worker.to_string());
        t.rec.started_at = None;
        t.lease_expires = Some(lease_until);
        t.log_kept = Default::default();
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
        t.attempt = Some(Box::new(a.clone()));
        let attempt = t.rec.attempt;
        let ev = t.event(None);
        let w = self
            .workers
            .get_mut(worker)
            .expect("placed on a known worker");
        w.held.insert(id, attempt);
        self.leases.arm(lease_until, id);
        fx.writes.push(Write::Attempt(a));
        let assignment = super::io::Assignment {
            task_id: id,
            attempt,
            lease,
            def,
            upstream,
        };
        fx.sends.push((w.session, ToWorker::Assign(assignment)));
        self.write_task(id, false, fx);
        self.emit(now, ev, fx);
    }

    /// The definition an attempt is sent with, and what it gets of its upstreams: a handler
    /// their results, a command `DROVER_UPSTREAM_<NODE>_OUTPUT` variables.
    fn assignment_def(&mut self, id: TaskId) -> (Arc<TaskDef>, Upstream) {
        let def = self.tasks.expect(&id).rec.def.clone();
        self.deps.new_attempt(&id);
        let outputs = self.deps.upstream_outputs(&id);
        if outputs.is_empty() {
            return (def, Upstream::default());
        }
        if def.spec.is_handler() {
            let upstream = Upstream {
                results: outputs.to_vec(),
                env: Vec::new(),
            };
            return (def, upstream);
        }
        let env = outputs
            .iter()
            .filter(|(_, out)| out.len() <= super::deps::MAX_ENV_OUTPUT)
            .map(|(node, out)| {
                let name = format!("DROVER_UPSTREAM_{}_OUTPUT", crate::dag::env_name(node));
                (name, out.clone())
            })
            .collect();
        let upstream = Upstream {
            results: Vec::new(),
            env,
        };
        (def, upstream)
    }

    /// A pending task's timer fired: it queues unless it still waits for upstreams.
    pub(super) fn promote(&mut self, now: Micros, id: TaskId, fx: &mut Effects) {
        let waiting = self.deps.is_waiting(&id);
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if t.rec.state != TaskState::Pending {
            return;
        }
        t.rec.not_before = None;
        if waiting {
            self.write_task(id, false, fx);
            return;
        }
        let t = self.tasks.set_state(&id, TaskState::Queued, now);
        let ev = t.event(None);
        self.write_task(id, false, fx);
        self.emit(now, ev, fx);
        self.enqueue(id);
    }

    /// Expires tasks whose start deadline passed.
    pub(super) fn expire_due(&mut self, now: Micros, fx: &mut Effects) {
        while let Some((_, id)) = self.deadlines.pop_due(now) {
            let waiting = self
                .tasks
                .get(&id)
                .is_some_and(|t| matches!(t.rec.state, TaskState::Pending | TaskState::Queued));
            if waiting {
                let reason = Some("deadline passed before the task started".into());
                self.finish(now, id, TaskState::Expired, None, reason, fx);
            }
        }
    }

    /// Reclaims every lease that expired without a renewal.
    pub(super) fn reclaim_due(&mut self, now: Micros, fx: &mut Effects) {
        while let Some((_, id)) = self.leases.pop_due(now) {
            let Some(t) = self.tasks.get(&id).filter(|t| t.rec.state.is_leased()) else {
                continue;
            };
            match t.lease_expires {
                // Renewed since this entry was made.
                Some(renewed) if renewed > now => self.leases.arm(renewed, id),
                _ => self.reclaim(now, id, fx),
            }
        }
    }

    /// Every live lease is extended by `paused` (`Input::DeliveryResumed`). Each lease timer
    /// stays where it is: when it fires it finds the later expiry and re-arms.
    pub(super) fn extend_leases(&mut self, paused: Micros) {
        for t in self.tasks.values_mut().filter(|t| t.rec.state.is_leased()) {
            if let Some(at) = &mut t.lease_expires {
                *at += paused.max(0);
            }
        }
    }

    /// The lease expired: the worker vanished or stalled. Never decided by worker identity.
    fn reclaim(&mut self, now: Micros, id: TaskId, fx: &mut Effects) {
        fx.reclaimed += 1;
        let t = self.tasks.expect_mut(&id);
        if let Some(w) = t.rec.worker.as_deref() {
            self.placer
                .learn(w, &t.rec.def.kind, None, AttemptOutcome::Lost);
        }
        let r = t.attempt_ref();
        if let Some(w) = t
            .rec
            .worker
            .as_deref()
            .and_then(|n| self.workers.get_mut(n))
        {
            // If it is alive but stalled, stop the old attempt so it does not run twice.
            w.held.remove(&id);
            fx.sends.push((w.session, ToWorker::Cancel(r)));
        }
        if let Some(a) = t.attempt.as_mut() {
            a.finished_at = Some(now);
            a.outcome = Some(AttemptOutcome::Lost);
            a.error = Some("lease expired".into());
            fx.writes.push(Write::Attempt((**a).clone()));
        }
        t.rec.lost += 1;
        if t.rec.lost >= self.cfg.max_lost {
            let msg = format!("lost its worker {} times", t.rec.lost);
            self.finish(now, id, TaskState::Dead, None, Some(msg), fx);
            return;
        }
        self.requeue(now, id, "lease expired; requeued", fx);
    }

    /// A leased task goes back to the ready index (reclaimed, or given back by its worker).
    pub(super) fn requeue(&mut self, now: Micros, id: TaskId, why: &str, fx: &mut Effects) {
        let t = self.tasks.set_state(&id, TaskState::Queued, now);
        t.release();
        let ev = t.event(Some(why.into()));
        self.enqueue(id);
        self.write_task(id, false, fx);
        self.emit(now, ev, fx);
    }

    /// A leased task failed with retries left: pending until its backoff ends.
    pub(super) fn retry_later(
        &mut self,
        now: Micros,
        id: TaskId,
        delay_ms: u64,
        why: String,
        fx: &mut Effects,
    ) {
        let at = now + ms(delay_ms);
        let t = self.tasks.set_state(&id, TaskState::Pending, now);
        t.release();
        t.rec.not_before = Some(at);
        let ev = t.event(Some(why));
        let (key, queue) = (t.ready_key(), t.rec.def.queue_key());
        let limit = t.rec.def.key_limit().map(|(k, _)| k);
        self.delayed.arm(at, id);
        self.write_task(id, false, fx);
        self.emit(now, ev, fx);
        // Its queue and key slots free up; its serial key stays held through the retry.
        self.ready.leave(&key, &queue, limit.as_ref());
    }

    /// Moves a task to a terminal state and out of the active set, then runs the hooks.
    pub(super) fn finish(
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
        if let Some(at) = t.rec.not_before {
            self.delayed.disarm(at, id);
        }
        self.placer.forget(&id);
        t.rec.lease = None;
        t.rec.not_before = None;
        t.rec.finished_at = Some(now);
        t.rec.exit_code = exit_code.or(t.rec.exit_code);
        t.rec.error = error;
        t.set_state(state, now);
        let ev = t.event(t.rec.error.clone());
        let ended = Ended {
            id,
            state,
            key: t.ready_key(),
            def: t.rec.def.clone(),
            result: t.rec.result.clone(),
        };
        fx.writes.push(Write::Task {
            record: t.rec,
            is_new: false,
        });
        self.emit(now, ev, fx);
        self.ended.push(ended);
        if self.ending {
            return;
        }
        self.ending = true;
        while let Some(e) = self.ended.pop() {
            self.after_terminal(now, e, fx);
        }
        self.ending = false;
    }

    /// The hooks of a terminal transition, in order.
    fn after_terminal(&mut self, now: Micros, e: Ended, fx: &mut Effects) {
        let (flow, downstream) = self.deps.ended(e.id, e.state, e.result.as_deref());
        // 1. Its queue slot frees up (the queue admits what it parked).
        let limit = e.def.key_limit().map(|(k, _)| k);
        self.ready.leave(&e.key, &e.def.queue_key(), limit.as_ref());
        // 2. A delay-after-previous schedule's next run is due after its delay.
        if let Some(rec) = self.schedules.task_ended(&e.id, now) {
            fx.writes.push(Write::Schedule(rec));
        }
        if let Some(flow) = &flow {
            // 3. Its workflow counts the node as ended.
            if let Some((wf, _)) = &flow.spec.workflow {
                if let Some(state) = self.workflows.node_ended(wf, e.id, e.state, &self.tasks) {
                    let ns = e.def.namespace.clone();
                    self.emit_workflow(now, wf.clone(), ns, state, fx);
                }
            }
            // 4. Its start deadline and its serial key's turn are over.
            if let Some(d) = flow.spec.deadline {
                self.deadlines.disarm(d, e.id);
            }
            if let Some(k) = &flow.spec.serial_key {
                self.ready.leave_line(&e.def.scoped(k), e.key.1, e.id);
            }
        }
        // 5. The tasks waiting on it are skipped, queued, or wait on.
        for r in downstream {
            let d = r.record.task_id;
            fx.writes.push(Write::Flow(r.record));
            match r.next {
                Next::Skip(reason) => {
                    self.finish(now, d, TaskState::Skipped, None, Some(reason), fx)
                }
                Next::Run => self.upstreams_done(now, d, fx),
                Next::Wait => {}
            }
        }
    }

    /// A pending task's last upstream ended: it queues, unless it also waits for its time.
    fn upstreams_done(&mut self, now: Micros, id: TaskId, fx: &mut Effects) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if t.rec.state == TaskState::Pending && t.rec.not_before.is_none() {
            let t = self.tasks.set_state(&id, TaskState::Queued, now);
            let ev = t.event(Some("upstream tasks done".into()));
            self.write_task(id, false, fx);
            self.emit(now, ev, fx);
            self.enqueue(id);
        }
    }
}
