//! REST types of the cluster (`GET /v1/cluster`, `drover cluster`) and how a standby points
//! clients at the leader.
//!
//! A standby answers what only the leader can do (writes, the live worker and queue views, the
//! worker stream) with 503, `Retry-After` and the leader's address in `LEADER_HEADER` (gRPC:
//! `UNAVAILABLE` with the same key in the metadata). A client given several servers goes to
//! that address when it is one of them, else to the next one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The response header (and gRPC metadata key) naming the leader's address.
pub const LEADER_HEADER: &str = "x-drover-leader";

/// One server of the cluster.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ClusterMember {
    /// Unique in the cluster (`--name`, default host:port).
    pub name: String,
    /// Where it serves REST and gRPC, e.g. `http://10.0.0.5:7070` (`--advertise`).
    pub address: String,
    /// `leader` (holds the live lease) or `standby`.
    #[schema(pattern = "^(leader|standby)$")]
    pub role: String,
    /// RFC 3339: its last heartbeat through the store.
    pub last_seen: String,
    /// Milliseconds since its last heartbeat, on the store's clock.
    pub last_seen_ms: u64,
    /// Not seen for 10 s: probably gone.
    pub stale: bool,
}

/// The cluster as the store sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ClusterView {
    /// Every member seen in the last hour, by name.
    pub members: Vec<ClusterMember>,
    /// The current term of leadership (bumped by every election; 0: nobody ever led).
    pub epoch: u64,
    /// The leader's name; absent while nobody holds a live lease.
    pub leader: Option<String>,
    /// Milliseconds since the lease was taken or last renewed; absent with no live leader.
    pub lease_age_ms: Option<u64>,
    /// The lease's length (`--leader-lease`) on the server that answered.
    pub lease_ms: u64,
    /// The name of the server that answered.
    pub this: String,
}
