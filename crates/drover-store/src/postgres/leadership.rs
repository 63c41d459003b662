//! Leadership on PostgreSQL (src/leadership.rs; ARCHITECTURE.md, *Leadership*): the lease
//! row `leader_lease`, the `members` table and the fence (migration 0003).
//!
//! Locks on the lease row, which is what makes epochs never overlap:
//! - a fenced transaction (commit, pruning) runs `drover_fence` first, which takes the row's
//!   `FOR KEY SHARE` lock until it ends and fails it unless its epoch is current;
//! - an election takes `FOR UPDATE`, which waits for every fenced transaction in flight, then
//!   bumps the epoch; every fenced transaction after it sees the new epoch;
//! - a renewal (`UPDATE` of the times only: `FOR NO KEY UPDATE`) does not wait for commits.
//!
//! A process frozen (SIGSTOP, a paused VM) inside one of these transactions would hold its
//! lock forever, and an election would wait for it forever. So each of them sets
//! `idle_in_transaction_session_timeout` to the lease, locally: the database ends the frozen
//! session (rolling its transaction back) a lease after it went idle, and the election goes
//! on. Our own transactions never sit idle for more than a moment, as their statements are
//! pipelined. The election itself waits at most twice the lease (`lock_timeout`), then
//! reports "not elected" and is tried again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Client, GenericClient, Transaction};
use tokio_postgres::error::SqlState;

use super::codec::get;
use super::db_err;
use crate::leadership::{
    age, micros, ClusterView, Epoch, Member, MemberView, Role, MEMBER_FORGOTTEN_AFTER,
    MEMBER_STALE_AFTER,
};
use crate::StoreError;

/// The SQLSTATE `drover_fence` fails with.
pub(super) const FENCED: &str = "DR001";

/// The fence, first in every fenced transaction. The idle timeout is the lease's (NULL: keep
/// the session's; a store never elected has no lease).
const FENCE: &str = "SELECT drover_fence($1::bigint), \
     set_config('idle_in_transaction_session_timeout', \
     coalesce($2::text, current_setting('idle_in_transaction_session_timeout')), true)";

/// Takes the lease if it is free, expired, or held under this member's own name (a server
/// restarted after a crash need not wait out its previous life's lease: the new epoch fences
/// that life off all the same), waiting for fenced transactions in flight.
const ELECT: &str = "WITH free AS (SELECT id FROM leader_lease \
     WHERE id = 1 AND (leader IS NULL OR expires_at <= clock_timestamp() OR leader = $1) \
     FOR UPDATE) \
     UPDATE leader_lease l SET epoch = l.epoch + 1, leader = $1, \
     elected_at = clock_timestamp(), renewed_at = clock_timestamp(), \
     expires_at = clock_timestamp() + $2::bigint * interval '1 microsecond' \
     FROM free WHERE l.id = free.id RETURNING l.epoch";

const RENEW: &str = "UPDATE leader_lease SET renewed_at = clock_timestamp(), \
     expires_at = clock_timestamp() + $2::bigint * interval '1 microsecond' \
     WHERE id = 1 AND epoch = $1 AND leader IS NOT NULL AND expires_at > clock_timestamp()";

const RESIGN: &str = "UPDATE leader_lease SET leader = NULL, expires_at = clock_timestamp() \
     WHERE id = 1 AND epoch = $1 AND leader IS NOT NULL";

/// `$3`: the first heartbeat of this member through this store, which (re)starts its clock.
const HEARTBEAT: &str = "INSERT INTO members (name, address, started_at, last_seen) \
     VALUES ($1, $2, clock_timestamp(), clock_timestamp()) \
     ON CONFLICT (name) DO UPDATE SET address = excluded.address, \
     last_seen = excluded.last_seen, \
     started_at = CASE WHEN $3 THEN excluded.started_at ELSE members.started_at END";

const FORGET: &str = "DELETE FROM members \
     WHERE last_seen < clock_timestamp() - $1::bigint * interval '1 microsecond'";

/// An interval in whole microseconds.
macro_rules! us {
    ($e:expr) => {
        concat!("(extract(epoch FROM ", $e, ") * 1000000)::bigint")
    };
}

const LEASE_VIEW: &str = concat!(
    "SELECT epoch, leader IS NOT NULL AND expires_at > n.t, leader, ",
    us!("n.t - renewed_at"),
    ", ",
    us!("expires_at - n.t"),
    ", ",
    us!("n.t - elected_at"),
    " FROM leader_lease, (SELECT clock_timestamp() AS t) n WHERE id = 1"
);

const MEMBERS_VIEW: &str = concat!(
    "SELECT name, address, ",
    us!("n.t - last_seen"),
    ", ",
    us!("n.t - started_at"),
    " FROM members, (SELECT clock_timestamp() AS t) n \
     WHERE last_seen >= n.t - $1::bigint * interval '1 microsecond' ORDER BY name"
);

/// What this store commits with: its epoch (0: never elected) and its lease.
#[derive(Debug, Default)]
pub(super) struct Fence {
    epoch: AtomicU64,
    /// The lease in ms, the idle timeout of fenced transactions (0: none known).
    lease_ms: AtomicU64,
}

/// The members that sent a heartbeat through this store: the first one restarts a member's
/// `started_at`.
#[derive(Debug, Default)]
pub(super) struct Registered(Mutex<HashSet<String>>);

impl Registered {
    fn first_heartbeat(&self, name: &str) -> bool {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.insert(name.to_string())
    }
}

impl Fence {
    fn lead(&self, epoch: Epoch, lease: Duration) {
        self.lease_ms.store(ms(lease), Ordering::SeqCst);
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// Runs the fence in `tx`: sent without waiting, so it costs no round trip of its own
    /// when it is polled together with the transaction's writes.
    pub(super) async fn check(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let ours = self.epoch.load(Ordering::SeqCst) as i64;
        let idle = match self.lease_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(format!("{ms}ms")),
        };
        let st = tx.prepare_cached(FENCE).await.map_err(db_err)?;
        tx.query_one(&st, &[&ours, &idle]).await.map_err(db_err)?;
        Ok(())
    }
}

/// Whole milliseconds, at least one (a zero timeout would mean none).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Begins a transaction whose lock waits end after `lock_wait` and which the database ends
/// when it sits idle for `idle` (its client froze).
async fn bounded<'a>(
    c: &'a mut Client,
    lock_wait: Duration,
    idle: Duration,
) -> Result<Transaction<'a>, StoreError> {
    let tx = c.transaction().await.map_err(db_err)?;
    tx.execute(
        "SELECT set_config('lock_timeout', $1, true), \
         set_config('idle_in_transaction_session_timeout', $2, true)",
        &[&format!("{}ms", ms(lock_wait)), &format!("{}ms", ms(idle))],
    )
    .await
    .map_err(db_err)?;
    Ok(tx)
}

pub(super) async fn elect(
    c: &mut Client,
    fence: &Fence,
    member: &Member,
    lease: Duration,
) -> Result<Option<Epoch>, StoreError> {
    let tx = bounded(c, lease.saturating_mul(2), lease).await?;
    let row = match tx.query_opt(ELECT, &[&member.name, &micros(lease)]).await {
        Ok(row) => row,
        // A frozen transaction still holds the row: not elected this time.
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => return Ok(None),
        Err(e) => return Err(db_err(e)),
    };
    let Some(row) = row else { return Ok(None) };
    let epoch: i64 = get(&row, 0)?;
    tx.commit().await.map_err(db_err)?;
    let epoch = epoch as Epoch;
    fence.lead(epoch, lease);
    Ok(Some(epoch))
}

pub(super) async fn renew(
    c: &mut Client,
    fence: &Fence,
    epoch: Epoch,
    lease: Duration,
) -> Result<bool, StoreError> {
    let tx = bounded(c, lease / 2, lease).await?;
    let n = tx
        .execute(RENEW, &[&(epoch as i64), &micros(lease)])
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    if n == 1 && fence.epoch.load(Ordering::SeqCst) == epoch {
        fence.lease_ms.store(ms(lease), Ordering::SeqCst);
    }
    Ok(n == 1)
}

pub(super) async fn resign(c: &Client, epoch: Epoch) -> Result<(), StoreError> {
    c.execute(RESIGN, &[&(epoch as i64)])
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn heartbeat(
    c: &Client,
    registered: &Registered,
    member: &Member,
) -> Result<(), StoreError> {
    let fresh = registered.first_heartbeat(&member.name);
    c.execute(HEARTBEAT, &[&member.name, &member.address, &fresh])
        .await
        .map_err(db_err)?;
    c.execute(FORGET, &[&micros(MEMBER_FORGOTTEN_AFTER)])
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn cluster(c: &impl GenericClient) -> Result<ClusterView, StoreError> {
    let lease = c.query_one(LEASE_VIEW, &[]).await.map_err(db_err)?;
    let epoch: i64 = get(&lease, 0)?;
    let live: bool = get(&lease, 1)?;
    let leader: Option<String> = get(&lease, 2)?;
    let leader = leader.filter(|_| live);
    let when_live = |i| -> Result<Option<Duration>, StoreError> {
        let us: Option<i64> = get(&lease, i)?;
        Ok(us.filter(|_| live).map(age))
    };
    let (lease_age, lease_expires_in, leader_for) = (when_live(3)?, when_live(4)?, when_live(5)?);
    let rows = c
        .query(MEMBERS_VIEW, &[&micros(MEMBER_FORGOTTEN_AFTER)])
        .await
        .map_err(db_err)?;
    let mut members = Vec::with_capacity(rows.len());
    for r in &rows {
        let name: String = get(r, 0)?;
        let last_seen = age(get(r, 2)?);
        members.push(MemberView {
            role: match leader.as_deref() == Some(name.as_str()) {
                true => Role::Leader,
                false => Role::Standby,
            },
            name,
            address: get(r, 1)?,
            last_seen,
            up_for: age(get(r, 3)?),
            stale: last_seen >= MEMBER_STALE_AFTER,
        });
    }
    Ok(ClusterView {
        epoch: epoch as Epoch,
        leader,
        lease_age,
        lease_expires_in,
        leader_for,
        members,
    })
}

/// The error `drover_fence` raised, as `StoreError::Fenced` (its DETAIL: "ours current").
pub(super) fn fenced(db: &tokio_postgres::error::DbError) -> Option<StoreError> {
    let mut nums = db.detail()?.split(' ').map(str::parse::<i64>);
    let (Some(Ok(ours)), Some(Ok(current))) = (nums.next(), nums.next()) else {
        return None;
    };
    Some(StoreError::Fenced {
        ours: ours as Epoch,
        current: current as Epoch,
    })
}
