//! Schedules (cron, fixed rate, fixed delay after the previous run): their records, their
//! timers, and the decisions of what to fire when, by the misfire policy.
//!
//! Invariants:
//! - ONE_FIRE_PER_SLOT: a slot is fired only if it is after the schedule's `last_slot`, and
//!   the new `last_slot` is written (`Write::Schedule`) in the same batch as the fired task;
//!   a fire's task id is derived from (schedule, slot), so a repeated decision names the same
//!   task.
//! - NEVER_STOPS: after every decision an unpaused cron/rate schedule has a timer for its next
//!   slot; a delay schedule has one once its previous run ended.

use std::collections::{BTreeMap, HashMap};

use super::io::ScheduleError;
use super::timers::Timers;
use crate::model::{Micros, ScheduleChange, Scoped, TaskDef, TaskId};
use crate::schedule::{
    Compiled, Misfire, Overlap, ScheduleRecord, ScheduleSpec, Trigger, MAX_BACKFILL, MAX_CATCH_UP,
    MISFIRE_GRACE_US,
};

/// A change to the schedules (`drover cron ...`).
#[derive(Clone, Debug)]
pub enum ScheduleOp {
    /// Add or replace. A replaced schedule keeps its last slot (no refire of past slots).
    Put(ScheduleSpec),
    Delete(Scoped),
    Pause(Scoped),
    /// Undo `Pause`: slots passed while paused are not fired.
    Resume(Scoped),
    /// Fire once now. Replies the fired task.
    Run(Scoped),
    /// Fire every slot in `[from, to]` (at most `MAX_BACKFILL`), except `skip` (slots the
    /// shell found already fired in the store). Replies the fired tasks.
    Backfill {
        name: Scoped,
        from: Micros,
        to: Micros,
        skip: Vec<Micros>,
    },
}

/// A schedule as listed: its record and next fire time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSummary {
    pub record: ScheduleRecord,
    pub next_fire_at: Option<Micros>,
    /// The latest fire's task is still active.
    pub running: bool,
}

/// What a due schedule's timer decided.
#[derive(Debug)]
pub(super) struct DuePlan {
    /// The record with the handled slot, to write (none for delay schedules).
    pub(super) record: Option<ScheduleRecord>,
    /// Why missed slots were not fired, if some were not.
    pub(super) dropped: Option<String>,
    /// Slots to fire, oldest first, each subject to the overlap policy.
    pub(super) slots: Vec<Micros>,
    pub(super) overlap: Overlap,
}

struct Entry {
    rec: ScheduleRecord,
    compiled: Compiled,
    /// The timer entry, if any.
    due: Option<Micros>,
}

impl Entry {
    fn next_fire(&self) -> Option<Micros> {
        if self.rec.paused {
            return None;
        }
        match self.compiled {
            Compiled::Delay => self.rec.next_at,
            // Slots strictly after the schedule was created.
            _ => self
                .compiled
                .next_after(self.rec.last_slot.unwrap_or(self.rec.created_at)),
        }
    }
}

#[derive(Default)]
pub(super) struct Schedules {
    by_name: BTreeMap<Scoped, Entry>,
    timers: Timers<Scoped>,
    /// Active fired task -> schedule (for delay-after-previous and overlap).
    by_task: HashMap<TaskId, Scoped>,
}

fn not_found(name: &Scoped) -> ScheduleError {
    ScheduleError::NotFound(name.name.clone())
}

impl Schedules {
    pub(super) fn next_timer(&self) -> Option<Micros> {
        self.timers.next()
    }

    fn arm(&mut self, name: &Scoped) {
        let Some(e) = self.by_name.get_mut(name) else {
            return;
        };
        if let Some(old) = e.due.take() {
            self.timers.disarm(old, name.clone());
        }
        e.due = e.next_fire();
        if let Some(d) = e.due {
            self.timers.arm(d, name.clone());
        }
    }

    fn insert(&mut self, rec: ScheduleRecord, compiled: Compiled) {
        let name = rec.spec.key();
        let entry = Entry {
            rec,
            compiled,
            due: None,
        };
        self.by_name.insert(name.clone(), entry);
        self.arm(&name);
    }

    pub(super) fn restore(
        &mut self,
        now: Micros,
        recs: Vec<ScheduleRecord>,
        is_active: impl Fn(&TaskId) -> bool,
    ) {
        for mut rec in recs {
            let Ok(compiled) = rec.spec.trigger.compile() else {
                continue;
            };
            let running = rec.last_task.filter(|t| is_active(t));
            if let Some(t) = running {
                self.by_task.insert(t, rec.spec.key());
            } else if matches!(compiled, Compiled::Delay) && rec.next_at.is_none() {
                rec.next_at = Some(now);
            }
            self.insert(rec, compiled);
        }
    }

    pub(super) fn contains(&self, name: &Scoped) -> bool {
        self.by_name.contains_key(name)
    }

    /// Adds or replaces a schedule. Returns its record to write and what changed.
    pub(super) fn put(
        &mut self,
        spec: ScheduleSpec,
        now: Micros,
    ) -> Result<(ScheduleRecord, ScheduleChange), ScheduleError> {
        let compiled = spec.trigger.compile().map_err(ScheduleError::BadTrigger)?;
        let old = self.remove_entry(&spec.key());
        let change = match old {
            Some(_) => ScheduleChange::Updated,
            None => ScheduleChange::Created,
        };
        let rec = match old {
            Some(o) => ScheduleRecord {
                spec,
                next_at: o.rec.next_at.or(Some(now)),
                ..o.rec
            },
            None => ScheduleRecord {
                spec,
                paused: false,
                created_at: now,
                last_slot: None,
                last_task: None,
                next_at: Some(now),
            },
        };
        self.insert(rec.clone(), compiled);
        Ok((rec, change))
    }

    fn remove_entry(&mut self, name: &Scoped) -> Option<Entry> {
        let e = self.by_name.remove(name)?;
        if let Some(d) = e.due {
            self.timers.disarm(d, name.clone());
        }
        Some(e)
    }

    pub(super) fn delete(&mut self, name: &Scoped) -> Result<(), ScheduleError> {
        self.remove_entry(name).ok_or_else(|| not_found(name))?;
        self.by_task.retain(|_, n| n != name);
        Ok(())
    }

    /// Pauses or resumes. Returns the record to write and whether it changed.
    pub(super) fn set_paused(
        &mut self,
        name: &Scoped,
        paused: bool,
        now: Micros,
        is_active: impl Fn(&TaskId) -> bool,
    ) -> Result<(ScheduleRecord, bool), ScheduleError> {
        let e = self.by_name.get_mut(name).ok_or_else(|| not_found(name))?;
        let changed = e.rec.paused != paused;
        e.rec.paused = paused;
        if !paused {
            // Slots passed while paused are not fires: resume from now.
            e.rec.last_slot = Some(now);
            let running = e.rec.last_task.is_some_and(|t| is_active(&t));
            if matches!(e.compiled, Compiled::Delay) && e.rec.next_at.is_none() && !running {
                e.rec.next_at = Some(now);
            }
        }
        let rec = e.rec.clone();
        self.arm(name);
        Ok((rec, changed))
    }

    /// The slots of `[from, to]` to backfill (at most `MAX_BACKFILL`).
    pub(super) fn backfill_slots(
        &self,
        name: &Scoped,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<Micros>, ScheduleError> {
        let e = self.by_name.get(name).ok_or_else(|| not_found(name))?;
        Ok(e.compiled.slots(from - 1, to, MAX_BACKFILL).0)
    }

    /// What a fire submits: the template, and the serial key of overlap `queue`.
    pub(super) fn template(&self, name: &Scoped) -> (TaskDef, Option<String>) {
        let spec = &self.by_name[name].rec.spec;
        let key = (spec.overlap == Overlap::Queue).then(|| format!("cron:{}", spec.name));
        ((*spec.template).clone(), key)
    }

    /// A fire created (or, by its idempotency key, named) task `id`. Returns the record
    /// to write.
    pub(super) fn fired(&mut self, name: &Scoped, id: TaskId, active: bool) -> ScheduleRecord {
        let e = self.by_name.get_mut(name).expect("known schedule");
        if let Some(old) = e.rec.last_task.replace(id) {
            self.by_task.remove(&old);
        }
        if matches!(e.compiled, Compiled::Delay) {
            e.rec.next_at = None;
        }
        if active {
            self.by_task.insert(id, name.clone());
        }
        let rec = e.rec.clone();
        self.arm(name);
        rec
    }

    /// The latest fire's task, if it is still active.
    pub(super) fn running(
        &self,
        name: &Scoped,
        is_active: impl Fn(&TaskId) -> bool,
    ) -> Option<TaskId> {
        self.by_name
            .get(name)?
            .rec
            .last_task
            .filter(|t| is_active(t))
    }

    /// Takes the next schedule whose timer is due.
    pub(super) fn pop_due(&mut self, now: Micros) -> Option<Scoped> {
        let (_, name) = self.timers.pop_due(now)?;
        if let Some(e) = self.by_name.get_mut(&name) {
            e.due = None;
        }
        Some(name)
    }

    /// Decides what a due schedule fires at `now`, by its misfire policy, and records the
    /// latest due slot as handled whatever happens to the fires.
    pub(super) fn plan_due(&mut self, name: &Scoped, now: Micros) -> Option<DuePlan> {
        let e = self.by_name.get_mut(name)?;
        if e.rec.paused {
            return None;
        }
        if matches!(e.compiled, Compiled::Delay) {
            let due = e.rec.next_at.is_some_and(|t| t <= now);
            return due.then_some(DuePlan {
                record: None,
                dropped: None,
                slots: vec![now],
                overlap: Overlap::Allow,
            });
        }
        let last = e.rec.last_slot.unwrap_or(e.rec.created_at);
        let cap = e.rec.spec.max_catch_up.clamp(1, MAX_CATCH_UP) as usize;
        let (due, all) = e.compiled.recent_slots(last, now, cap + 1);
        let &latest = due.last()?;
        let on_time = now - latest <= MISFIRE_GRACE_US;
        let missed = if on_time {
            &due[..due.len() - 1]
        } else {
            &due[..]
        };
        let misfire = e.rec.spec.misfire;
        let mut slots: Vec<Micros> = match misfire {
            Misfire::Skip => vec![],
            Misfire::RunOnce if on_time => vec![],
            Misfire::RunOnce => missed.last().copied().into_iter().collect(),
            Misfire::RunAll => missed[missed.len() - missed.len().min(cap)..].to_vec(),
        };
        // Every missed slot not fired, counting those older than the window looked at.
        let all_missed = all - usize::from(on_time);
        let dropped = all_missed - slots.len();
        if on_time {
            slots.push(latest);
        }
        e.rec.last_slot = Some(latest);
        Some(DuePlan {
            record: Some(e.rec.clone()),
            dropped: (dropped > 0).then(|| {
                format!(
                    "{dropped} missed slot(s) not fired (misfire {})",
                    misfire.as_str()
                )
            }),
            slots,
            overlap: e.rec.spec.overlap,
        })
    }

    /// Re-arms a schedule after its due timer was handled.
    pub(super) fn handled(&mut self, name: &Scoped) {
        self.arm(name);
    }

    /// A task left the active set: a delay-after-previous schedule's next run is now due
    /// after its delay. Returns the record to write, if it changed.
    pub(super) fn task_ended(&mut self, id: &TaskId, now: Micros) -> Option<ScheduleRecord> {
        if self.by_task.is_empty() {
            return None;
        }
        let name = self.by_task.remove(id)?;
        let e = self.by_name.get_mut(&name)?;
        let Trigger::DelayAfterPrevious { delay_ms } = e.rec.spec.trigger else {
            return None;
        };
        if e.rec.last_task != Some(*id) {
            return None;
        }
        e.rec.next_at = Some(now + (delay_ms as i64).saturating_mul(1000));
        let rec = e.rec.clone();
        self.arm(&name);
        Some(rec)
    }

    /// Schedules with their next fire time.
    pub(super) fn summaries(&self, is_active: impl Fn(&TaskId) -> bool) -> Vec<ScheduleSummary> {
        self.by_name
            .values()
            .map(|e| ScheduleSummary {
                record: e.rec.clone(),
                next_fire_at: e.next_fire(),
                running: e.rec.last_task.is_some_and(|t| is_active(&t)),
            })
            .collect()
    }

    /// NEVER_STOPS: every unpaused cron/rate schedule has its timer armed at its next fire.
    pub(super) fn check(&self) -> Result<(), String> {
        for (name, e) in &self.by_name {
            let next = e.next_fire();
            if e.due != next || next.is_some_and(|at| !self.timers.is_armed(at, name)) {
                return Err(format!("{name} is due {:?}, next fire {next:?}", e.due));
            }
        }
        Ok(())
    }
}
