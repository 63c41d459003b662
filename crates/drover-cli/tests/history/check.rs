//! The history checker's rules: pure functions over what a run recorded (the acknowledged
//! submits, the event stream as followed live and as stored, the task commands' own log of
//! attempt starts and ends, each task's final record, the schedules' fired tasks, the leader
//! kills). No I/O here: `tests/history.rs` records, this module judges, and its unit tests
//! below show each rule failing on a hand-made history.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

/// One event as the stream showed it (`data:` of `GET /v1/events`, the fields checked).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub seq: u64,
    /// `task`, `worker`, `workflow`, `schedule`.
    pub kind: String,
    pub state: String,
    pub task_id: Option<String>,
    pub attempt: Option<u32>,
    pub reason: Option<String>,
    pub schedule: Option<String>,
    /// The whole `data:` JSON, so the live and the stored copies can be compared.
    pub raw: String,
}

impl Event {
    /// Parses a `data:` line's JSON.
    pub fn from_json(raw: &str) -> Result<Event, String> {
        let v: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("not JSON ({e}): {raw}"))?;
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Ok(Event {
            seq: v["seq"].as_u64().ok_or_else(|| format!("no seq: {raw}"))?,
            kind: s("type").unwrap_or_default(),
            state: s("state").unwrap_or_default(),
            task_id: s("task_id"),
            attempt: v["attempt"].as_u64().map(|a| a as u32),
            reason: s("reason"),
            schedule: s("schedule"),
            raw: raw.to_string(),
        })
    }

    fn is_task(&self) -> bool {
        self.kind == "task"
    }
}

/// One run of a task command, from the lines it appended to the shared log:
/// `start TASK ATTEMPT NS` and `end TASK ATTEMPT NS RC` (CLOCK_MONOTONIC nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub task: String,
    pub attempt: u32,
    pub start: u64,
    /// When it ended and its exit code; `None`: killed (or still running) before its end.
    pub end: Option<(u64, i32)>,
}

/// Parses the task commands' log into runs; also returns the lines that make no sense.
pub fn parse_runs(text: &str) -> (Vec<Run>, Vec<String>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        match (f.first().copied(), f.get(1), num(2), num(3)) {
            (Some("start"), Some(task), Some(attempt), Some(ns)) if f.len() == 4 => {
                runs.push(Run {
                    task: task.to_string(),
                    attempt: attempt as u32,
                    start: ns,
                    end: None,
                });
            }
            (Some("end"), Some(task), Some(attempt), Some(ns)) if f.len() == 5 => {
                let rc = f[4].parse::<i32>().ok();
                // The latest open start of the same attempt (starts come before ends).
                let open = runs
                    .iter_mut()
                    .rev()
                    .find(|r| r.task == *task && r.attempt == attempt as u32 && r.end.is_none());
                match (open, rc) {
                    (Some(r), Some(rc)) => r.end = Some((ns, rc)),
                    _ => bad.push(line.to_string()),
                }
            }
            _ => bad.push(line.to_string()),
        }
    }
    (runs, bad)
}

/// One attempt of a task's final record (`GET /v1/tasks/{id}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: u32,
    pub worker: String,
    /// succeeded, failed, timed_out, cancelled, lost; `None` while it runs.
    pub outcome: Option<String>,
}

/// A task as the store has it at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Final {
    pub state: String,
    /// The current (last) attempt number.
    pub attempt: u32,
    pub attempts: Vec<Attempt>,
}

impl Final {
    fn outcome(&self, attempt: u32) -> Option<&str> {
        self.attempts
            .iter()
            .find(|a| a.attempt == attempt)
            .and_then(|a| a.outcome.as_deref())
    }
}

/// A task the client was told about (a submit answered with its id, a workflow's node), or
/// that a schedule fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub id: String,
    /// What it was, for the report: `plain`, `retry`, `long`, `workflow`, `cron`.
    pub what: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misfire {
    /// The default: missed slots are not fired (a `skipped` event says how many).
    Skip,
    /// Every missed slot fires late (up to `max_catch_up`).
    RunAll,
}

/// A schedule of the run, and the ids of the tasks the store holds in its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    pub misfire: Misfire,
    pub task_ids: Vec<String>,
}

/// One `kill -9` of the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    pub killed: String,
    /// The wall clock at the kill, ms since the Unix epoch (to place missed cron slots).
    pub at_ms: u64,
    /// Until a member reported a new leader in a higher epoch; `None`: none came.
    pub took: Option<Duration>,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub acked: Vec<Acked>,
    /// Every answer to a submit with an idempotency key: (key, id).
    pub answers: Vec<(String, String)>,
    /// The stored tasks that carry one of the run's idempotency keys: (key, id).
    pub stored_keys: Vec<(String, String)>,
    /// The event stream as followed live (across reconnects), in arrival order.
    pub live: Vec<Event>,
    /// The stored events read once at the end.
    pub stored: Vec<Event>,
    pub runs: Vec<Run>,
    pub finals: HashMap<String, Final>,
    pub schedules: Vec<Schedule>,
    pub failovers: Vec<Failover>,
    /// Each `kill -9` of a worker: its name and when (CLOCK_MONOTONIC ns, the runs' clock).
    /// Its commands die with it (the worker makes the kernel kill them), so a run of that
    /// worker without an end ended by then.
    pub worker_kills: Vec<(String, u64)>,
    /// `--leader-lease`: a standby must lead within it and two seconds (issue 11, point 4).
    pub leader_lease: Duration,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.what)
    }
}

/// What the checks found: figures to print and violations (none: the run passes).
#[derive(Debug, Default)]
pub struct Report {
    pub figures: Vec<String>,
    pub violations: Vec<Violation>,
}

impl Report {
    fn violate(&mut self, rule: &'static str, what: impl Into<String>) {
        self.violations.push(Violation {
            rule,
            what: what.into(),
        });
    }

    fn figure(&mut self, line: impl Into<String>) {
        self.figures.push(line.into());
    }

    /// The violations of one rule.
    pub fn of(&self, rule: &str) -> Vec<&Violation> {
        self.violations.iter().filter(|v| v.rule == rule).collect()
    }
}

pub const TERMINAL: &str = "terminal";
pub const IDEMPOTENT: &str = "idempotent";
pub const ONE_AT_A_TIME: &str = "one-attempt-at-a-time";
pub const RESULTS: &str = "results";
pub const EVENT_SEQ: &str = "event-seq";
pub const CRON: &str = "cron-once-per-slot";
pub const FAILOVER: &str = "failover";

/// Runs every rule.
pub fn check(h: &History) -> Report {
    let mut r = Report::default();
    terminal(h, &mut r);
    idempotent(h, &mut r);
    one_at_a_time(h, &mut r);
    results(h, &mut r);
    event_seq(h, &mut r);
    cron(h, &mut r);
    failover(h, &mut r);
    r
}

pub const TERMINAL_STATES: [&str; 7] = [
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
    "skipped",
    "expired",
    "dead",
];

fn is_terminal(state: &str) -> bool {
    TERMINAL_STATES.contains(&state)
}

/// Every acknowledged task ended, succeeded (every task of the run has retries enough), and
/// the stream agrees: its last event is that state, and nothing follows a terminal event.
fn terminal(h: &History, r: &mut Report) {
    let mut by_what: BTreeMap<&str, usize> = BTreeMap::new();
    let last_event = task_events(&h.live);
    for a in &h.acked {
        *by_what.entry(a.what.as_str()).or_default() += 1;
        let Some(f) = h.finals.get(&a.id) else {
            r.violate(
                TERMINAL,
                format!("{} task {} is not in the store", a.what, a.id),
            );
            continue;
        };
        if !is_terminal(&f.state) {
            r.violate(
                TERMINAL,
                format!("{} task {} never ended: {}", a.what, a.id, f.state),
            );
        } else if f.state != "succeeded" {
            r.violate(
                TERMINAL,
                format!("{} task {} ended {}, not succeeded", a.what, a.id, f.state),
            );
        }
        match last_event.get(a.id.as_str()) {
            None => r.violate(TERMINAL, format!("task {}: no event in the stream", a.id)),
            Some(evs) => {
                let last = evs.last().expect("a task's events");
                if last.state != f.state {
                    r.violate(
                        TERMINAL,
                        format!(
                            "task {}: the stream's last event says {} (seq {}), the store {}",
                            a.id, last.state, last.seq, f.state
                        ),
                    );
                }
                if let Some(end) = evs.iter().position(|e| is_terminal(&e.state)) {
                    if let Some(after) = evs.get(end + 1) {
                        r.violate(
                            TERMINAL,
                            format!(
                                "task {} moved on after it ended {} (seq {}): {} at seq {}",
                                a.id, evs[end].state, evs[end].seq, after.state, after.seq
                            ),
                        );
                    }
                }
            }
        }
    }
    let ended = h
        .acked
        .iter()
        .filter(|a| h.finals.get(&a.id).is_some_and(|f| f.state == "succeeded"))
        .count();
    let kinds: Vec<String> = by_what.iter().map(|(k, n)| format!("{k} {n}")).collect();
    r.figure(format!(
        "tasks: {} acknowledged or fired ({}), {ended} succeeded",
        h.acked.len(),
        kinds.join(", ")
    ));
}

/// Task events of the stream by task, in order.
fn task_events(events: &[Event]) -> HashMap<&str, Vec<&Event>> {
    let mut m: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events.iter().filter(|e| e.is_task()) {
        if let Some(t) = &e.task_id {
            m.entry(t.as_str()).or_default().push(e);
        }
    }
    m
}

/// One idempotency key, one task: every answer for a key names the same id, and the store
/// holds one task per key.
fn idempotent(h: &History, r: &mut Report) {
    let mut answered: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (k, id) in &h.answers {
        answered.entry(k).or_default().insert(id);
    }
    for (k, ids) in answered.iter().filter(|(_, ids)| ids.len() > 1) {
        r.violate(IDEMPOTENT, format!("key {k} was answered with {ids:?}"));
    }
    let mut stored: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (k, id) in &h.stored_keys {
        stored.entry(k).or_default().insert(id);
    }
    for (k, ids) in stored.iter().filter(|(_, ids)| ids.len() > 1) {
        r.violate(
            IDEMPOTENT,
            format!("key {k} has {} tasks: {ids:?}", ids.len()),
        );
    }
    let repeated = h.answers.len() - answered.len();
    r.figure(format!(
        "idempotency: {} keys answered ({repeated} answered again after a retry), {} stored",
        answered.len(),
        stored.len()
    ));
}

/// No task has two attempts running at once, by the task commands' own clock, unless the
/// first one's lease expired in between: then the store records it `lost` (its result, if
/// it ever came, was refused) and the task's final attempt is a later one.
fn one_at_a_time(h: &History, r: &mut Report) {
    let mut by_task: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in &h.runs {
        by_task.entry(&run.task).or_default().push(run);
    }
    let mut overlaps_allowed = 0;
    for (task, mut runs) in by_task {
        runs.sort_by_key(|x| x.start);
        let f = h.finals.get(task);
        for (j, b) in runs.iter().enumerate() {
            for a in &runs[..j] {
                if ended_by(h, f, a) <= b.start {
                    continue;
                }
                if a.attempt == b.attempt {
                    r.violate(
                        ONE_AT_A_TIME,
                        format!("task {task}: attempt {} ran twice at once", a.attempt),
                    );
                    continue;
                }
                let lost = f.and_then(|f| f.outcome(a.attempt)) == Some("lost");
                let later_final = f.is_some_and(|f| f.attempt >= b.attempt);
                if a.attempt < b.attempt && lost && later_final {
                    overlaps_allowed += 1;
                } else {
                    let outcome = f.and_then(|f| f.outcome(a.attempt)).unwrap_or("none");
                    r.violate(
                        ONE_AT_A_TIME,
                        format!(
                            "task {task}: attempt {} started while attempt {} still ran \
                             (attempt {}'s outcome: {outcome}; final attempt: {})",
                            b.attempt,
                            a.attempt,
                            a.attempt,
                            f.map_or(0, |f| f.attempt)
                        ),
                    );
                }
            }
        }
    }
    let ended = h.runs.iter().filter(|x| x.end.is_some()).count();
    r.figure(format!(
        "attempts run: {} started, {ended} ran to their end, {} killed or orphaned without an \
         end; {overlaps_allowed} overlapped an attempt whose lease had expired (allowed)",
        h.runs.len(),
        h.runs.len() - ended
    ));
}

/// When run `a` ended at the latest: its logged end, else the first kill of its attempt's
/// worker after it started, else never (as far as anyone knows).
fn ended_by(h: &History, f: Option<&Final>, a: &Run) -> u64 {
    if let Some((end, _)) = a.end {
        return end;
    }
    let worker = f.and_then(|f| f.attempts.iter().find(|x| x.attempt == a.attempt));
    h.worker_kills
        .iter()
        .filter(|(w, at)| worker.is_some_and(|x| x.worker == *w) && *at >= a.start)
        .map(|(_, at)| *at)
        .min()
        .unwrap_or(u64::MAX)
}

/// Each result the store took came from the run that produced it: an attempt recorded
/// `succeeded` (`failed`) ran to its end with exit code 0 (non-zero), and a succeeded task's
/// final attempt is that attempt. Counted, not violations: attempts that finished without a
/// `running` event (the worker's start report was lost with a dying leader; its result
/// reached the next one), and attempts that ran to their end but are recorded `lost` (their
/// lease ran out first, so their result was refused and the task ran again).
fn results(h: &History, r: &mut Report) {
    let mut runs: HashMap<(&str, u32), Vec<&Run>> = HashMap::new();
    for run in &h.runs {
        runs.entry((&run.task, run.attempt)).or_default().push(run);
    }
    let mut running: BTreeSet<(&str, u32)> = BTreeSet::new();
    for e in h
        .live
        .iter()
        .filter(|e| e.is_task() && e.state == "running")
    {
        if let (Some(t), Some(a)) = (&e.task_id, e.attempt) {
            running.insert((t, a));
        }
    }
    let mut ids: Vec<&String> = h.finals.keys().collect();
    ids.sort();
    let mut retried = 0;
    let (mut unstarted, mut refused) = (0, 0);
    for id in ids {
        let f = &h.finals[id];
        if f.attempts.len() > 1 {
            retried += 1;
        }
        for a in &f.attempts {
            let want = match a.outcome.as_deref() {
                Some("succeeded") => 0,
                Some("failed") => 1,
                Some("lost") => {
                    let key = (id.as_str(), a.attempt);
                    if runs
                        .get(&key)
                        .into_iter()
                        .flatten()
                        .any(|x| x.end.is_some())
                    {
                        refused += 1;
                    }
                    continue;
                }
                _ => continue,
            };
            let ended: Vec<i32> = runs
                .get(&(id.as_str(), a.attempt))
                .into_iter()
                .flatten()
                .filter_map(|x| x.end.map(|(_, rc)| rc))
                .collect();
            let agrees = |rc: &i32| (*rc == 0) == (want == 0);
            if !ended.iter().any(agrees) {
                r.violate(
                    RESULTS,
                    format!(
                        "task {id}: attempt {} is recorded {} but its command's ends say {ended:?}",
                        a.attempt,
                        a.outcome.as_deref().unwrap_or("")
                    ),
                );
            }
            if !running.contains(&(id.as_str(), a.attempt)) {
                unstarted += 1;
            }
        }
        if f.state == "succeeded" && f.outcome(f.attempt) != Some("succeeded") {
            r.violate(
                RESULTS,
                format!(
                    "task {id} succeeded but its final attempt {} is recorded {:?}",
                    f.attempt,
                    f.outcome(f.attempt)
                ),
            );
        }
    }
    r.figure(format!(
        "tasks with more than one attempt: {retried} of {}; attempts that finished without a \
         running event (the start report died with a leader): {unstarted}; attempts that ran to \
         their end but whose result was refused (lease expired first; the task ran again): \
         {refused}",
        h.finals.len()
    ));
}

/// The stream's sequence numbers go up by one from 1, live across reconnects and failovers,
/// and what was seen live is exactly what the store keeps.
fn event_seq(h: &History, r: &mut Report) {
    gapless("live", &h.live, r);
    gapless("stored", &h.stored, r);
    if h.live.len() != h.stored.len() {
        r.violate(
            EVENT_SEQ,
            format!(
                "the live stream saw {} events, the store holds {}",
                h.live.len(),
                h.stored.len()
            ),
        );
    }
    let differ: Vec<u64> = h
        .live
        .iter()
        .zip(&h.stored)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.seq)
        .take(10)
        .collect();
    if !differ.is_empty() {
        r.violate(
            EVENT_SEQ,
            format!("the live and the stored event differ at seqs {differ:?} (first ten)"),
        );
    }
    r.figure(format!(
        "events: {} live (seq {}..={}), {} stored",
        h.live.len(),
        h.live.first().map_or(0, |e| e.seq),
        h.live.last().map_or(0, |e| e.seq),
        h.stored.len()
    ));
}

fn gapless(which: &str, events: &[Event], r: &mut Report) {
    let mut expected = 1;
    let mut broken = Vec::new();
    for e in events {
        if e.seq != expected {
            broken.push(format!("{} after {}", e.seq, expected - 1));
        }
        expected = e.seq + 1;
    }
    if !broken.is_empty() {
        let n = broken.len();
        broken.truncate(10);
        r.violate(
            EVENT_SEQ,
            format!(
                "the {which} events are not 1, 2, 3, ...: {n} break(s): {}",
                broken.join(", ")
            ),
        );
    }
}

/// A fired task's slot: the millisecond timestamp in its id's first 48 bits.
pub fn slot_ms(id: &str) -> Option<u64> {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    (hex.len() == 12)
        .then(|| u64::from_str_radix(&hex, 16).ok())
        .flatten()
}

/// How many slots a `skipped` event says it dropped ("3 missed slot(s) not fired ...").
fn dropped(reason: &str) -> Option<u64> {
    reason.split_whitespace().next()?.parse().ok()
}

/// Each cron slot fired at most once (the schedule's tasks grouped by the slot in their id),
/// the fired events name the same slots, and every slot between the first and the last fire
/// fired, or (misfire `skip`) a `skipped` event since the previous fire says slots were
/// missed. Missed slots are placed against the failover windows.
fn cron(h: &History, r: &mut Report) {
    for s in &h.schedules {
        let mut slots: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for id in &s.task_ids {
            match slot_ms(id) {
                Some(ms) => slots.entry(ms).or_default().push(id),
                None => r.violate(CRON, format!("{}: {id} is not a UUIDv7", s.name)),
            }
        }
        for (ms, ids) in slots.iter().filter(|(_, ids)| ids.len() > 1) {
            r.violate(
                CRON,
                format!("{}: slot {ms} fired {} times: {ids:?}", s.name, ids.len()),
            );
        }
        for ms in slots.keys().filter(|ms| *ms % 1000 != 0) {
            r.violate(CRON, format!("{}: {ms} is not a whole second", s.name));
        }
        let fired = fired_events(h, &s.name);
        let from_events: BTreeSet<u64> = fired.iter().filter_map(|(_, ms)| *ms).collect();
        let from_store: BTreeSet<u64> = slots.keys().copied().collect();
        if from_events != from_store {
            let only_ev: Vec<_> = from_events.difference(&from_store).take(5).collect();
            let only_st: Vec<_> = from_store.difference(&from_events).take(5).collect();
            r.violate(
                CRON,
                format!(
                    "{}: the fired events and the stored tasks name different slots (only \
                     events: {only_ev:?}, only stored: {only_st:?})",
                    s.name
                ),
            );
        }
        let (missed, said) = misses(h, s, r);
        let (first, last) = (
            slots.keys().next().copied().unwrap_or(0),
            slots.keys().last().copied().unwrap_or(0),
        );
        let span = if slots.is_empty() {
            0
        } else {
            (last - first) / 1000 + 1
        };
        let in_failover = missed.iter().filter(|ms| near_failover(h, **ms)).count();
        r.figure(format!(
            "cron {} (misfire {}): {} slots from first to last fire, {} fired, {} missed \
             ({in_failover} of them within a failover window; skipped events said {said})",
            s.name,
            match s.misfire {
                Misfire::Skip => "skip",
                Misfire::RunAll => "run_all",
            },
            span,
            slots.len(),
            missed.len()
        ));
    }
}

/// The schedule's `fired` events (seq, slot) and `skipped` ones (slot `None`), in order.
fn fired_events<'a>(h: &'a History, name: &str) -> Vec<(&'a Event, Option<u64>)> {
    h.live
        .iter()
        .filter(|e| e.kind == "schedule" && e.schedule.as_deref() == Some(name))
        .filter(|e| e.state == "fired" || e.state == "skipped")
        .map(|e| {
            let slot = (e.state == "fired")
                .then(|| e.task_id.as_deref().and_then(slot_ms))
                .flatten();
            (e, slot)
        })
        .collect()
}

/// The slots between fires that did not fire, and how many the `skipped` events said were
/// dropped; violations for those the policy should have fired.
fn misses(h: &History, s: &Schedule, r: &mut Report) -> (Vec<u64>, u64) {
    let mut missed = Vec::new();
    let mut said_total = 0;
    let mut prev: Option<u64> = None;
    let mut said: Vec<u64> = Vec::new();
    for (e, slot) in fired_events(h, &s.name) {
        let Some(slot) = slot else {
            let n = e.reason.as_deref().and_then(dropped).unwrap_or(0);
            said_total += n;
            said.push(n);
            continue;
        };
        if let Some(p) = prev.filter(|p| slot > p + 1000) {
            let gap: Vec<u64> = (1..(slot - p) / 1000).map(|k| p + k * 1000).collect();
            let n = gap.len() as u64;
            match s.misfire {
                Misfire::RunAll => r.violate(
                    CRON,
                    format!(
                        "{}: {n} slot(s) from {} never fired, though misfire run_all fires \
                         every missed slot",
                        s.name, gap[0]
                    ),
                ),
                Misfire::Skip if said.is_empty() => r.violate(
                    CRON,
                    format!(
                        "{}: {n} slot(s) from {} never fired and no skipped event says so \
                         (fire at seq {})",
                        s.name, gap[0], e.seq
                    ),
                ),
                Misfire::Skip => {
                    let told: u64 = said.iter().sum();
                    if told != n {
                        r.figure(format!(
                            "note: {}: {n} slot(s) from {} were missed, the skipped event(s) \
                             before the next fire (seq {}) said {told}",
                            s.name, gap[0], e.seq
                        ));
                    }
                }
            }
            missed.extend(gap);
        }
        prev = Some(prev.map_or(slot, |p| p.max(slot)));
        said.clear();
    }
    (missed, said_total)
}

/// Whether a slot lies between a leader kill and a new leader (plus a second of slack).
fn near_failover(h: &History, ms: u64) -> bool {
    h.failovers.iter().any(|f| {
        let took = f.took.unwrap_or(Duration::from_secs(60)).as_millis() as u64;
        ms + 1000 >= f.at_ms && ms <= f.at_ms + took + 1000
    })
}

/// Each leader kill was followed by a new leader in a higher epoch, within the lease and two
/// seconds; the times as a distribution.
fn failover(h: &History, r: &mut Report) {
    let bound = h.leader_lease + Duration::from_secs(2);
    let mut took: Vec<Duration> = Vec::new();
    for (i, f) in h.failovers.iter().enumerate() {
        match f.took {
            None => r.violate(
                FAILOVER,
                format!("kill {} ({}): no new leader came", i + 1, f.killed),
            ),
            Some(t) => {
                if t > bound {
                    r.violate(
                        FAILOVER,
                        format!(
                            "kill {} ({}): a new leader after {t:?}, more than the lease and 2 s \
                             ({bound:?})",
                            i + 1,
                            f.killed
                        ),
                    );
                }
                took.push(t);
            }
        }
    }
    took.sort();
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let summary = match (took.first(), took.last()) {
        (Some(&min), Some(&max)) => format!(
            "min {} median {} p90 {} max {}",
            ms(min),
            ms(percentile(&took, 50)),
            ms(percentile(&took, 90)),
            ms(max)
        ),
        _ => "none".to_string(),
    };
    let all: Vec<String> = h
        .failovers
        .iter()
        .map(|f| f.took.map_or("-".into(), ms))
        .collect();
    r.figure(format!(
        "failover (kill -9 of the leader -> a new leader in a higher epoch), {} kills: {summary} \
         [{}]",
        h.failovers.len(),
        all.join(", ")
    ));
}

/// Nearest-rank percentile of a sorted, non-empty slice.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "01900000-0000-7000-8000-000000000001";

    fn ev(seq: u64, state: &str, attempt: Option<u32>) -> Event {
        Event {
            seq,
            kind: "task".into(),
            state: state.into(),
            task_id: Some(T.into()),
            attempt,
            raw: format!("{seq}"),
            ..Event::default()
        }
    }

    fn attempt(n: u32, outcome: &str) -> Attempt {
        Attempt {
            attempt: n,
            worker: format!("w{n}"),
            outcome: Some(outcome.into()),
        }
    }

    fn run(attempt: u32, start: u64, end: Option<(u64, i32)>) -> Run {
        Run {
            task: T.into(),
            attempt,
            start,
            end,
        }
    }

    /// A clean history: one task, failed once then succeeded; a schedule firing three slots.
    fn good() -> History {
        let live = vec![
            ev(1, "queued", None),
            ev(2, "assigned", Some(1)),
            ev(3, "running", Some(1)),
            ev(4, "pending", Some(1)),
            ev(5, "queued", Some(1)),
            ev(6, "assigned", Some(2)),
            ev(7, "running", Some(2)),
            ev(8, "succeeded", Some(2)),
        ];
        History {
            acked: vec![Acked {
                id: T.into(),
                what: "retry".into(),
            }],
            answers: vec![("k1".into(), T.into()), ("k1".into(), T.into())],
            stored_keys: vec![("k1".into(), T.into())],
            stored: live.clone(),
            live,
            runs: vec![run(1, 10, Some((20, 3))), run(2, 30, Some((40, 0)))],
            finals: HashMap::from([(
                T.to_string(),
                Final {
                    state: "succeeded".into(),
                    attempt: 2,
                    attempts: vec![attempt(1, "failed"), attempt(2, "succeeded")],
                },
            )]),
            schedules: vec![],
            failovers: vec![Failover {
                killed: "a".into(),
                at_ms: 1_000_000,
                took: Some(Duration::from_millis(2500)),
            }],
            worker_kills: vec![],
            leader_lease: Duration::from_secs(2),
        }
    }

    fn only(r: &Report, rule: &str) {
        assert!(
            !r.of(rule).is_empty(),
            "{rule} should fail: {:?}",
            r.violations
        );
        let others: Vec<_> = r.violations.iter().filter(|v| v.rule != rule).collect();
        assert!(others.is_empty(), "only {rule} should fail: {others:?}");
    }

    #[test]
    fn a_clean_history_passes() {
        let r = check(&good());
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert!(r.figures.iter().any(|f| f.contains("min 2500ms")));
    }

    #[test]
    fn parses_the_commands_log() {
        let (runs, bad) = parse_runs(&format!(
            "start {T} 1 100\nstart {T} 2 150\nend {T} 1 200 3\nend {T} 9 1 0\nnonsense\n"
        ));
        assert_eq!(runs, [run(1, 100, Some((200, 3))), run(2, 150, None)]);
        assert_eq!(bad.len(), 2, "{bad:?}");
    }

    #[test]
    fn a_task_that_never_ended_or_failed_breaks_terminal() {
        let mut h = good();
        h.finals.get_mut(T).unwrap().state = "running".into();
        h.live.truncate(7);
        h.stored.truncate(7);
        let r = check(&h);
        assert!(!r.of(TERMINAL).is_empty(), "{:?}", r.violations);

        let mut h = good();
        h.acked.push(Acked {
            id: "01900000-0000-7000-8000-0000000000ff".into(),
            what: "plain".into(),
        });
        only(&check(&h), TERMINAL);

        let mut h = good();
        h.finals.get_mut(T).unwrap().state = "dead".into();
        h.finals.get_mut(T).unwrap().attempts[1].outcome = Some("lost".into());
        assert!(!check(&h).of(TERMINAL).is_empty());
    }

    #[test]
    fn a_task_moving_on_after_its_end_breaks_terminal() {
        let mut h = good();
        for list in [&mut h.live, &mut h.stored] {
            list.insert(4, ev(5, "succeeded", Some(1)));
            for (i, e) in list.iter_mut().enumerate() {
                e.seq = i as u64 + 1;
                e.raw = e.seq.to_string();
            }
        }
        only(&check(&h), TERMINAL);
    }

    #[test]
    fn one_key_two_tasks_breaks_idempotency() {
        let mut h = good();
        h.answers.push(("k1".into(), "other".into()));
        only(&check(&h), IDEMPOTENT);
        let mut h = good();
        h.stored_keys.push(("k1".into(), "other".into()));
        only(&check(&h), IDEMPOTENT);
    }

    #[test]
    fn overlapping_attempts_break_the_rule_unless_the_first_was_lost() {
        // Attempt 2 starts before attempt 1 ended, and attempt 1 was not lost.
        let mut h = good();
        h.runs = vec![run(1, 10, Some((35, 3))), run(2, 30, Some((40, 0)))];
        only(&check(&h), ONE_AT_A_TIME);

        // The same attempt twice at once.
        let mut h = good();
        h.runs.push(run(2, 32, Some((41, 0))));
        assert!(!check(&h).of(ONE_AT_A_TIME).is_empty());

        // Attempt 1 lost its lease (its orphan ran on, its result never counted): allowed.
        let mut h = good();
        h.runs = vec![run(1, 10, None), run(2, 30, Some((40, 0)))];
        h.finals.get_mut(T).unwrap().attempts[0].outcome = Some("lost".into());
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert!(r.figures.iter().any(|f| f.contains("1 overlapped")));

        // Its worker was killed before attempt 2 started: its command died with it.
        h.worker_kills.push(("w1".into(), 25));
        let r = check(&h);
        assert!(
            r.figures.iter().any(|f| f.contains("0 overlapped")),
            "{:?}",
            r.figures
        );
        h.worker_kills.clear();

        // Lost, but the final result is the old attempt's: not allowed.
        h.finals.get_mut(T).unwrap().attempt = 1;
        assert!(!check(&h).of(ONE_AT_A_TIME).is_empty());
    }

    #[test]
    fn a_result_no_command_produced_breaks_results() {
        let mut h = good();
        h.runs[1].end = Some((40, 3));
        only(&check(&h), RESULTS);
        let mut h = good();
        h.runs.pop();
        only(&check(&h), RESULTS);
        let mut h = good();
        h.finals.get_mut(T).unwrap().attempt = 1;
        only(&check(&h), RESULTS);
    }

    #[test]
    fn gaps_duplicates_and_differences_break_the_event_sequence() {
        let mut h = good();
        h.live.remove(3);
        only(&check(&h), EVENT_SEQ);
        let mut h = good();
        let dup = h.live[2].clone();
        h.live.insert(3, dup);
        only(&check(&h), EVENT_SEQ);
        let mut h = good();
        h.stored[5].raw = "changed".into();
        only(&check(&h), EVENT_SEQ);
    }

    fn fired(seq: u64, name: &str, id: &str) -> Event {
        Event {
            seq,
            kind: "schedule".into(),
            state: "fired".into(),
            task_id: Some(id.into()),
            schedule: Some(name.into()),
            raw: seq.to_string(),
            ..Event::default()
        }
    }

    fn skipped(seq: u64, name: &str, n: u64) -> Event {
        Event {
            seq,
            kind: "schedule".into(),
            state: "skipped".into(),
            schedule: Some(name.into()),
            reason: Some(format!("{n} missed slot(s) not fired (misfire skip)")),
            raw: seq.to_string(),
            ..Event::default()
        }
    }

    /// A fire's id at `ms` (the salt in the low bits).
    fn fire_id(ms: u64, salt: u8) -> String {
        let hex = format!("{ms:012x}");
        format!("{}-{}-7000-8000-0000000000{salt:02x}", &hex[..8], &hex[8..])
    }

    /// `good()` plus a schedule whose fires (and skips) are the given events.
    fn with_cron(misfire: Misfire, events: Vec<(u64, Option<u8>)>) -> History {
        let mut h = good();
        let mut ids = Vec::new();
        for (ms, salt) in events {
            let seq = h.live.len() as u64 + 1;
            let e = match salt {
                Some(salt) => {
                    let id = fire_id(ms, salt);
                    ids.push(id.clone());
                    fired(seq, "tick", &id)
                }
                None => skipped(seq, "tick", ms),
            };
            h.live.push(e.clone());
            h.stored.push(e);
        }
        h.schedules.push(Schedule {
            name: "tick".into(),
            misfire,
            task_ids: ids,
        });
        h
    }

    #[test]
    fn a_slot_fired_twice_breaks_cron() {
        let h = with_cron(
            Misfire::Skip,
            vec![
                (1_000_000, Some(0)),
                (1_001_000, Some(0)),
                (1_001_000, Some(1)),
            ],
        );
        only(&check(&h), CRON);
    }

    #[test]
    fn missed_slots_need_the_policy_to_allow_them() {
        let ok = with_cron(
            Misfire::RunAll,
            vec![(1_000_000, Some(0)), (1_001_000, Some(0))],
        );
        assert!(check(&ok).violations.is_empty());
        // run_all fires every slot: a gap breaks the rule.
        let h = with_cron(
            Misfire::RunAll,
            vec![(1_000_000, Some(0)), (1_003_000, Some(0))],
        );
        only(&check(&h), CRON);
        // skip: a gap with no skipped event before the next fire breaks it too.
        let h = with_cron(
            Misfire::Skip,
            vec![(1_000_000, Some(0)), (1_003_000, Some(0))],
        );
        only(&check(&h), CRON);
        // skip: a skipped event accounts for the gap (misses reported, inside the failover).
        let h = with_cron(
            Misfire::Skip,
            vec![(1_000_000, Some(0)), (2, None), (1_003_000, Some(0))],
        );
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let line = r
            .figures
            .iter()
            .find(|f| f.starts_with("cron tick"))
            .unwrap();
        assert!(
            line.contains("2 missed (2 of them within a failover"),
            "{line}"
        );
        assert!(line.contains("skipped events said 2"), "{line}");
        // A skipped event that says fewer slots than were missed is noted, not a violation.
        let h = with_cron(
            Misfire::Skip,
            vec![(1_000_000, Some(0)), (1, None), (1_003_000, Some(0))],
        );
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert!(
            r.figures
                .iter()
                .any(|f| f.contains("2 slot(s) from 1001000 were missed") && f.contains("said 1")),
            "{:?}",
            r.figures
        );
    }

    #[test]
    fn fired_events_and_stored_tasks_must_agree() {
        let mut h = with_cron(
            Misfire::RunAll,
            vec![(1_000_000, Some(0)), (1_001_000, Some(0))],
        );
        h.schedules[0].task_ids.pop();
        only(&check(&h), CRON);
    }

    #[test]
    fn a_missing_or_slow_leader_breaks_failover() {
        let mut h = good();
        h.failovers[0].took = None;
        only(&check(&h), FAILOVER);
        let mut h = good();
        h.failovers[0].took = Some(Duration::from_secs(5));
        only(&check(&h), FAILOVER);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let d: Vec<Duration> = (1..=10).map(Duration::from_secs).collect();
        assert_eq!(percentile(&d, 50), Duration::from_secs(5));
        assert_eq!(percentile(&d, 90), Duration::from_secs(9));
        assert_eq!(percentile(&d[..1], 90), Duration::from_secs(1));
    }

    #[test]
    fn slots_from_ids() {
        assert_eq!(
            slot_ms(&fire_id(1_733_000_000_000, 3)),
            Some(1_733_000_000_000)
        );
        assert_eq!(slot_ms("nope"), None);
    }
}
