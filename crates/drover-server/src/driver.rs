//! The driver: the one actor that owns the `Coordinator`.
//!
//! Loop: wait for a command or the core's next timer; drain everything else that arrived (the
//! batch); feed it to the core; commit the core's writes in one transaction (group commit);
//! only then send assignments to workers and replies to clients. While a commit is in flight,
//! new commands queue up in the inbox and become the next, larger batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use drover_api::proto::{self, server_message::Body};
use drover_core::{
    Assignment, Coordinator, Effects, Event, Input, Reply, RequestId, SessionId, ToWorker,
    WorkerSummary, Write,
};
use drover_store::{Store, StoreError};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::now_micros;
use crate::metrics::Metrics;
use crate::secrets::SecretKeys;

/// Most commands folded into one batch; bounds a commit's size and latency.
const MAX_BATCH: usize = 50_000;

pub type Outbox = mpsc::UnboundedSender<Result<proto::ServerMessage, tonic::Status>>;

pub enum Command {
    /// A core input; a reply, if any, goes to `reply`.
    Input(Input, Option<oneshot::Sender<Reply>>),
    /// A worker connection opened: where to send its messages. Precedes its `WorkerJoin`.
    Attach(SessionId, Outbox),
    Workers(oneshot::Sender<Vec<WorkerSummary>>),
    /// A read of the core's live state (queue counts, flow records); runs between batches.
    Query(Box<dyn FnOnce(&Coordinator) + Send>),
}

/// A cheap, cloneable handle for the protocol adapters.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::UnboundedSender<Command>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("the scheduler is shutting down")]
pub struct DriverGone;

impl DriverHandle {
    pub fn next_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn send(&self, cmd: Command) -> Result<(), DriverGone> {
        self.tx.send(cmd).map_err(|_| DriverGone)
    }

    /// Sends an input and waits for its reply, which comes only after the commit.
    pub async fn request(
        &self,
        make: impl FnOnce(RequestId) -> Input,
    ) -> Result<Reply, DriverGone> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Input(make(self.next_id()), Some(tx)))?;
        rx.await.map_err(|_| DriverGone)
    }

    /// Reads the core's live state: `f` runs on the driver, between batches.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Coordinator) -> T + Send + 'static,
    ) -> Result<T, DriverGone> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Query(Box::new(move |c| {
            let _ = tx.send(f(c));
        })))?;
        rx.await.map_err(|_| DriverGone)
    }

    pub async fn workers(&self) -> Result<Vec<WorkerSummary>, DriverGone> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Workers(tx))?;
        rx.await.map_err(|_| DriverGone)
    }
}

pub struct Driver {
    core: Coordinator,
    store: Arc<dyn Store>,
    rx: mpsc::UnboundedReceiver<Command>,
    outboxes: HashMap<SessionId, Outbox>,
    waiting: HashMap<RequestId, oneshot::Sender<Reply>>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<Arc<Event>>,
    /// Opens secret env for assignments (none: assignments carry no secret env).
    secrets: Option<Arc<SecretKeys>>,
}

impl Driver {
    pub fn new(
        core: Coordinator,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<Arc<Event>>,
    ) -> (Driver, DriverHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = DriverHandle {
            tx,
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        };
        let driver = Driver {
            core,
            store,
            rx,
            outboxes: HashMap::new(),
            waiting: HashMap::new(),
            metrics,
            events,
            secrets: None,
        };
        (driver, handle)
    }

    /// The keys that open secret env when an assignment is sent.
    pub fn with_secrets(mut self, keys: Arc<SecretKeys>) -> Self {
        self.secrets = Some(keys);
        self
    }

    /// An assignment as sent: the only place secret env is opened.
    fn assignment(&self, a: &Assignment) -> proto::Assignment {
        let mut msg: proto::Assignment = a.into();
        if let Some(keys) = &self.secrets {
            keys.reveal(a, &mut msg);
        }
        msg
    }

    /// Runs until every handle is dropped. A failed commit is fatal: the process must restart
    /// from the store rather than continue on state the store does not have.
    ///
    /// Pipelined: while batch N commits (on the store's thread), the core already decides
    /// batch N+1; its writes commit after N's, and nothing of N+1 is sent before that.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut batch = Vec::new();
        let mut pending = Effects::default();
        let mut inflight: Option<InFlight> = None;
        loop {
            let deadline = self.core.poll_timeout().map(|at| {
                let wait_us = (at - now_micros()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_micros(wait_us)
            });
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                c = self.rx.recv() => match c {
                    Some(c) => batch.push(c),
                    None => {
                        if let Some(f) = inflight.take() {
                            self.complete(f).await?;
                        }
                        self.commit_now(std::mem::take(&mut pending)).await?;
                        return Ok(());
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {}
                r = async { (&mut inflight.as_mut().expect("guarded").commit).await }, if inflight.is_some() => {
                    let f = inflight.take().expect("guarded");
                    self.finish(f, r)?;
                }
            }
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.decide(&mut batch, &mut pending);
            if inflight.is_none() && !pending.is_empty() {
                let mut fx = std::mem::take(&mut pending);
                let writes = std::mem::take(&mut fx.writes);
                if writes.is_empty() {
                    self.deliver(fx);
                } else {
                    let store = self.store.clone();
                    let events = committed_events(&writes);
                    inflight = Some(InFlight {
                        events,
                        writes: writes.len(),
                        started: std::time::Instant::now(),
                        commit: tokio::spawn(async move { store.commit(writes).await }),
                        fx,
                    });
                }
            }
        }
    }

    /// Feeds a batch of commands to the core; its effects accumulate in `fx`.
    fn decide(&mut self, batch: &mut Vec<Command>, fx: &mut Effects) {
        let now = now_micros();
        for cmd in batch.drain(..) {
            match cmd {
                Command::Input(input, reply) => {
                    if let Input::WorkerLeave { session } = &input {
                        self.outboxes.remove(session);
                    }
                    if let (Some(tx), Some(req)) = (reply, request_id(&input)) {
                        self.waiting.insert(req, tx);
                    }
                    self.core.handle(now, input, fx);
                }
                Command::Attach(session, outbox) => {
                    self.outboxes.insert(session, outbox);
                }
                Command::Workers(tx) => {
                    let _ = tx.send(self.core.workers());
                }
                Command::Query(f) => f(&self.core),
            }
        }
        self.core.handle_timeout(now, fx);
        self.metrics.record_effects(fx);
        fx.reclaimed = 0;
        fx.stale_rejected = 0;
    }

    async fn complete(&mut self, mut f: InFlight) -> anyhow::Result<()> {
        let r = (&mut f.commit).await;
        self.finish(f, r)
    }

    /// A commit ended: on success its effects may now be seen by workers and clients.
    fn finish(
        &mut self,
        f: InFlight,
        r: Result<Result<(), StoreError>, tokio::task::JoinError>,
    ) -> anyhow::Result<()> {
        let r = r.map_err(|e| anyhow::anyhow!("commit task failed: {e}"))?;
        r.map_err(|e| {
            tracing::error!(error = %e, "commit failed; stopping the scheduler");
            anyhow::anyhow!("commit failed: {e}")
        })?;
        self.metrics.record_commit(f.writes, f.started.elapsed());
        self.publish(f.events);
        self.deliver(f.fx);
        Ok(())
    }

    /// Hands committed events to live subscribers (SSE, watch, webhooks). Nobody listening is fine.
    fn publish(&self, events: Vec<Event>) {
        for e in events {
            let _ = self.events.send(Arc::new(e));
        }
    }

    async fn commit_now(&mut self, mut fx: Effects) -> anyhow::Result<()> {
        let writes = std::mem::take(&mut fx.writes);
        if !writes.is_empty() {
            let events = committed_events(&writes);
            self.store
                .commit(writes)
                .await
                .map_err(|e| anyhow::anyhow!("commit failed: {e}"))?;
            self.publish(events);
        }
        self.deliver(fx);
        Ok(())
    }

    /// Carries out sends and replies of a committed batch, one message per worker per kind.
    fn deliver(&mut self, fx: Effects) {
        let mut assigns: HashMap<SessionId, Vec<proto::Assignment>> = HashMap::new();
        let mut cancels: HashMap<SessionId, Vec<proto::AttemptRef>> = HashMap::new();
        for (session, msg) in fx.sends {
            match msg {
                ToWorker::Assign(a) => {
                    let msg = self.assignment(&a);
                    assigns.entry(session).or_default().push(msg);
                }
                ToWorker::Cancel(r) => cancels.entry(session).or_default().push(r.into()),
                ToWorker::Reject { attempt, reason } => {
                    tracing::warn!(task_id = %attempt.task_id, attempt = attempt.attempt, %reason, "rejected a stale result");
                    self.push(
                        session,
                        Body::Rejected(proto::Rejected {
                            attempt: Some(attempt.into()),
                            reason,
                        }),
                    );
                }
            }
        }
        for (session, attempts) in cancels {
            self.push(session, Body::Cancel(proto::Cancel { attempts }));
        }
        for (session, assignments) in assigns {
            self.push(
                session,
                Body::Assignments(proto::Assignments { assignments }),
            );
        }
        for (req, reply) in fx.replies {
            if let Some(tx) = self.waiting.remove(&req) {
                let _ = tx.send(reply);
            }
        }
    }

    fn push(&mut self, session: SessionId, body: Body) {
        let gone = match self.outboxes.get(&session) {
            Some(out) => out
                .send(Ok(proto::ServerMessage { body: Some(body) }))
                .is_err(),
            None => false,
        };
        if gone {
            // The connection closed; its leave input is on its way. Leases cover the rest.
            self.outboxes.remove(&session);
        }
    }
}

/// A batch whose writes are being committed, and what to deliver once they are.
struct InFlight {
    events: Vec<Event>,
    commit: tokio::task::JoinHandle<Result<(), StoreError>>,
    fx: Effects,
    writes: usize,
    started: std::time::Instant,
}

fn committed_events(writes: &[Write]) -> Vec<Event> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn request_id(input: &Input) -> Option<RequestId> {
    match input {
        Input::Submit { req, .. }
        | Input::Cancel { req, .. }
        | Input::SubmitFlow { req, .. }
        | Input::SubmitPlaced { req, .. }
        | Input::DrainWorker { req, .. }
        | Input::ResumeWorker { req, .. }
        | Input::ConfigureQueue { req, .. }
        | Input::Schedule { req, .. }
        | Input::WorkerJoin { req, .. } => Some(*req),
        _ => None,
    }
}
