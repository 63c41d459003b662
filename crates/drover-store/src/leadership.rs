//! One leader at a time, fenced (ARCHITECTURE.md, *Leadership*): the store half.
//!
//! Any number of servers may share one PostgreSQL store; exactly one of them, the *leader*,
//! runs the core and commits. It leads by a *lease*: one row holding the current *epoch* (a
//! number every election bumps), the leader's name and when the lease expires, on the
//! database's clock. Every commit of the leader checks, in its own transaction, that the
//! epoch is still the one it was elected with (*fencing*): a commit from an older epoch
//! changes nothing and fails with `StoreError::Fenced`. Elections wait for the commits in
//! flight of the old epoch, so no two epochs ever commit in overlapping time.
//!
//! SQLite and memory stores have a single node, which always leads: `elect` always succeeds
//! (bumping the epoch, from 1), and the fence is checked in the process.
//!
//! # Using it (the server's leader and standby modes)
//!
//! - Every server `heartbeat`s its `Member` every `HEARTBEAT_INTERVAL`, in both modes, so
//!   `cluster()` lists it.
//! - A standby calls `elect(member, lease)` every `lease / 3` or so (it returns at once with
//!   `None` while a live leader holds the lease; it may block up to about twice the lease when
//!   the previous leader froze inside a commit, until the database kills that transaction).
//! - On `Some(epoch)` this store is fenced at `epoch`: from now on its commits check it. Only
//!   *then* load the snapshot and build the core: what the previous leader committed is all
//!   in it (its commits in flight finished before the election, later ones fail).
//! - The leader calls `renew(epoch, lease)` every `lease / 3`; `false` means the lease is
//!   lost (expired or taken): stop. It should also stop by itself when no renew succeeded for
//!   a whole lease by its own monotonic clock (a renew that hangs or keeps failing), since
//!   another member may take over from then on.
//! - A commit that fails with `StoreError::Fenced` changed nothing: another member leads.
//!   Stop the driver without sending or replying anything of that batch and become a standby.
//!   Any other commit error: step down too (drop the core; `resign`, if the store answers),
//!   since the core's state may now be ahead of the store's. Either way the member may be
//!   elected again later, from a fresh snapshot.
//! - On shutdown, after the last commit: `resign(epoch)`, so a standby takes over at once
//!   instead of after the lease.
//! - `commit`, `prune_tasks` and `prune_events` are fenced: run retention on the leader
//!   only. The edge's own writes (webhooks and their delivery log and cursors, tokens, the
//!   audit log) are not: any member may write them, and none of them is scheduling state.
//!
//! A store that never won an election commits unfenced as long as nobody ever led the
//! database (epoch 0: a single server that does not use leadership); once anybody did, its
//! commits fail with `Fenced { ours: 0, .. }`.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;

/// A term of leadership: bumped by every election, never reused. 0: nobody ever led.
pub type Epoch = u64;

/// How often a member should `heartbeat`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A member not seen for this long is shown as stale.
pub const MEMBER_STALE_AFTER: Duration = Duration::from_secs(10);
/// A member not seen for this long is forgotten (by the next heartbeat of any member).
pub const MEMBER_FORGOTTEN_AFTER: Duration = Duration::from_secs(3600);

/// A server of the cluster, as it announces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Unique in the cluster: two servers with one name are shown as one.
    pub name: String,
    /// Where it serves (REST and gRPC), as it would tell a client.
    pub address: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Holds the live lease.
    Leader,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// One member, as `cluster()` shows it. Times are ages on the store's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    pub address: String,
    /// From the lease, not from what the member says: the leader is the holder of the live
    /// lease.
    pub role: Role,
    /// Since its last heartbeat.
    pub last_seen: Duration,
    /// Since its first heartbeat through this store (roughly: since it started).
    pub up_for: Duration,
    /// Not seen for `MEMBER_STALE_AFTER`.
    pub stale: bool,
}

/// The cluster as the store sees it (`drover cluster`, `GET /v1/cluster`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// The newest epoch (0: nobody ever led).
    pub epoch: Epoch,
    /// The holder of the live lease; `None` when it is free, resigned or expired.
    pub leader: Option<String>,
    /// The lease's age: since it was taken or last renewed (`None`: no live leader).
    pub lease_age: Option<Duration>,
    /// Until it expires unless renewed (`None`: no live leader).
    pub lease_expires_in: Option<Duration>,
    /// Since the current epoch began (`None`: no live leader).
    pub leader_for: Option<Duration>,
    /// Every member seen within `MEMBER_FORGOTTEN_AFTER`, by name.
    pub members: Vec<MemberView>,
}

/// Election, lease and membership: the part of the store that decides who may commit.
/// Every `Store` implements it; the server reaches it through its `Arc<dyn Store>`.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// Becomes the leader if the lease is free or expired, by the store's clock (never the
    /// caller's): bumps the epoch, takes the lease for `lease`, fences this store at the new
    /// epoch and returns it. `None`: another live leader holds it (or is being elected, or a
    /// frozen commit of the old leader still holds the row past the lock timeout: try again).
    async fn elect(&self, member: &Member, lease: Duration) -> Result<Option<Epoch>, StoreError>;
    /// Extends the lease to `lease` from now if it is still ours: `epoch` is current and the
    /// lease has not expired. `false`: lost, step down.
    async fn renew(&self, epoch: Epoch, lease: Duration) -> Result<bool, StoreError>;
    /// Frees the lease if `epoch` holds it, so another member may be elected at once. This
    /// store stays fenced at `epoch`: its later commits fail with `Fenced`.
    async fn resign(&self, epoch: Epoch) -> Result<(), StoreError>;
    /// Says `member` is alive (registering it on its first heartbeat through this store).
    /// Also forgets members not seen for `MEMBER_FORGOTTEN_AFTER`.
    async fn heartbeat(&self, member: &Member) -> Result<(), StoreError>;
    async fn cluster(&self) -> Result<ClusterView, StoreError>;
    /// What other servers on this store change, as it happens (a standby follows the
    /// leader's events and token changes by it). `None`: nobody else writes this store
    /// (SQLite, memory).
    fn notices(&self) -> Option<Notices> {
        None
    }
}

/// Counters that move when another server committed events or changed tokens (and after
/// the store may have missed telling: look at the store whenever they move).
#[derive(Clone, Debug)]
pub struct Notices {
    pub events: tokio::sync::watch::Receiver<u64>,
    pub tokens: tokio::sync::watch::Receiver<u64>,
}

/// Microseconds (as a store computes an age) as a duration; a negative age (clock set back)
/// is zero.
pub(crate) fn age(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// A duration in whole microseconds, as SQL parameters carry it.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
