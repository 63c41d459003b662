//! The cluster loop: stand by until elected, lead until the term ends, step down, repeat.
//!
//! - Every member heartbeats every `HEARTBEAT_INTERVAL`, in both roles (`drover cluster`).
//! - A standby asks to be elected every fifth of a lease, so it leads within about a lease
//!   and a fifth of the leader's death; between tries it notes who leads (for its 503s).
//! - A leader renews every third of a lease. It steps down (`Term::abandon`: nothing more of
//!   the term is sent or answered) when a renewal says the lease is lost, when no renewal
//!   succeeded for a whole lease by its own clock (it may be stuck or cut off: another member
//!   can take over from then on), or when its driver ends (a fenced commit, or a store that
//!   failed commits for `--store-retry`). With a store that has no other members (SQLite),
//!   a driver that ends stops the server instead: nobody else could lead.
//! - On shutdown the leader commits what it decided, then resigns, so a standby takes over at
//!   once instead of after the lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_store::leadership::HEARTBEAT_INTERVAL;
use drover_store::Epoch;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::term::{Parts, Term};
use super::Cluster;

/// How long a resignation may take before the server goes on without it.
const RESIGN_WAIT: Duration = Duration::from_secs(2);

/// Why a term ended.
enum Ended {
    Shutdown,
    SteppedDown(anyhow::Error),
}

pub struct Elector {
    pub cluster: Arc<Cluster>,
    pub parts: Parts,
    /// Whether other servers may share the store (PostgreSQL): then a failed term steps
    /// down instead of stopping the server.
    pub shared: bool,
}

impl Elector {
    pub fn new(cluster: Arc<Cluster>, parts: Parts, shared: bool) -> Elector {
        Elector {
            cluster,
            parts,
            shared,
        }
    }

    /// One election attempt, and the term it begins (`None`: another member leads).
    pub async fn try_lead(&self) -> anyhow::Result<Option<Term>> {
        let store = &self.parts.store;
        let Some(epoch) = store.elect(&self.cluster.me, self.cluster.lease).await? else {
            return Ok(None);
        };
        // Loading a large snapshot can take longer than a lease: it is renewed meanwhile.
        let begun = tokio::sync::Notify::new();
        let begin = async {
            let r = Term::begin(&self.parts, epoch, &self.cluster.slot).await;
            begun.notify_one();
            r
        };
        let (r, kept) = tokio::join!(begin, self.renew_until(epoch, &begun));
        match r {
            Ok(term) if !kept => {
                tracing::warn!(
                    epoch,
                    "the lease was lost while the term began; standing by"
                );
                term.abandon(&self.parts, &self.cluster.slot);
                Ok(None)
            }
            Ok(term) => {
                self.cluster.update(|v| v.leading = Some(epoch));
                Ok(Some(term))
            }
            Err(e) => {
                self.resign(epoch).await;
                Err(e.context(format!("starting the term of epoch {epoch}")))
            }
        }
    }

    /// Renews the lease of `epoch` every third of a lease until `done`; false if a renewal
    /// says it is lost (a failed renewal is tried again at the next turn).
    async fn renew_until(&self, epoch: Epoch, done: &tokio::sync::Notify) -> bool {
        let lease = self.cluster.lease;
        loop {
            tokio::select! {
                _ = done.notified() => return true,
                _ = tokio::time::sleep(lease / 3) => {
                    if let Ok(false) = self.parts.store.renew(epoch, lease).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Runs until `shutdown` turns true (then `Ok`) or, on an unshared store, a term fails.
    pub async fn run(
        self,
        first: Option<Term>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let heartbeat = self.heartbeat();
        let r = self.cycle(first, &mut shutdown).await;
        heartbeat.abort();
        r
    }

    async fn cycle(
        &self,
        mut term: Option<Term>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        loop {
            let current = match term.take() {
                Some(t) => t,
                None => match self.stand_by(shutdown).await? {
                    Some(t) => t,
                    None => return Ok(()),
                },
            };
            match self.lead(current, shutdown).await {
                Ended::Shutdown => return Ok(()),
                Ended::SteppedDown(why) if !self.shared => return Err(why),
                Ended::SteppedDown(why) => {
                    tracing::warn!(error = %format!("{why:#}"), "stepped down; standing by");
                }
            }
        }
    }

    /// Says this member is alive, every `HEARTBEAT_INTERVAL`, until aborted.
    fn heartbeat(&self) -> JoinHandle<()> {
        let store = self.parts.store.clone();
        let me = self.cluster.me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = store.heartbeat(&me).await {
                    tracing::debug!(error = %e, "cluster heartbeat failed; retrying");
                }
            }
        })
    }

    /// Follows the leader until elected (the new term) or shut down (`None`).
    async fn stand_by(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<Option<Term>> {
        self.cluster.update(|v| v.leading = None);
        let parts = &self.parts;
        let tail = tokio::spawn(super::tail::follow(
            parts.store.clone(),
            parts.events.clone(),
        ));
        let every = (self.cluster.lease / 5).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        let elected = loop {
            tokio::select! {
                _ = stopped(shutdown) => break None,
                _ = tick.tick() => {}
            }
            match self.try_lead().await {
                Ok(Some(term)) => break Some(term),
                Ok(None) => {
                    failures = 0;
                    self.note_leader().await;
                }
                Err(e) if !self.shared => {
                    tail.abort();
                    return Err(e);
                }
                Err(e) => {
                    failures += 1;
                    // Every failure while the store is down would flood the log.
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %format!("{e:#}"), failures, "standby: an election attempt failed; retrying");
                    }
                }
            }
        };
        tail.abort();
        Ok(elected)
    }

    /// Remembers who leads, for the standby's 503s.
    async fn note_leader(&self) {
        let Ok(view) = self.parts.store.cluster().await else {
            return;
        };
        let leader = view.leader.and_then(|name| {
            let m = view.members.iter().find(|m| m.name == name)?;
            Some((name, m.address.clone()))
        });
        self.cluster.update(|v| v.leader = leader);
    }

    /// Leads until the term ends.
    async fn lead(&self, mut term: Term, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let (lease, epoch) = (self.cluster.lease, term.epoch);
        let every = lease / 3;
        // When the last renewal that succeeded was sent (the election, at first): the lease
        // runs at least a lease from then.
        let mut renewed = Instant::now();
        let ended = loop {
            tokio::select! {
                _ = stopped(shutdown) => {
                    self.cluster.update(|v| v.leading = None);
                    if let Err(e) = term.finish(&self.parts, &self.cluster.slot).await {
                        tracing::warn!(error = %format!("{e:#}"), "the last batch did not commit");
                    }
                    self.resign(epoch).await;
                    return Ended::Shutdown;
                }
                r = &mut term.driver => {
                    break match r {
                        Ok(Ok(())) => anyhow::anyhow!("the scheduler stopped"),
                        Ok(Err(e)) => e,
                        Err(e) => anyhow::anyhow!("the scheduler panicked: {e}"),
                    };
                }
                _ = tokio::time::sleep(every) => {
                    let sent = Instant::now();
                    match tokio::time::timeout(every, self.parts.store.renew(epoch, lease)).await {
                        Ok(Ok(true)) => renewed = sent,
                        Ok(Ok(false)) => break anyhow::anyhow!(
                            "the lease of epoch {epoch} was lost (it expired or another server \
                             took it)"),
                        Ok(Err(e)) if renewed.elapsed() >= lease => break anyhow::anyhow!(
                            "no renewal of the lease succeeded for {lease:?}: {e}"),
                        Err(_) if renewed.elapsed() >= lease => break anyhow::anyhow!(
                            "no renewal of the lease succeeded for {lease:?} (renewals hang)"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed; retrying"),
                        Err(_) => tracing::warn!("renewing the lease timed out; retrying"),
                    }
                }
            }
        };
        self.cluster.update(|v| {
            v.leading = None;
            v.leader = None;
        });
        term.abandon(&self.parts, &self.cluster.slot);
        self.resign(epoch).await;
        Ended::SteppedDown(ended)
    }

    /// Frees the lease if this epoch still holds it (best effort: it expires anyway).
    async fn resign(&self, epoch: Epoch) {
        match tokio::time::timeout(RESIGN_WAIT, self.parts.store.resign(epoch)).await {
            Ok(Ok(())) => tracing::info!(epoch, "resigned the lease"),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "resigning failed; the lease expires by itself")
            }
            Err(_) => tracing::debug!("resigning timed out; the lease expires by itself"),
        }
    }
}

/// Resolves once shutdown is asked for (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
