//! The registry of connected workers: their sessions, the attempts each holds (its credit),
//! their liveness watch, and the drained names (kept across reconnects and restarts).

use std::collections::{BTreeMap, BTreeSet};

use super::io::SessionId;
use super::liveness::{Silence, Watch};
use crate::model::{Micros, TaskId, WorkerInfo, WorkerStatus};

/// Why a drain request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainError {
    /// No connected worker has this name.
    NotConnected,
}

/// An operator's drain request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Drain {
    /// Take nothing new; what it holds runs to the end.
    Start,
    /// Take work again.
    Resume,
}

#[derive(Debug)]
pub(super) struct WorkerState {
    pub(super) info: WorkerInfo,
    pub(super) session: SessionId,
    /// Attempts it holds: task id -> attempt. Includes cancelled attempts not yet reported
    /// back, so a worker is never sent more than its credit.
    pub(super) held: BTreeMap<TaskId, u32>,
    /// Whether its name is drained (kept equal to the registry's drained set).
    pub(super) draining: bool,
    pub(super) joined_at: Micros,
    pub(super) watch: Watch,
}

impl WorkerState {
    /// Assignments it may still take: its credit (`slots + prefetch`) minus what it holds.
    pub(super) fn free_credit(&self) -> usize {
        self.info.credit_limit().saturating_sub(self.held.len())
    }

    pub(super) fn status(&self) -> WorkerStatus {
        match (self.watch.silence, self.draining, self.held.len()) {
            (Silence::Suspect, ..) => WorkerStatus::Suspect,
            (Silence::Lost, ..) => WorkerStatus::Lost,
            (Silence::Heard, false, _) => WorkerStatus::Alive,
            (Silence::Heard, true, 0) => WorkerStatus::Drained,
            (Silence::Heard, true, _) => WorkerStatus::Draining,
        }
    }
}

/// A read-only summary of a connected worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSummary {
    pub info: WorkerInfo,
    pub held: usize,
    pub running: usize,
    pub draining: bool,
    pub joined_at: Micros,
    pub last_seen: Micros,
    pub status: WorkerStatus,
    /// Declared resources minus what its held attempts requested.
    pub resources_free: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub(super) struct Workers {
    by_name: BTreeMap<String, WorkerState>,
    sessions: BTreeMap<SessionId, String>,
    drained: BTreeSet<String>,
}

impl Workers {
    pub(super) fn restore_drained(&mut self, names: Vec<String>) {
        self.drained.extend(names);
    }

    /// Registers a worker's new session; returns the entry of a previous session of the
    /// same name, which it replaces.
    pub(super) fn join(
        &mut self,
        session: SessionId,
        info: WorkerInfo,
        now: Micros,
        watch: Watch,
    ) -> Option<WorkerState> {
        let name = info.name.clone();
        let old = self.by_name.remove(&name);
        if let Some(o) = &old {
            self.sessions.remove(&o.session);
        }
        self.sessions.insert(session, name.clone());
        let draining = self.drained.contains(&name);
        let w = WorkerState {
            info,
            session,
            held: BTreeMap::new(),
            draining,
            joined_at: now,
            watch,
        };
        self.by_name.insert(name, w);
        old
    }

    /// Ends a session; returns the worker's entry if the session was its current one.
    pub(super) fn leave(&mut self, session: SessionId) -> Option<WorkerState> {
        let name = self.sessions.remove(&session)?;
        if self.by_name.get(&name)?.session != session {
            return None;
        }
        self.by_name.remove(&name)
    }

    pub(super) fn name_of(&self, session: SessionId) -> Option<&String> {
        self.sessions.get(&session)
    }

    pub(super) fn by_session_mut(&mut self, session: SessionId) -> Option<&mut WorkerState> {
        let name = self.sessions.get(&session)?;
        self.by_name.get_mut(name)
    }

    pub(super) fn get(&self, name: &str) -> Option<&WorkerState> {
        self.by_name.get(name)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut WorkerState> {
        self.by_name.get_mut(name)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &WorkerState)> {
        self.by_name.iter()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &WorkerState> {
        self.by_name.values()
    }

    /// Drains or resumes a worker. A drained worker that is not connected can be resumed
    /// (its drain is kept for when it comes back); draining one needs it connected. Returns
    /// whether anything changed.
    pub(super) fn drain(&mut self, name: &str, drain: Drain) -> Result<bool, DrainError> {
        let on = drain == Drain::Start;
        match self.by_name.get_mut(name) {
            Some(w) => w.draining = on,
            None if !on && self.drained.contains(name) => {}
            None => return Err(DrainError::NotConnected),
        }
        Ok(if on {
            self.drained.insert(name.to_string())
        } else {
            self.drained.remove(name)
        })
    }

    /// DURABLE_DRAIN: a connected worker is draining exactly when its name is drained.
    pub(super) fn check_drains(&self) -> Result<(), String> {
        for (name, w) in &self.by_name {
            if w.draining != self.drained.contains(name) {
                return Err(format!(
                    "{name} draining: {}, drained: {}",
                    w.draining, !w.draining
                ));
            }
        }
        Ok(())
    }
}
