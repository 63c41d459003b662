//! Leader and standby (ARCHITECTURE.md, *Leadership*): any number of servers share one
//! PostgreSQL store; the one holding the store's lease runs the core (a *term*), the others
//! are standbys that serve reads from the store and point writers at the leader.
//!
//! - `Cluster`: who this server is, whether it leads now, and where the leader is.
//! - `slot`: the current term's driver, which handlers and the worker stream reach.
//! - `term`: what a term starts (the core from a fresh snapshot, the driver, the upkeep
//!   loops, the webhooks) and stops.
//! - `elect`: the loop: stand by (heartbeat, try to be elected), lead (renew the lease, watch
//!   the driver), step down, repeat.
//! - `tail`: a standby's event feed, from the store, woken by the leader's commits.
//! - `http`: `GET /v1/cluster` and the gate that answers a standby's leader-only requests
//!   with 503 and the leader's address.
//!
//! SQLite and memory stores have one member, which is elected at start and leads until it
//! stops; a term that fails there stops the server, as before (nobody else could lead).

pub mod elect;
pub mod http;
pub mod slot;
mod tail;
pub mod term;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use drover_api::cluster::LEADER_HEADER;
use drover_api::{ApiError, ErrorCode};
use drover_store::{Epoch, Member};

pub use slot::DriverSlot;

/// `--leader-lease`: the default, and the range it may take.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
pub const MIN_LEASE: Duration = Duration::from_secs(1);
pub const MAX_LEASE: Duration = Duration::from_secs(300);

/// Checks `--leader-lease`.
pub fn check_lease(lease: Duration) -> Result<(), String> {
    if lease < MIN_LEASE || lease > MAX_LEASE {
        return Err(format!(
            "--leader-lease must be between {}s and {}s (got {:?}): a standby takes over about \
             a lease after the leader dies, and the leader renews every third of it",
            MIN_LEASE.as_secs(),
            MAX_LEASE.as_secs(),
            lease
        ));
    }
    Ok(())
}

/// This server in the cluster.
pub struct Cluster {
    pub me: Member,
    pub lease: Duration,
    /// The driver of the current term; empty on a standby.
    pub slot: DriverSlot,
    state: RwLock<View>,
}

#[derive(Clone, Default)]
struct View {
    /// The epoch this server leads in.
    leading: Option<Epoch>,
    /// The leader's name and address, as last seen in the store.
    leader: Option<(String, String)>,
}

impl Cluster {
    pub fn new(me: Member, lease: Duration) -> Arc<Cluster> {
        Arc::new(Cluster {
            me,
            lease,
            slot: DriverSlot::default(),
            state: RwLock::new(View::default()),
        })
    }

    fn view(&self) -> View {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut View)) {
        f(&mut self.state.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// The epoch this server leads in, if it leads.
    pub fn leading(&self) -> Option<Epoch> {
        self.view().leading
    }

    pub fn is_leader(&self) -> bool {
        self.leading().is_some()
    }

    /// The leader's address: this server's while it leads, else the last one the store named.
    pub fn leader_address(&self) -> Option<String> {
        let v = self.view();
        match v.leading {
            Some(_) => Some(self.me.address.clone()),
            None => v.leader.map(|(_, address)| address),
        }
    }

    /// The 503 of a request only the leader can serve, naming the leader when one is known.
    pub fn not_leader(&self) -> ApiError {
        let v = self.view();
        let message = match v.leader {
            Some((name, address)) => format!(
                "this server ({}) is a standby; the leader is {name} at {address}: send this \
                 request there (its address is in the {LEADER_HEADER} header)",
                self.me.name
            ),
            None => format!(
                "this server ({}) is a standby and no server leads right now (an election is \
                 under way); retry in a moment",
                self.me.name
            ),
        };
        ApiError::new(ErrorCode::Unavailable, message)
    }

    /// The worker stream's refusal on a standby, with the leader's address in the metadata.
    pub fn not_leader_status(&self) -> tonic::Status {
        let mut status = tonic::Status::unavailable(self.not_leader().message);
        if let Some(address) = self.leader_address() {
            if let Ok(v) = address.parse() {
                status.metadata_mut().insert(LEADER_HEADER, v);
            }
        }
        status
    }
}
