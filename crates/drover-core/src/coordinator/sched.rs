//! Schedules inside the core: deciding fires from `now` (cron, fixed rate, fixed delay),
//! overlap and misfire policies, manual runs and backfills.
//!
//! Invariants:
//! - ONE_FIRE_PER_SLOT: a slot is fired only if it is after the schedule's `last_slot`, and
//!   the new `last_slot` is written (`Write::Schedule`) in the same batch as the fired task;
//!   a fire's task id is derived from (schedule, slot), so a repeated decision names the same
//!   task.
//! - NEVER_STOPS: after every decision an unpaused cron/rate schedule has a timer for its next
//!   slot; a delay schedule has one once its previous run ended.

use std::collections::{BTreeSet, HashMap};

use crate::cron::{
    fire_id, Compiled, Misfire, Overlap, ScheduleRecord, ScheduleSpec, Trigger, MAX_BACKFILL,
    MAX_CATCH_UP, MISFIRE_GRACE_US,
};

use super::*;

/// A change to the schedules (`drover cron ...`).
#[derive(Clone, Debug)]
pub enum ScheduleOp {
    /// Add or replace. A replaced schedule keeps its last slot (no refire of past slots).
    Put(ScheduleSpec),
    Delete(String),
    Pause(String, bool),
    /// Fire once now. Replies `Submitted([id])`.
    Run(String),
    /// Fire every slot in `[from, to]` (at most `MAX_BACKFILL`), except `skip` (slots the
    /// shell found already fired in the store). Replies `Submitted(ids)`.
    Backfill {
        name: String,
        from: Micros,
        to: Micros,
        skip: Vec<Micros>,
    },
}

struct Sched {
    rec: ScheduleRecord,
    compiled: Compiled,
    /// The timer entry, if any.
    due: Option<Micros>,
}

#[derive(Default)]
pub(super) struct Scheds {
    by_name: BTreeMap<String, Sched>,
    timers: BTreeSet<(Micros, String)>,
    /// Active fired task -> schedule (for delay-after-previous and overlap).
    by_task: HashMap<TaskId, String>,
}

/// A schedule as listed: its record and next fire time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSummary {
    pub record: ScheduleRecord,
    pub next_fire_at: Option<Micros>,
    /// The latest fire's task is still active.
    pub running: bool,
}

const NO_REQ: RequestId = RequestId::MAX;

impl Scheds {
    pub(super) fn next_timer(&self) -> Option<Micros> {
        self.timers.first().map(|t| t.0)
    }
}

fn serial_key(spec: &ScheduleSpec) -> Option<String> {
    (spec.overlap == Overlap::Queue).then(|| format!("cron:{}", spec.name))
}

impl Coordinator {
    /// Schedules with their next fire time.
    pub fn schedules(&self) -> Vec<ScheduleSummary> {
        self.sched
            .by_name
            .values()
            .map(|s| ScheduleSummary {
                record: s.rec.clone(),
                next_fire_at: self.next_fire(s),
                running: s.rec.last_task.is_some_and(|t| self.tasks.contains_key(&t)),
            })
            .collect()
    }

    fn next_fire(&self, s: &Sched) -> Option<Micros> {
        if s.rec.paused {
            return None;
        }
        match s.compiled {
            Compiled::Delay => s.rec.next_at,
            _ => s
                .compiled
                // Slots strictly after the schedule was created.
                .next_after(s.rec.last_slot.unwrap_or(s.rec.created_at)),
        }
    }

    fn arm(&mut self, name: &str) {
        let Some(s) = self.sched.by_name.get(name) else {
            return;
        };
        let due = self.next_fire(s);
        let old = s.due;
        if let Some(o) = old {
            self.sched.timers.remove(&(o, name.to_string()));
        }
        if let Some(d) = due {
            self.sched.timers.insert((d, name.to_string()));
        }
        self.sched.by_name.get_mut(name).expect("checked").due = due;
    }

    pub(super) fn restore_schedules(&mut self, now: Micros, recs: Vec<ScheduleRecord>) {
        for mut rec in recs {
            let Ok(compiled) = rec.spec.trigger.compile() else {
                continue;
            };
            let name = rec.spec.name.clone();
            if let Some(t) = rec.last_task {
                if self.tasks.contains_key(&t) {
                    self.sched.by_task.insert(t, name.clone());
                } else if matches!(compiled, Compiled::Delay) && rec.next_at.is_none() {
                    rec.next_at = Some(now);
                }
            } else if matches!(compiled, Compiled::Delay) && rec.next_at.is_none() {
                rec.next_at = Some(now);
            }
            self.sched.by_name.insert(
                name.clone(),
                Sched {
                    rec,
                    compiled,
                    due: None,
                },
            );
            self.arm(&name);
        }
    }

    pub(super) fn schedule_op(
        &mut self,
        now: Micros,
        req: RequestId,
        op: ScheduleOp,
        fx: &mut Effects,
    ) {
        let reply = match op {
            ScheduleOp::Put(spec) => match spec.trigger.compile() {
                Err(e) => Reply::SubmitRefused(SubmitError::BadSchedule(e)),
                Ok(compiled) => {
                    let name = spec.name.clone();
                    let old = self.sched.by_name.remove(&name);
                    if let Some(o) = old.as_ref().and_then(|o| o.due) {
                        self.sched.timers.remove(&(o, name.clone()));
                    }
                    let change = if old.is_some() {
                        ScheduleChange::Updated
                    } else {
                        ScheduleChange::Created
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
                    fx.writes.push(Write::Schedule(rec.clone()));
                    self.sched.by_name.insert(
                        name.clone(),
                        Sched {
                            rec,
                            compiled,
                            due: None,
                        },
                    );
                    self.arm(&name);
                    self.emit_schedule(now, &name, change, None, None, fx);
                    Reply::Done
                }
            },
            ScheduleOp::Delete(name) => match self.sched.by_name.remove(&name) {
                None => Reply::SubmitRefused(SubmitError::NoSuchSchedule(name)),
                Some(s) => {
                    if let Some(d) = s.due {
                        self.sched.timers.remove(&(d, name.clone()));
                    }
                    self.sched.by_task.retain(|_, n| *n != name);
                    fx.writes.push(Write::ScheduleDeleted(name.clone()));
                    self.emit_schedule(now, &name, ScheduleChange::Deleted, None, None, fx);
                    Reply::Done
                }
            },
            ScheduleOp::Pause(name, paused) => match self.sched.by_name.get_mut(&name) {
                None => Reply::SubmitRefused(SubmitError::NoSuchSchedule(name)),
                Some(s) => {
                    let changed = s.rec.paused != paused;
                    s.rec.paused = paused;
                    if !paused {
                        // Slots passed while paused are not fires: resume from now.
                        s.rec.last_slot = Some(now);
                        if matches!(s.compiled, Compiled::Delay) && s.rec.next_at.is_none() {
                            let running =
                                s.rec.last_task.is_some_and(|t| self.tasks.contains_key(&t));
                            if !running {
                                s.rec.next_at = Some(now);
                            }
                        }
                    }
                    fx.writes.push(Write::Schedule(s.rec.clone()));
                    self.arm(&name);
                    if changed {
                        let change = if paused {
                            ScheduleChange::Paused
                        } else {
                            ScheduleChange::Resumed
                        };
                        self.emit_schedule(now, &name, change, None, None, fx);
                    }
                    Reply::Done
                }
            },
            ScheduleOp::Run(name) => {
                if !self.sched.by_name.contains_key(&name) {
                    Reply::SubmitRefused(SubmitError::NoSuchSchedule(name))
                } else {
                    let id = self.fire(now, &name, now, Some("run by request"), fx);
                    Reply::Submitted(vec![id])
                }
            }
            ScheduleOp::Backfill {
                name,
                from,
                to,
                skip,
            } => match self.sched.by_name.get(&name) {
                None => Reply::SubmitRefused(SubmitError::NoSuchSchedule(name)),
                Some(s) => {
                    let (slots, _) = s.compiled.slots(from - 1, to, MAX_BACKFILL);
                    let mut ids = Vec::new();
                    for slot in slots {
                        if skip.contains(&slot) || self.tasks.contains_key(&fire_id(&name, slot, 0))
                        {
                            continue;
                        }
                        ids.push(self.fire(now, &name, slot, Some("backfill"), fx));
                    }
                    Reply::Submitted(ids)
                }
            },
        };
        fx.replies.push((req, reply));
    }

    /// Creates the task of one fire and records it on the schedule. Returns its id.
    fn fire(
        &mut self,
        now: Micros,
        name: &str,
        slot: Micros,
        why: Option<&str>,
        fx: &mut Effects,
    ) -> TaskId {
        let s = self.sched.by_name.get(name).expect("known schedule");
        let def = (*s.rec.spec.template).clone();
        let key = serial_key(&s.rec.spec);
        let mut salt = 0;
        let mut id = fire_id(name, slot, salt);
        while self.tasks.contains_key(&id) {
            salt += 1;
            id = fire_id(name, slot, salt);
        }
        self.submit_flow(
            now,
            NO_REQ,
            vec![FlowTask {
                task: NewTask {
                    id,
                    def,
                    not_before: None,
                },
                flow: FlowSpec {
                    serial_key: key,
                    ..FlowSpec::default()
                },
                upstream_states: vec![],
            }],
            None,
            fx,
        );
        // A template with an idempotency key names the task it created first.
        let id = fx
            .replies
            .iter()
            .find_map(|(r, reply)| match reply {
                Reply::Submitted(ids) if *r == NO_REQ => ids.first().copied(),
                _ => None,
            })
            .unwrap_or(id);
        fx.replies.retain(|(r, _)| *r != NO_REQ);
        let s = self.sched.by_name.get_mut(name).expect("known schedule");
        if let Some(old) = s.rec.last_task.replace(id) {
            self.sched.by_task.remove(&old);
        }
        if matches!(s.compiled, Compiled::Delay) {
            s.rec.next_at = None;
        }
        fx.writes.push(Write::Schedule(s.rec.clone()));
        if self.tasks.contains_key(&id) {
            self.sched.by_task.insert(id, name.to_string());
        }
        let why = why.map(str::to_string);
        self.emit_schedule(now, name, ScheduleChange::Fired, Some(id), why, fx);
        id
    }

    fn emit_schedule(
        &mut self,
        now: Micros,
        name: &str,
        change: ScheduleChange,
        task_id: Option<TaskId>,
        reason: Option<String>,
        fx: &mut Effects,
    ) {
        self.emit(
            now,
            EventKind::Schedule {
                name: name.to_string(),
                change,
                task_id,
                reason,
            },
            fx,
        );
    }

    /// Fires what is due at `now`, by each schedule's misfire and overlap policy.
    pub(super) fn fire_due(&mut self, now: Micros, fx: &mut Effects) {
        while let Some((at, name)) = self.sched.timers.first().cloned() {
            if at > now {
                break;
            }
            self.sched.timers.pop_first();
            if let Some(s) = self.sched.by_name.get_mut(&name) {
                s.due = None;
            }
            self.fire_schedule(now, &name, fx);
            self.arm(&name);
        }
    }

    fn fire_schedule(&mut self, now: Micros, name: &str, fx: &mut Effects) {
        let Some(s) = self.sched.by_name.get(name) else {
            return;
        };
        if s.rec.paused {
            return;
        }
        if matches!(s.compiled, Compiled::Delay) {
            if s.rec.next_at.is_some_and(|t| t <= now) {
                self.fire(now, name, now, None, fx);
            }
            return;
        }
        let last = s.rec.last_slot.unwrap_or(s.rec.created_at);
        let cap = (s.rec.spec.max_catch_up.clamp(1, MAX_CATCH_UP)) as usize;
        // Every due slot, newest `cap + 1` kept (iteration is bounded: a long downtime of a
        // frequent schedule does not walk every missed slot one by one beyond that).
        let due = recent_slots(&s.compiled, last, now, cap + 1);
        let Some(&latest) = due.last() else {
            return;
        };
        let on_time = now - latest <= MISFIRE_GRACE_US;
        let missed: Vec<Micros> = if on_time {
            due[..due.len() - 1].to_vec()
        } else {
            due.clone()
        };
        let mut fires: Vec<Micros> = Vec::new();
        let misfire = s.rec.spec.misfire;
        match misfire {
            Misfire::Skip => {}
            Misfire::RunOnce => {
                if !on_time {
                    fires.extend(missed.last());
                }
            }
            Misfire::RunAll => {
                let n = missed.len().min(cap);
                fires.extend_from_slice(&missed[missed.len() - n..]);
            }
        }
        let missed_dropped = missed.len() - fires.len();
        if on_time {
            fires.push(latest);
        }
        let overlap = s.rec.spec.overlap;
        // The slot is handled whatever happens to the fires: record it even if none fires.
        let s = self.sched.by_name.get_mut(name).expect("checked");
        s.rec.last_slot = Some(latest);
        fx.writes.push(Write::Schedule(s.rec.clone()));
        if missed_dropped > 0 {
            let why = format!(
                "{missed_dropped} missed slot(s) not fired (misfire {})",
                misfire.as_str()
            );
            self.emit_schedule(now, name, ScheduleChange::Skipped, None, Some(why), fx);
        }
        for slot in fires {
            let running = self
                .sched
                .by_name
                .get(name)
                .and_then(|s| s.rec.last_task)
                .filter(|t| self.tasks.contains_key(t));
            match (overlap, running) {
                (Overlap::Skip, Some(t)) => {
                    let why = format!("previous run {t} still active (overlap skip)");
                    self.emit_schedule(now, name, ScheduleChange::Skipped, None, Some(why), fx);
                    continue;
                }
                (Overlap::Replace, Some(t)) => {
                    let _ = self.cancel(now, t, fx);
                }
                _ => {}
            }
            self.fire(now, name, slot, None, fx);
        }
    }

    /// A task left the active set: a delay-after-previous schedule's next run is now due
    /// after its delay.
    pub(super) fn sched_on_terminal(&mut self, now: Micros, id: TaskId, fx: &mut Effects) {
        if self.sched.by_task.is_empty() {
            return;
        }
        let Some(name) = self.sched.by_task.remove(&id) else {
            return;
        };
        let Some(s) = self.sched.by_name.get_mut(&name) else {
            return;
        };
        if let Trigger::DelayAfterPrevious { delay_ms } = s.rec.spec.trigger {
            if s.rec.last_task == Some(id) {
                s.rec.next_at = Some(now + ms(delay_ms));
                fx.writes.push(Write::Schedule(s.rec.clone()));
                self.arm(&name);
            }
        }
    }
}

/// Slots in `(after, now]`, newest `keep` of them, oldest first.
fn recent_slots(c: &Compiled, after: Micros, now: Micros, keep: usize) -> Vec<Micros> {
    if let Compiled::Every { every_us, anchor } = c {
        // Arithmetic: no walk over a long downtime.
        if now < *anchor {
            return vec![];
        }
        let k_last = (now - anchor) / every_us;
        let k_first = if after < *anchor {
            0
        } else {
            (after - anchor) / every_us + 1
        };
        if k_first > k_last {
            return vec![];
        }
        let from = k_first.max(k_last + 1 - keep as i64);
        return (from..=k_last).map(|k| anchor + k * every_us).collect();
    }
    // Cron: walk forward, keeping a window of the newest; bounded by a generous cap so a
    // per-second expression after a year's downtime cannot stall the core.
    const WALK_CAP: usize = 100_000;
    let mut window = std::collections::VecDeque::with_capacity(keep + 1);
    let mut t = after;
    let mut walked = 0;
    while let Some(n) = c.next_after(t) {
        if n > now {
            break;
        }
        window.push_back(n);
        if window.len() > keep {
            window.pop_front();
        }
        t = n;
        walked += 1;
        if walked >= WALK_CAP {
            break;
        }
    }
    window.into_iter().collect()
}
