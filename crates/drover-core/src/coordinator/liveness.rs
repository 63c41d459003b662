//! Worker liveness on a timer: a worker silent (no heartbeat, start, result or log) for
//! `suspect_after_ms` becomes `suspect`, silent for a whole lease `lost`; the first word from
//! it after either makes it `alive` again. Each change is one worker event.
//!
//! One timer entry per connected worker, re-armed lazily: hearing from a worker only moves
//! `last_seen`, and a timer that fires early re-arms itself at the real deadline, so the
//! hot path (heartbeats, logs) never touches the timer index.

use std::collections::BTreeSet;

use super::{ms, Coordinator, Effects};
use crate::model::{EventKind, Micros, WorkerEventState};

/// How long a worker has been silent, as the core sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Silence {
    #[default]
    Heard,
    Suspect,
    Lost,
}

impl Silence {
    pub fn as_str(self) -> &'static str {
        match self {
            Silence::Heard => "alive",
            Silence::Suspect => "suspect",
            Silence::Lost => "lost",
        }
    }
}

#[derive(Default)]
pub(super) struct Liveness {
    /// (when to look again, worker).
    timers: BTreeSet<(Micros, String)>,
}

impl Liveness {
    pub(super) fn next_timer(&self) -> Option<Micros> {
        self.timers.first().map(|t| t.0)
    }
}

impl Coordinator {
    /// Arms the silence timer of a worker that just joined.
    pub(super) fn liveness_joined(&mut self, now: Micros, name: &str) {
        let at = now + ms(self.cfg.suspect_after_ms);
        self.liveness.timers.insert((at, name.to_string()));
        if let Some(w) = self.workers.get_mut(name) {
            w.silence_timer = at;
        }
    }

    pub(super) fn liveness_left(&mut self, name: &str, timer: Micros) {
        self.liveness.timers.remove(&(timer, name.to_string()));
    }

    /// The worker spoke: a suspect or lost one is alive again.
    pub(super) fn liveness_heard(&mut self, now: Micros, name: &str, fx: &mut Effects) {
        let Some(w) = self.workers.get_mut(name) else {
            return;
        };
        w.last_seen = now;
        if w.silence == Silence::Heard {
            return;
        }
        w.silence = Silence::Heard;
        let old = std::mem::replace(&mut w.silence_timer, now + ms(self.cfg.suspect_after_ms));
        let new = w.silence_timer;
        self.liveness.timers.remove(&(old, name.to_string()));
        self.liveness.timers.insert((new, name.to_string()));
        self.emit_worker(now, name, WorkerEventState::Alive, fx);
    }

    /// Fires due silence timers.
    pub(super) fn liveness_due(&mut self, now: Micros, fx: &mut Effects) {
        let suspect_after = ms(self.cfg.suspect_after_ms);
        let lost_after = ms(self.cfg.lease_ms).max(suspect_after);
        while let Some((at, _)) = self.liveness.timers.first() {
            if *at > now {
                break;
            }
            let (_, name) = self.liveness.timers.pop_first().expect("just looked");
            let Some(w) = self.workers.get_mut(&name) else {
                continue;
            };
            let silent = now - w.last_seen;
            let (next, change) = match w.silence {
                Silence::Heard if silent < suspect_after => {
                    (Some(w.last_seen + suspect_after), None)
                }
                Silence::Heard if silent < lost_after => {
                    (Some(w.last_seen + lost_after), Some(Silence::Suspect))
                }
                Silence::Heard | Silence::Suspect if silent >= lost_after => {
                    (None, Some(Silence::Lost))
                }
                Silence::Suspect => (Some(w.last_seen + lost_after), None),
                Silence::Heard | Silence::Lost => (None, None),
            };
            w.silence_timer = next.unwrap_or(0);
            if let Some(at) = next {
                self.liveness.timers.insert((at, name.clone()));
            }
            if let Some(s) = change {
                w.silence = s;
                let state = match s {
                    Silence::Suspect => WorkerEventState::Suspect,
                    _ => WorkerEventState::Lost,
                };
                self.emit_worker(now, &name, state, fx);
            }
        }
    }

    /// SILENCE_TIMER: a connected worker not yet lost has exactly its one timer entry; no
    /// entry belongs to anyone else.
    pub(super) fn check_liveness(&self) -> Result<(), String> {
        for (at, name) in &self.liveness.timers {
            if self
                .workers
                .get(name)
                .is_none_or(|w| w.silence_timer != *at)
            {
                return Err(format!("SILENCE_TIMER: stray timer {at} for {name}"));
            }
        }
        for (name, w) in &self.workers {
            let armed = self
                .liveness
                .timers
                .contains(&(w.silence_timer, name.clone()));
            if armed != (w.silence != Silence::Lost) {
                return Err(format!(
                    "SILENCE_TIMER: {name} is {} with timer armed: {armed}",
                    w.silence.as_str()
                ));
            }
        }
        Ok(())
    }

    pub(super) fn emit_worker(
        &mut self,
        now: Micros,
        name: &str,
        state: WorkerEventState,
        fx: &mut Effects,
    ) {
        self.emit(
            now,
            EventKind::Worker {
                name: name.to_string(),
                state,
            },
            fx,
        );
    }
}
