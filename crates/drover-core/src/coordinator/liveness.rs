//! Worker liveness on a timer: a worker silent (no heartbeat, start, result or log) for
//! `suspect_after_ms` becomes `suspect`, silent for a whole lease `lost`; the first word from
//! it after either makes it `alive` again. Each change is one worker event.
//!
//! One timer entry per connected worker, re-armed lazily: hearing from a worker only moves
//! `last_seen`, and a timer that fires early re-arms itself at the real deadline, so the
//! hot path (heartbeats, logs) never touches the timer index.

use super::timers::Timers;
use crate::model::{Micros, WorkerEventState};

/// How long a worker has been silent, as the core sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Silence {
    #[default]
    Heard,
    Suspect,
    Lost,
}

/// A connected worker's liveness record, kept in its registry entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct Watch {
    pub(super) last_seen: Micros,
    pub(super) silence: Silence,
    /// Its entry in the timers; `None` once it is lost.
    timer: Option<Micros>,
}

/// The silence thresholds, in µs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Thresholds {
    pub(super) suspect_after: Micros,
    pub(super) lost_after: Micros,
}

#[derive(Debug, Default)]
pub(super) struct Liveness {
    timers: Timers<String>,
}

impl Liveness {
    pub(super) fn next_timer(&self) -> Option<Micros> {
        self.timers.next()
    }

    /// A worker joined: its watch, with the timer armed.
    pub(super) fn joined(&mut self, name: &str, now: Micros, t: Thresholds) -> Watch {
        let at = now + t.suspect_after;
        self.timers.arm(at, name.to_string());
        Watch {
            last_seen: now,
            silence: Silence::Heard,
            timer: Some(at),
        }
    }

    pub(super) fn left(&mut self, name: &str, watch: &Watch) {
        if let Some(at) = watch.timer {
            self.timers.disarm(at, name.to_string());
        }
    }

    /// The worker spoke. Returns `Alive` if it was suspect or lost.
    pub(super) fn heard(
        &mut self,
        name: &str,
        w: &mut Watch,
        now: Micros,
        t: Thresholds,
    ) -> Option<WorkerEventState> {
        w.last_seen = now;
        if w.silence == Silence::Heard {
            return None;
        }
        w.silence = Silence::Heard;
        self.left(name, w);
        let at = now + t.suspect_after;
        w.timer = Some(at);
        self.timers.arm(at, name.to_string());
        Some(WorkerEventState::Alive)
    }

    /// The next worker whose timer is due.
    pub(super) fn pop_due(&mut self, now: Micros) -> Option<String> {
        self.timers.pop_due(now).map(|(_, name)| name)
    }

    /// A due worker's timer fired: re-arms it at its real deadline, and returns the change
    /// of its silence, if any.
    pub(super) fn examine(
        &mut self,
        name: &str,
        w: &mut Watch,
        now: Micros,
        t: Thresholds,
    ) -> Option<WorkerEventState> {
        let silent = now - w.last_seen;
        let (next, change) = match w.silence {
            Silence::Heard if silent < t.suspect_after => {
                (Some(w.last_seen + t.suspect_after), None)
            }
            Silence::Heard if silent < t.lost_after => {
                (Some(w.last_seen + t.lost_after), Some(Silence::Suspect))
            }
            Silence::Heard | Silence::Suspect if silent >= t.lost_after => {
                (None, Some(Silence::Lost))
            }
            Silence::Suspect => (Some(w.last_seen + t.lost_after), None),
            Silence::Heard | Silence::Lost => (None, None),
        };
        w.timer = next;
        if let Some(at) = next {
            self.timers.arm(at, name.to_string());
        }
        let change = change?;
        w.silence = change;
        Some(match change {
            Silence::Suspect => WorkerEventState::Suspect,
            _ => WorkerEventState::Lost,
        })
    }

    /// SILENCE_TIMER: each of `watches` not yet lost has exactly its one timer entry, and no
    /// entry belongs to anyone else.
    pub(super) fn check<'a>(
        &self,
        watches: impl Iterator<Item = (&'a String, &'a Watch)>,
    ) -> Result<(), String> {
        let watches: std::collections::HashMap<&str, &Watch> =
            watches.map(|(n, w)| (n.as_str(), w)).collect();
        for (at, name) in self.timers.iter() {
            if watches
                .get(name.as_str())
                .is_none_or(|w| w.timer != Some(*at))
            {
                return Err(format!("stray timer {at} for {name}"));
            }
        }
        for (name, w) in watches {
            let armed = w
                .timer
                .is_some_and(|at| self.timers.is_armed(at, &name.to_string()));
            if armed != (w.silence != Silence::Lost) {
                return Err(format!(
                    "{name} is {:?} with timer armed: {armed}",
                    w.silence
                ));
            }
        }
        Ok(())
    }
}
