//! Schedules through the core with a controllable clock: each overlap and misfire policy,
//! daylight-saving changes, fixed delay, manual runs, backfills, and restarts.

mod harness;

use std::sync::Arc;

use drover_core::schedule::*;
use drover_core::*;
use harness::*;

/// 2026-01-01T00:00:00Z.
const T0: Micros = 1_767_225_600_000_000;
const MIN: i64 = 60_000;

fn bench() -> Bench {
    Bench::from_snapshot(3, T0, Snapshot::default())
}

fn spec(name: &str, trigger: Trigger) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        trigger,
        overlap: Overlap::Allow,
        misfire: Misfire::Skip,
        max_catch_up: 1,
        template: Arc::new(exec_def("cron")),
    }
}

fn cron(expr: &str) -> Trigger {
    Trigger::Cron {
        expr: expr.into(),
        tz: "UTC".into(),
    }
}

fn op(b: &mut Bench, op: ScheduleOp) -> Reply {
    let req = b.fresh_req();
    b.input(Input::Schedule { req, op });
    b.replies
        .iter()
        .rev()
        .find(|(r, _)| *r == req)
        .unwrap()
        .1
        .clone()
}

fn put(b: &mut Bench, s: ScheduleSpec) {
    assert_eq!(op(b, ScheduleOp::Put(s)), Reply::Scheduled(Ok(vec![])));
}

/// Tasks created so far, oldest first.
fn fired(b: &Bench) -> Vec<TaskRecord> {
    let mut v: Vec<TaskRecord> = b.tasks.values().cloned().collect();
    v.sort_by_key(|t| t.seq);
    v
}

fn states(b: &Bench) -> Vec<TaskState> {
    fired(b).iter().map(|t| t.state).collect()
}

#[test]
fn a_cron_schedule_fires_once_per_slot_and_keeps_firing() {
    let mut b = bench();
    put(&mut b, spec("m", cron("* * * * *")));
    assert_eq!(b.core.poll_timeout(), Some(T0 + 60_000_000));
    b.advance_ms(30_000);
    assert!(fired(&b).is_empty());
    b.advance_ms(30_000);
    assert_eq!(fired(&b).len(), 1);
    // A second timeout at the same instant fires nothing more.
    b.advance_ms(0);
    assert_eq!(fired(&b).len(), 1);
    for _ in 0..5 {
        b.advance_ms(MIN);
    }
    assert_eq!(fired(&b).len(), 6);
    let first = &fired(&b)[0];
    assert_eq!(first.created_at, T0 + 60_000_000);
    assert_eq!(
        b.schedules[&Scoped::default_ns("m")].last_slot,
        Some(T0 + 6 * 60_000_000)
    );
    // Six fields: seconds.
    put(&mut b, spec("s", cron("*/20 * * * * *")));
    for _ in 0..3 {
        b.advance_ms(20_000);
    }
    assert_eq!(fired(&b).len(), 6 + 1 + 3);
}

#[test]
fn overlap_skip_queue_replace_allow() {
    // No workers: every fired task stays active (queued).
    for (overlap, expect) in [
        (Overlap::Allow, vec![TaskState::Queued, TaskState::Queued]),
        (Overlap::Skip, vec![TaskState::Queued]),
        (Overlap::Queue, vec![TaskState::Queued, TaskState::Queued]),
        (
            Overlap::Replace,
            vec![TaskState::Cancelled, TaskState::Queued],
        ),
    ] {
        let mut b = bench();
        put(
            &mut b,
            ScheduleSpec {
                overlap,
                ..spec("o", cron("* * * * *"))
            },
        );
        b.advance_ms(MIN);
        b.advance_ms(MIN);
        assert_eq!(states(&b), expect, "{overlap:?}");
        if overlap == Overlap::Queue {
            // The second waits for the first: one worker slot each, in order.
            b.join(1, worker("w", 4, 0));
            let ids: Vec<TaskId> = fired(&b).iter().map(|t| t.id).collect();
            assert_eq!(b.state(ids[0]), TaskState::Assigned);
            assert_eq!(b.state(ids[1]), TaskState::Queued);
            b.run_ok(1, ids[0]);
            assert_eq!(b.state(ids[1]), TaskState::Assigned);
        }
    }
}

#[test]
fn misfire_policies_after_downtime() {
    for (misfire, cap, expect) in [
        (Misfire::Skip, 1, 0),
        (Misfire::RunOnce, 1, 1),
        (Misfire::RunAll, 3, 3),
        (Misfire::RunAll, 100, 10),
    ] {
        let mut b = bench();
        put(
            &mut b,
            ScheduleSpec {
                misfire,
                max_catch_up: cap,
                ..spec("d", cron("* * * * *"))
            },
        );
        // Down for 10.5 minutes: slots 1..=10 were missed.
        let snap = b.snapshot();
        let mut r = Bench::from_snapshot(3, T0 + 10 * 60_000_000 + 30_000_000, snap);
        r.advance_ms(0);
        assert_eq!(fired(&r).len(), expect, "{misfire:?} cap {cap}");
        // The skipped event counts every missed slot not fired, not only the newest ones.
        let skipped: Vec<&str> = r
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Schedule {
                    change: ScheduleChange::Skipped,
                    reason,
                    ..
                } => reason.as_deref(),
                _ => None,
            })
            .collect();
        match 10 - expect {
            0 => assert!(skipped.is_empty(), "{skipped:?}"),
            n => assert_eq!(
                skipped,
                [format!(
                    "{n} missed slot(s) not fired (misfire {})",
                    misfire.as_str()
                )],
                "{misfire:?} cap {cap}"
            ),
        }
        if expect > 0 {
            // The newest missed slots.
            let last = fired(&r).last().unwrap().id;
            assert_eq!(last, fire_id("d", T0 + 10 * 60_000_000, 0));
        }
        // It never stops: the next slot fires on time.
        r.advance_ms(30_000);
        assert_eq!(fired(&r).len(), expect + 1);
    }
}

#[test]
fn a_restart_never_fires_a_slot_twice() {
    let mut b = bench();
    put(&mut b, spec("r", cron("* * * * *")));
    b.advance_ms(MIN);
    assert_eq!(fired(&b).len(), 1);
    // Restart at the same instant, from what was committed.
    let snap = b.snapshot();
    let mut r = Bench::from_snapshot(3, b.now, snap);
    r.tasks = b.tasks.clone();
    r.schedules = b.schedules.clone();
    r.events = b.events.clone();
    r.advance_ms(0);
    assert_eq!(fired(&r).len(), 1);
    r.advance_ms(MIN);
    assert_eq!(fired(&r).len(), 2);
    // A restart before the commit of a fire decides the same slot again with the same task
    // id: the store keeps one.
    assert_eq!(fired(&r)[1].id, fire_id("r", T0 + 2 * 60_000_000, 0));
}

#[test]
fn daylight_saving_in_a_time_zone() {
    // Daily 02:30 Europe/Paris from 2026-03-27 to 2026-03-31 (spring forward on the 29th)
    // and 2026-10-23 to 2026-10-27 (fall back on the 25th): one fire per day at most, never
    // two on the change day.
    for start in [1_774_569_600_000_000i64, 1_792_713_600_000_000] {
        let mut b = Bench::from_snapshot(3, start, Snapshot::default());
        put(
            &mut b,
            spec(
                "dst",
                Trigger::Cron {
                    expr: "30 2 * * *".into(),
                    tz: "Europe/Paris".into(),
                },
            ),
        );
        for _ in 0..(4 * 24 * 4) {
            b.advance_ms(15 * MIN);
        }
        let n = fired(&b).len();
        assert!((3..=4).contains(&n), "{n} fires in 4 days");
        let mut days: Vec<i64> = fired(&b)
            .iter()
            .map(|t| (t.created_at + 3_600_000_000) / 86_400_000_000)
            .collect();
        let len = days.len();
        days.dedup();
        assert_eq!(days.len(), len, "never two fires in one local day");
    }
}

#[test]
fn fixed_rate_and_fixed_delay() {
    let mut b = bench();
    put(
        &mut b,
        spec(
            "rate",
            Trigger::Every {
                every_ms: 90_000,
                anchor: T0,
            },
        ),
    );
    b.advance_ms(90_000);
    b.advance_ms(90_000);
    assert_eq!(fired(&b).len(), 2);
    let mut b = bench();
    b.join(1, worker("w", 4, 0));
    put(
        &mut b,
        spec("delay", Trigger::DelayAfterPrevious { delay_ms: 90_000 }),
    );
    b.advance_ms(0);
    let first = fired(&b)[0].id;
    assert_eq!(b.state(first), TaskState::Assigned);
    // Nothing more while it runs.
    b.advance_ms(1_000);
    assert_eq!(fired(&b).len(), 1);
    b.run_ok(1, first);
    assert_eq!(
        b.schedules[&Scoped::default_ns("delay")].next_at,
        Some(b.now + 90_000_000)
    );
    b.advance_ms(89_000);
    assert_eq!(fired(&b).len(), 1);
    b.join(1, worker("w", 4, 0));
    b.advance_ms(1_000);
    assert_eq!(fired(&b).len(), 2);
}

#[test]
fn pause_resume_delete_run_and_backfill() {
    let mut b = bench();
    put(&mut b, spec("p", cron("* * * * *")));
    assert_eq!(
        op(&mut b, ScheduleOp::Pause(Scoped::default_ns("p"))),
        Reply::Scheduled(Ok(vec![]))
    );
    assert_eq!(b.core.poll_timeout(), None);
    b.advance_ms(3 * MIN);
    assert!(fired(&b).is_empty());
    assert_eq!(
        op(&mut b, ScheduleOp::Resume(Scoped::default_ns("p"))),
        Reply::Scheduled(Ok(vec![]))
    );
    // Slots passed while paused are not fired.
    b.advance_ms(0);
    assert!(fired(&b).is_empty());
    match op(&mut b, ScheduleOp::Run(Scoped::default_ns("p"))) {
        Reply::Scheduled(Ok(ids)) => assert_eq!(ids.len(), 1),
        other => panic!("{other:?}"),
    }
    let r = op(
        &mut b,
        ScheduleOp::Backfill {
            name: Scoped::default_ns("p"),
            from: T0 - 10 * 60_000_000,
            to: T0 - 1,
            skip: vec![T0 - 5 * 60_000_000],
        },
    );
    match r {
        Reply::Scheduled(Ok(ids)) => assert_eq!(ids.len(), 9),
        other => panic!("{other:?}"),
    }
    // A second backfill of the same range names the same (active) tasks: none new.
    let again = op(
        &mut b,
        ScheduleOp::Backfill {
            name: Scoped::default_ns("p"),
            from: T0 - 10 * 60_000_000,
            to: T0 - 1,
            skip: vec![],
        },
    );
    match again {
        Reply::Scheduled(Ok(ids)) => assert_eq!(ids.len(), 1, "only the skipped slot"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        op(&mut b, ScheduleOp::Delete(Scoped::default_ns("p"))),
        Reply::Scheduled(Ok(vec![]))
    );
    assert!(b.schedules.is_empty());
    assert_eq!(
        op(&mut b, ScheduleOp::Run(Scoped::default_ns("p"))),
        Reply::Scheduled(Err(ScheduleError::NotFound("p".into())))
    );
    assert!(matches!(
        op(&mut b, ScheduleOp::Put(spec("bad", cron("61 * * * *")))),
        Reply::Scheduled(Err(ScheduleError::BadTrigger(_)))
    ));
}
