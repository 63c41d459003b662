//! What every REST handler can reach.

use std::sync::Arc;

use drover_core::Event;
use drover_store::Store;
use tokio::sync::broadcast;

use crate::auth::Auth;
use crate::cluster::{Cluster, DriverSlot};
use crate::edge::Edge;
use crate::health::StoreHealth;
use crate::metrics::Metrics;
use crate::secrets::SecretKeys;
use crate::webhooks::Webhooks;
use crate::workers::WorkerMonitor;

#[derive(Clone)]
pub struct AppState {
    /// Tokens and sessions (the guard in front of every route uses it too).
    pub auth: Arc<Auth>,
    /// The current term's driver (empty on a standby).
    pub driver: DriverSlot,
    /// This server in the cluster: its role, the leader's address.
    pub cluster: Arc<Cluster>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Committed events, in sequence order, as they commit.
    pub events: broadcast::Sender<Arc<Event>>,
    pub webhooks: Arc<Webhooks>,
    /// Worker liveness (alive, suspect, lost) and the recently lost workers.
    pub workers: Arc<WorkerMonitor>,
    /// The edge's limits (event-stream places).
    pub edge: Arc<Edge>,
    /// Seals secret env at submit (it is opened only on the way to a worker).
    pub secrets: Arc<SecretKeys>,
    /// Degraded while the driver retries a failing commit (`/readyz`, the edge's gate).
    pub health: Arc<StoreHealth>,
}
