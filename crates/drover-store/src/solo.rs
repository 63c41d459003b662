//! Leadership of a single-node store (SQLite, memory): one process, so it always leads.
//! `elect` always succeeds with the next epoch (1 first), the lease never expires while held,
//! and the fence is checked in the process: a commit after `resign` fails with `Fenced`, like
//! PostgreSQL's. Ages are measured by the process's monotonic clock.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::leadership::{
    ClusterView, Epoch, Member, MemberView, Role, MEMBER_FORGOTTEN_AFTER, MEMBER_STALE_AFTER,
};
use crate::StoreError;

#[derive(Debug, Default)]
pub(crate) struct Solo {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The newest epoch elected.
    epoch: Epoch,
    /// Held by the newest epoch (none: never elected, or resigned).
    lease: Option<Lease>,
    members: BTreeMap<String, Seen>,
}

#[derive(Debug)]
struct Lease {
    holder: String,
    since: Instant,
    renewed: Instant,
    length: Duration,
}

#[derive(Debug)]
struct Seen {
    address: String,
    first: Instant,
    last: Instant,
}

impl Solo {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn elect(&self, member: &Member, lease: Duration) -> Epoch {
        let mut s = self.lock();
        let now = Instant::now();
        s.epoch += 1;
        s.lease = Some(Lease {
            holder: member.name.clone(),
            since: now,
            renewed: now,
            length: lease,
        });
        s.epoch
    }

    pub(crate) fn renew(&self, epoch: Epoch, lease: Duration) -> bool {
        let mut s = self.lock();
        let current = s.epoch == epoch;
        match s.lease.as_mut() {
            Some(l) if current => {
                l.renewed = Instant::now();
                l.length = lease;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn resign(&self, epoch: Epoch) {
        let mut s = self.lock();
        if s.epoch == epoch {
            s.lease = None;
        }
    }

    /// The fence: passes while nobody ever led, or while the newest epoch holds the lease
    /// (only this store elects, so the newest epoch is this store's).
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let s = self.lock();
        if s.epoch == 0 || s.lease.is_some() {
            return Ok(());
        }
        Err(StoreError::Fenced {
            ours: s.epoch,
            current: s.epoch,
        })
    }

    pub(crate) fn heartbeat(&self, member: &Member) {
        let mut s = self.lock();
        let now = Instant::now();
        s.members
            .retain(|_, m| now.duration_since(m.last) < MEMBER_FORGOTTEN_AFTER);
        let seen = s.members.entry(member.name.clone()).or_insert(Seen {
            address: member.address.clone(),
            first: now,
            last: now,
        });
        seen.address.clone_from(&member.address);
        seen.last = now;
    }

    pub(crate) fn cluster(&self) -> ClusterView {
        let s = self.lock();
        let now = Instant::now();
        let leader = s.lease.as_ref().map(|l| l.holder.clone());
        let members = s
            .members
            .iter()
            .map(|(name, m)| {
                let last_seen = now.duration_since(m.last);
                MemberView {
                    name: name.clone(),
                    address: m.address.clone(),
                    role: match leader.as_deref() == Some(name) {
                        true => Role::Leader,
                        false => Role::Standby,
                    },
                    last_seen,
                    up_for: now.duration_since(m.first),
                    stale: last_seen >= MEMBER_STALE_AFTER,
                }
            })
            .collect();
        let lease = s.lease.as_ref();
        ClusterView {
            epoch: s.epoch,
            leader,
            lease_age: lease.map(|l| now.duration_since(l.renewed)),
            lease_expires_in: lease.map(|l| (l.renewed + l.length).saturating_duration_since(now)),
            leader_for: lease.map(|l| now.duration_since(l.since)),
            members,
        }
    }
}
