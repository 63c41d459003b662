//! Schedules: cron expressions (5 or 6 fields, with seconds) in a time zone, fixed rate
//! (`--every`), fixed delay after the previous run (`--delay-after-previous`); overlap and
//! misfire policies. Pure: slot computation is a function of the expression and a time.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

use crate::model::{Micros, TaskDef, TaskId};

/// A slot this much older than `now` is a misfire (the server was down or stalled).
pub const MISFIRE_GRACE_US: Micros = 5_000_000;
/// Most slots fired by one backfill.
pub const MAX_BACKFILL: usize = 1_000;
/// Most missed slots `run_all` fires (and the cap of `max_catch_up`).
pub const MAX_CATCH_UP: u32 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A cron expression in a time zone (IANA name, e.g. `Europe/Paris`; `UTC` by default).
    Cron { expr: String, tz: String },
    /// Fixed rate: slots at `anchor + k * every`.
    Every { every_ms: u64, anchor: Micros },
    /// Fixed delay: the next run is due this long after the previous one ended.
    DelayAfterPrevious { delay_ms: u64 },
}

macro_rules! policy_enum {
    ($name:ident { $($v:ident = $s:literal),* $(,)? } default $d:ident) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        pub enum $name { #[default] $d, $($v),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$name::$d, $($name::$v),*];

            pub fn as_str(self) -> &'static str {
                match self { $name::$d => policy_enum!(@s $d), $($name::$v => $s),* }
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                [$name::$d, $($name::$v),*]
                    .into_iter()
                    .find(|p| p.as_str() == s)
                    .ok_or_else(|| format!(
                        "'{s}' is not one of: {}",
                        [$name::$d, $($name::$v),*].iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                    ))
            }
        }
    };
    (@s Allow) => { "allow" };
    (@s Skip) => { "skip" };
}

policy_enum!(Overlap { Skip = "skip", Queue = "queue", Replace = "replace" } default Allow);
policy_enum!(Misfire { RunOnce = "run_once", RunAll = "run_all" } default Skip);

/// A schedule as configured (`drover cron add`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub name: String,
    pub trigger: Trigger,
    pub overlap: Overlap,
    pub misfire: Misfire,
    /// Cap of missed slots fired by `run_all`.
    pub max_catch_up: u32,
    /// The task each fire submits.
    pub template: Arc<TaskDef>,
}

impl ScheduleSpec {
    /// A schedule belongs to its template's namespace; its name is unique there.
    pub fn namespace(&self) -> &str {
        &self.template.namespace
    }

    pub fn key(&self) -> crate::model::Scoped {
        crate::model::Scoped::new(self.namespace(), &self.name)
    }
}

/// The durable state of a schedule (`Write::Schedule`), written in the same transaction as
/// the task a fire creates: at most one fire per (schedule, slot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub spec: ScheduleSpec,
    pub paused: bool,
    pub created_at: Micros,
    /// The latest slot handled (fired, skipped or missed). Slots after it are still due.
    pub last_slot: Option<Micros>,
    /// The task of the latest fire.
    pub last_task: Option<TaskId>,
    /// `DelayAfterPrevious`: when the next run is due (None while the previous one runs).
    pub next_at: Option<Micros>,
}

/// A parsed trigger, ready to compute slots.
pub enum Compiled {
    Cron(Box<Cron>, chrono_tz::Tz),
    Every { every_us: Micros, anchor: Micros },
    Delay,
}

/// Parses a cron expression: 5 fields (minute precision) or 6 (with seconds first).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let n = expr.split_whitespace().count();
    if !(n == 5 || n == 6 || expr.trim_start().starts_with('@')) {
        return Err(format!(
            "'{expr}' has {n} fields; a cron expression has 5 (min hour dom month dow) or 6 \
             (sec min hour dom month dow)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| format!("'{expr}' is not a valid cron expression: {e}"))
}

/// Every name [`parse_tz`] accepts.
pub fn time_zones() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

pub fn parse_tz(tz: &str) -> Result<chrono_tz::Tz, String> {
    tz.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("'{tz}' is not a time zone; use an IANA name such as Europe/Paris or UTC")
    })
}

impl Trigger {
    pub fn compile(&self) -> Result<Compiled, String> {
        match self {
            Trigger::Cron { expr, tz } => {
                Ok(Compiled::Cron(Box::new(parse_cron(expr)?), parse_tz(tz)?))
            }
            Trigger::Every { every_ms, anchor } => {
                if *every_ms == 0 {
                    return Err("the interval must be positive".into());
                }
                Ok(Compiled::Every {
                    every_us: (*every_ms as i64).saturating_mul(1000),
                    anchor: *anchor,
                })
            }
            Trigger::DelayAfterPrevious { delay_ms } => {
                if *delay_ms == 0 {
                    return Err("the delay must be positive".into());
                }
                Ok(Compiled::Delay)
            }
        }
    }
}

impl Compiled {
    /// The first slot strictly after `t` (None for delay-after-previous schedules, or an
    /// expression that never matches again).
    pub fn next_after(&self, t: Micros) -> Option<Micros> {
        match self {
            Compiled::Cron(cron, tz) => {
                let utc = Utc.timestamp_micros(t).single()?;
                let local = utc.with_timezone(tz);
                let next = cron.find_next_occurrence(&local, false).ok()?;
                Some(next.with_timezone(&Utc).timestamp_micros())
            }
            Compiled::Every { every_us, anchor } => {
                if t < *anchor {
                    return Some(*anchor);
                }
                let k = (t - anchor) / every_us + 1;
                Some(anchor + k * every_us)
            }
            Compiled::Delay => None,
        }
    }

    /// Slots in `(after, until]`, at most `cap` of them, oldest first; and whether there
    /// were more.
    pub fn slots(&self, after: Micros, until: Micros, cap: usize) -> (Vec<Micros>, bool) {
        let mut out = Vec::new();
        let mut t = after;
        while let Some(n) = self.next_after(t) {
            if n > until {
                return (out, false);
            }
            if out.len() == cap {
                return (out, true);
            }
            out.push(n);
            t = n;
        }
        (out, false)
    }
}

impl Compiled {
    /// Slots in `(after, now]`: the newest `keep` of them, oldest first, and how many there
    /// are in all (a count that stops at the walk's cap). Bounded work: a fixed rate is
    /// arithmetic, a cron walk stops after a generous cap, so a per-second expression after a
    /// year's downtime cannot stall the core.
    pub fn recent_slots(&self, after: Micros, now: Micros, keep: usize) -> (Vec<Micros>, usize) {
        if let Compiled::Every { every_us, anchor } = self {
            if now < *anchor {
                return (vec![], 0);
            }
            let k_last = (now - anchor) / every_us;
            let k_first = if after < *anchor {
                0
            } else {
                (after - anchor) / every_us + 1
            };
            if k_first > k_last {
                return (vec![], 0);
            }
            let from = k_first.max(k_last + 1 - keep as i64);
            let all = usize::try_from(k_last - k_first + 1).unwrap_or(usize::MAX);
            return (
                (from..=k_last).map(|k| anchor + k * every_us).collect(),
                all,
            );
        }
        const WALK_CAP: usize = 100_000;
        let mut window = std::collections::VecDeque::with_capacity(keep + 1);
        let mut t = after;
        let mut all = 0;
        for _ in 0..WALK_CAP {
            let Some(n) = self.next_after(t).filter(|n| *n <= now) else {
                break;
            };
            all += 1;
            window.push_back(n);
            if window.len() > keep {
                window.pop_front();
            }
            t = n;
        }
        (window.into_iter().collect(), all)
    }
}

/// The task id of a fire: UUIDv7-shaped, its timestamp the slot, the rest derived from the
/// schedule name and slot, so a repeated decision for one slot names the same task.
/// What a fire's id is derived from: the schedule's name in the default namespace (so ids made
/// before namespaces stay the same), else namespace and name joined by a NUL, which no name
/// holds (a `/` would let `a` + `b/c` meet `a/b` + `c`).
pub fn fire_key(schedule: &crate::model::Scoped) -> String {
    if schedule.namespace == crate::model::DEFAULT_NAMESPACE {
        schedule.name.clone()
    } else {
        format!("{}\0{}", schedule.namespace, schedule.name)
    }
}

pub fn fire_id(schedule: &str, slot: Micros, salt: u32) -> TaskId {
    use crate::placement::hash::{fnv1a, mix};
    let ms = (slot / 1000).max(0) as u128 & ((1u128 << 48) - 1);
    let h = fnv1a(schedule.as_bytes()) ^ mix(slot as u64) ^ mix(((salt as u64) << 32) | 0x5eed);
    let lo = mix(h);
    let hi = mix(lo ^ 0x9e37_79b9_7f4a_7c15);
    let rand = ((hi as u128) << 64) | lo as u128;
    let v = (ms << 80) | (0x7u128 << 76) | (rand & ((1u128 << 76) - 1));
    TaskId((v & !(0b11u128 << 62)) | (0b10u128 << 62))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Micros {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn five_and_six_fields() {
        let c = Trigger::Cron {
            expr: "*/15 * * * *".into(),
            tz: "UTC".into(),
        }
        .compile()
        .unwrap();
        assert_eq!(
            c.next_after(at("2026-01-01T00:07:00Z")),
            Some(at("2026-01-01T00:15:00Z"))
        );
        let s = Trigger::Cron {
            expr: "*/10 * * * * *".into(),
            tz: "UTC".into(),
        }
        .compile()
        .unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T00:00:10Z"))
        );
        assert!(parse_cron("* * *").is_err());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn daylight_saving_changes_in_a_zone() {
        // Europe/Paris: 2026-03-29 02:00 local does not exist (clocks jump to 03:00), and
        // 2026-10-25 02:00-03:00 happens twice.
        let c = Trigger::Cron {
            expr: "30 2 * * *".into(),
            tz: "Europe/Paris".into(),
        }
        .compile()
        .unwrap();
        let (slots, more) = c.slots(at("2026-03-27T12:00:00Z"), at("2026-03-31T12:00:00Z"), 10);
        assert!(!more);
        // 28th 02:30 CET = 01:30Z; the 29th has no 02:30 (skipped or moved, never twice);
        // 30th 02:30 CEST = 00:30Z.
        assert!(slots.contains(&at("2026-03-28T01:30:00Z")), "{slots:?}");
        assert!(slots.contains(&at("2026-03-30T00:30:00Z")), "{slots:?}");
        let on_29th = slots
            .iter()
            .filter(|s| **s >= at("2026-03-28T23:00:00Z") && **s < at("2026-03-29T22:00:00Z"))
            .count();
        assert!(on_29th <= 1, "{slots:?}");
        let mut d = slots.clone();
        d.dedup();
        assert_eq!(d, slots);
        // Autumn: 02:30 happens twice on the 25th; it fires once per day.
        let (slots, _) = c.slots(at("2026-10-24T12:00:00Z"), at("2026-10-26T12:00:00Z"), 10);
        let on_25th: Vec<_> = slots
            .iter()
            .filter(|s| **s >= at("2026-10-24T22:00:00Z") && **s < at("2026-10-25T23:00:00Z"))
            .collect();
        assert_eq!(on_25th.len(), 1, "{slots:?}");
        // Hourly in local time keeps firing every real hour across the change.
        let h = Trigger::Cron {
            expr: "0 * * * *".into(),
            tz: "Europe/Paris".into(),
        }
        .compile()
        .unwrap();
        let (slots, _) = h.slots(at("2026-03-29T00:00:00Z"), at("2026-03-29T03:00:00Z"), 10);
        assert_eq!(
            slots,
            vec![
                at("2026-03-29T01:00:00Z"),
                at("2026-03-29T02:00:00Z"),
                at("2026-03-29T03:00:00Z")
            ]
        );
    }

    #[test]
    fn every_is_anchored() {
        let c = Trigger::Every {
            every_ms: 90_000,
            anchor: 1_000_000,
        }
        .compile()
        .unwrap();
        assert_eq!(c.next_after(0), Some(1_000_000));
        assert_eq!(c.next_after(1_000_000), Some(91_000_000));
        let (s, more) = c.slots(0, 400_000_000, 3);
        assert_eq!(s, vec![1_000_000, 91_000_000, 181_000_000]);
        assert!(more);
    }

    #[test]
    fn fire_ids_are_stable_and_time_sorted() {
        let a = fire_id("nightly", 1_700_000_000_000_000, 0);
        assert_eq!(a, fire_id("nightly", 1_700_000_000_000_000, 0));
        assert_ne!(a, fire_id("nightly", 1_700_000_000_000_000, 1));
        assert_ne!(a, fire_id("other", 1_700_000_000_000_000, 0));
        assert!(fire_id("nightly", 1_700_000_060_000_000, 0) > a);
        let u = uuid::Uuid::from_u128(a.0);
        assert_eq!(u.get_version_num(), 7);
    }
}
