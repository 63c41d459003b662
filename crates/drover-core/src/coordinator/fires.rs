//! The coordinator's side of schedules: operator requests, and fires decided by the
//! schedules' timers. A fire creates its task through the same submit as any other task
//! (with the serial key of overlap `queue`) and records it on the schedule in one batch.

use super::flow::{FlowSpec, FlowTask};
use super::io::{Effects, NewTask, ScheduleError, Write};
use super::schedules::ScheduleOp;
use super::Coordinator;
use crate::model::{EventKind, Micros, ScheduleChange, Scoped, TaskId};
use crate::schedule::{fire_id, fire_key, Overlap};

impl Coordinator {
    /// Carries out a schedule operation; returns the tasks it fired.
    pub(super) fn schedule_op(
        &mut self,
        now: Micros,
        op: ScheduleOp,
        fx: &mut Effects,
    ) -> Result<Vec<TaskId>, ScheduleError> {
        match op {
            ScheduleOp::Put(spec) => {
                let (rec, change) = self.schedules.put(spec, now)?;
                let name = rec.spec.key();
                fx.writes.push(Write::Schedule(rec));
                self.emit_schedule(now, &name, change, None, None, fx);
                Ok(vec![])
            }
            ScheduleOp::Delete(name) => {
                self.schedules.delete(&name)?;
                fx.writes.push(Write::ScheduleDeleted(name.clone()));
                self.emit_schedule(now, &name, ScheduleChange::Deleted, None, None, fx);
                Ok(vec![])
            }
            ScheduleOp::Pause(name) => self.pause_schedule(now, &name, true, fx),
            ScheduleOp::Resume(name) => self.pause_schedule(now, &name, false, fx),
            ScheduleOp::Run(name) => {
                if !self.schedules.contains(&name) {
                    return Err(ScheduleError::NotFound(name.name));
                }
                Ok(vec![self.fire(now, &name, now, Some("run by request"), fx)])
            }
            ScheduleOp::Backfill {
                name,
                from,
                to,
                skip,
            } => {
                let slots = self.schedules.backfill_slots(&name, from, to)?;
                let mut ids = Vec::new();
                for slot in slots {
                    if skip.contains(&slot)
                        || self.tasks.contains(&fire_id(&fire_key(&name), slot, 0))
                    {
                        continue;
                    }
                    ids.push(self.fire(now, &name, slot, Some("backfill"), fx));
                }
                Ok(ids)
            }
        }
    }

    fn pause_schedule(
        &mut self,
        now: Micros,
        name: &Scoped,
        paused: bool,
        fx: &mut Effects,
    ) -> Result<Vec<TaskId>, ScheduleError> {
        let tasks = &self.tasks;
        let (rec, changed) = self
            .schedules
            .set_paused(name, paused, now, |t| tasks.contains(t))?;
        fx.writes.push(Write::Schedule(rec));
        if changed {
            let change = if paused {
                ScheduleChange::Paused
            } else {
                ScheduleChange::Resumed
            };
            self.emit_schedule(now, name, change, None, None, fx);
        }
        Ok(vec![])
    }

    /// Creates the task of one fire and records it on the schedule. Returns its id (or, with
    /// a template's idempotency key, the task that key named first).
    fn fire(
        &mut self,
        now: Micros,
        name: &Scoped,
        slot: Micros,
        why: Option<&str>,
        fx: &mut Effects,
    ) -> TaskId {
        let (def, serial_key) = self.schedules.template(name);
        let fire_name = fire_key(name);
        let id = (0..)
            .map(|salt| fire_id(&fire_name, slot, salt))
            .find(|id| !self.tasks.contains(id))
            .expect("some salt is free");
        let task = FlowTask {
            task: NewTask {
                id,
                def,
                not_before: None,
            },
            flow: FlowSpec {
                serial_key,
                ..FlowSpec::default()
            },
            upstream_states: vec![],
        };
        // No upstreams and no workflow: nothing can refuse it.
        let ids = self.submit_flow(now, vec![task], None, fx);
        let id = ids.ok().and_then(|ids| ids.first().copied()).unwrap_or(id);
        let active = self.tasks.contains(&id);
        let rec = self.schedules.fired(name, id, active);
        fx.writes.push(Write::Schedule(rec));
        let why = why.map(str::to_string);
        self.emit_schedule(now, name, ScheduleChange::Fired, Some(id), why, fx);
        id
    }

    /// Fires what is due at `now`, by each schedule's misfire and overlap policy.
    pub(super) fn fire_due(&mut self, now: Micros, fx: &mut Effects) {
        while let Some(name) = self.schedules.pop_due(now) {
            if let Some(plan) = self.schedules.plan_due(&name, now) {
                if let Some(rec) = plan.record {
                    fx.writes.push(Write::Schedule(rec));
                }
                if let Some(why) = plan.dropped {
                    self.emit_schedule(now, &name, ScheduleChange::Skipped, None, Some(why), fx);
                }
                for slot in plan.slots {
                    self.fire_slot(now, &name, slot, plan.overlap, fx);
                }
            }
            self.schedules.handled(&name);
        }
    }

    /// Fires one due slot unless the overlap policy says otherwise.
    fn fire_slot(
        &mut self,
        now: Micros,
        name: &Scoped,
        slot: Micros,
        overlap: Overlap,
        fx: &mut Effects,
    ) {
        let tasks = &self.tasks;
        let running = self.schedules.running(name, |t| tasks.contains(t));
        match (overlap, running) {
            (Overlap::Skip, Some(t)) => {
                let why = format!("previous run {t} still active (overlap skip)");
                self.emit_schedule(now, name, ScheduleChange::Skipped, None, Some(why), fx);
                return;
            }
            (Overlap::Replace, Some(t)) => {
                let _ = self.cancel(now, t, fx);
            }
            _ => {}
        }
        self.fire(now, name, slot, None, fx);
    }

    fn emit_schedule(
        &mut self,
        now: Micros,
        name: &Scoped,
        change: ScheduleChange,
        task_id: Option<TaskId>,
        reason: Option<String>,
        fx: &mut Effects,
    ) {
        let kind = EventKind::Schedule {
            namespace: name.namespace.clone(),
            name: name.name.clone(),
            change,
            task_id,
            reason,
        };
        self.emit(now, kind, fx);
    }
}
