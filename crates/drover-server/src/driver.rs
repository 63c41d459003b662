//! The driver: the one actor that owns the `Coordinator`.
//!
//! Loop: wait for a command or the core's next timer; drain everything else that arrived (the
//! batch); feed it to the core; commit the core's writes in one transaction (group commit);
//! only then send assignments to workers and replies to clients. While a commit is in flight,
//! new commands queue up in the inbox and become the next, larger batch.
//!
//! A failed commit is retried, the same writes in the same order (a failed transaction left
//! nothing behind), with backoff for `store_retry`; meanwhile the server is degraded
//! (`StoreHealth`) and later batches wait behind it. Only when the store still fails after
//! that does the driver stop (the server restarts from the store). While a commit is stalled
//! (failing, or slower than `STALL_AFTER`) the core's timers do not run: nothing can be
//! delivered, so no lease may run out and no new assignment be made meanwhile; once it
//! commits, every lease is extended by the time it took (`Input::DeliveryResumed`).
//!
//! Every queue around it is bounded. The inbox holds `INBOX` commands: a worker's stream
//! waits for room (HTTP/2 flow control then slows the worker), a state-changing request
//! waits at most `ADMIT_WAIT` and is refused with 503 (nothing changed), a read waits. A
//! worker's outbox holds `OUTBOX` messages: a worker that stops reading fills it and is cut
//! off (its connection closed, its session left); its leases run out as for any silent worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_api::proto::{self, server_message::Body};
use drover_core::{
    Assignment, Coordinator, Effects, Event, Input, Reply, RequestId, SessionId, TaskDef, TaskId,
    ToWorker, WorkerSummary, Write,
};
use drover_store::{Store, StoreError};
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::clock::now_micros;
use crate::health::StoreHealth;
use crate::metrics::Metrics;
use crate::secrets::SecretKeys;

/// Most commands folded into one batch; bounds a commit's size and latency.
const MAX_BATCH: usize = 50_000;
/// Writes decided while a commit is in flight, past which the driver stops taking commands
/// until it lands: a slow store then fills the inbox (backpressure), not memory.
const MAX_PENDING_WRITES: usize = 200_000;
/// The pause before a failed commit is tried again; it doubles after each failure, up to
/// `RETRY_MAX` (each pause with jitter: between half and all of it).
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// A commit in flight this long is stalled: the core's timers wait for it.
const STALL_AFTER: Duration = Duration::from_millis(500);
/// How long a failing store is retried by default (`--store-retry`).
pub const STORE_RETRY: Duration = Duration::from_secs(30);
/// Commands waiting for the driver. Full means the driver is behind by this many: senders
/// wait rather than grow memory.
pub const INBOX: usize = 16_384;
/// How long a state-changing request waits for room in a full inbox before it is refused.
pub const ADMIT_WAIT: Duration = Duration::from_secs(5);
/// Messages waiting to be sent to one worker. Credit bounds assignments, so a healthy worker
/// never has many; a full outbox means the worker stopped reading.
pub const OUTBOX: usize = 256;

/// A worker session's way out: its bounded message queue, and the switch that cuts it off
/// when it stops reading (the session's stream ends and its connection closes).
pub struct Outbox {
    tx: mpsc::Sender<Result<proto::ServerMessage, tonic::Status>>,
    cut: watch::Sender<bool>,
}

impl Outbox {
    pub fn new(
        tx: mpsc::Sender<Result<proto::ServerMessage, tonic::Status>>,
        cut: watch::Sender<bool>,
    ) -> Outbox {
        Outbox { tx, cut }
    }
}

pub enum Command {
    /// A core input; a reply, if any, goes to `reply`.
    Input(Input, Option<oneshot::Sender<Reply>>),
    /// A core input whose reply also carries the tasks it created, as committed.
    Committed(Input, oneshot::Sender<Answer>),
    /// A worker connection opened: where to send its messages. Precedes its `WorkerJoin`.
    Attach(SessionId, Outbox),
    Workers(oneshot::Sender<Vec<WorkerSummary>>),
    /// A read of the core's live state (queue counts, flow records); runs between batches.
    Query(Box<dyn FnOnce(&Coordinator) + Send>),
    /// Commit what is decided and stop, though handles remain (open worker streams hold
    /// some): the server is shutting down.
    Stop,
}

/// A cheap, cloneable handle for the protocol adapters.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    admit_wait: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("the scheduler is shutting down")]
    Gone,
    /// Its inbox stayed full for `ADMIT_WAIT`: the request was not sent, nothing changed.
    #[error("the scheduler is too busy to take the request (its inbox is full)")]
    Busy,
    /// Sent, but the driver stopped (a lost lease, shutdown) before answering: its commit
    /// may or may not have happened.
    #[error(
        "the scheduler stopped before answering; the request may or may not have taken effect"
    )]
    Unanswered,
}

impl DriverHandle {
    pub fn next_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends a command, waiting for room in the inbox as long as it takes.
    pub async fn send(&self, cmd: Command) -> Result<(), DriverError> {
        self.tx.send(cmd).await.map_err(|_| DriverError::Gone)
    }

    /// Sends an input and waits for its reply, which comes only after the commit. A full
    /// inbox is waited on for `ADMIT_WAIT` at most (`Busy`: nothing was sent).
    pub async fn request(
        &self,
        make: impl FnOnce(RequestId) -> Input,
    ) -> Result<Reply, DriverError> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Input(make(self.next_id()), Some(tx));
        self.tx
            .send_timeout(cmd, self.admit_wait)
            .await
            .map_err(|e| match e {
                SendTimeoutError::Timeout(_) => DriverError::Busy,
                SendTimeoutError::Closed(_) => DriverError::Gone,
            })?;
        rx.await.map_err(|_| DriverError::Unanswered)
    }

    /// `request`, answered with the tasks the input created as they were committed too (a
    /// submit's reply then needs no read of the store).
    pub async fn request_committed(
        &self,
        make: impl FnOnce(RequestId) -> Input,
    ) -> Result<Answer, DriverError> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Committed(make(self.next_id()), tx);
        self.tx
            .send_timeout(cmd, self.admit_wait)
            .await
            .map_err(|e| match e {
                SendTimeoutError::Timeout(_) => DriverError::Busy,
                SendTimeoutError::Closed(_) => DriverError::Gone,
            })?;
        rx.await.map_err(|_| DriverError::Unanswered)
    }

    /// Reads the core's live state: `f` runs on the driver, between batches.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Coordinator) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Query(Box::new(move |c| {
            let _ = tx.send(f(c));
        })))
        .await?;
        rx.await.map_err(|_| DriverError::Gone)
    }

    pub async fn workers(&self) -> Result<Vec<WorkerSummary>, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Workers(tx)).await?;
        rx.await.map_err(|_| DriverError::Gone)
    }
}

pub struct Driver {
    core: Coordinator,
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Command>,
    outboxes: HashMap<SessionId, Outbox>,
    waiting: HashMap<RequestId, Waiter>,
    /// The created tasks of the batch being delivered that `Committed` waiters are told.
    created: Created,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<Arc<Event>>,
    /// Opens secret env for assignments (none: assignments carry no secret env).
    secrets: Option<Arc<SecretKeys>>,
    /// Degraded while a commit is being retried; the edge reads it.
    health: Arc<StoreHealth>,
    /// How long a failing commit is retried before the driver stops.
    store_retry: Duration,
    /// Jitter of the retry pauses.
    rng: rand::rngs::StdRng,
    /// `Command::Stop` arrived.
    stopping: bool,
    /// Bodies of recently submitted tasks, for assignments (the core keeps none).
    bodies: bodies::Bodies,
}

impl Driver {
    pub fn new(
        core: Coordinator,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<Arc<Event>>,
    ) -> (Driver, DriverHandle) {
        Self::with_inbox(core, store, metrics, events, INBOX, ADMIT_WAIT)
    }

    /// `new` with another inbox capacity and admission wait (tests).
    pub fn with_inbox(
        core: Coordinator,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<Arc<Event>>,
        inbox: usize,
        admit_wait: Duration,
    ) -> (Driver, DriverHandle) {
        let (tx, rx) = mpsc::channel(inbox.max(1));
        let handle = DriverHandle {
            tx,
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            admit_wait,
        };
        let driver = Driver {
            core,
            store,
            rx,
            outboxes: HashMap::new(),
            waiting: HashMap::new(),
            created: Created::new(),
            metrics,
            events,
            secrets: None,
            health: StoreHealth::new(),
            store_retry: STORE_RETRY,
            rng: rand::rngs::StdRng::from_os_rng(),
            stopping: false,
            bodies: bodies::Bodies::default(),
        };
        (driver, handle)
    }

    /// Where the driver reports the store's health, and how long it retries a failing commit.
    pub fn with_store_retry(mut self, health: Arc<StoreHealth>, retry: Duration) -> Self {
        self.health = health;
        self.store_retry = retry;
        self
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

    /// Runs until every handle is dropped. A commit that still fails after `store_retry` is
    /// fatal: the process must restart from the store rather than continue on state the store
    /// does not have.
    ///
    /// Pipelined: while batch N commits (on the store's thread), the core already decides
    /// batch N+1; its writes commit after N's, and nothing of N+1 is sent before that. While
    /// N is stalled, inputs still reach the core (heartbeats renew leases, reads are
    /// answered) but its timers wait; N+1, N+2... pile up in `pending` and commit after N.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut batch = Vec::new();
        let mut pending = Effects::default();
        let mut inflight: Option<InFlight> = None;
        loop {
            let stalled = inflight.as_ref().is_some_and(InFlight::stalled);
            let deadline = self.core.poll_timeout().filter(|_| !stalled).map(|at| {
                let wait_us = (at - now_micros()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_micros(wait_us)
            });
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let room = pending.writes.len() < MAX_PENDING_WRITES;
            tokio::select! {
                c = self.rx.recv(), if room => match c {
                    Some(c) => batch.push(c),
                    None => {
                        if let Some(f) = inflight.take() {
                            self.settle(f).await?;
                        }
                        if let Some(f) = self.launch(std::mem::take(&mut pending)) {
                            self.settle(f).await?;
                        }
                        return Ok(());
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {}
                r = async { (&mut inflight.as_mut().expect("guarded").commit).await }, if inflight.is_some() => {
                    let f = inflight.take().expect("guarded");
                    let paused = f.stalled().then(|| f.started.elapsed().as_micros() as i64);
                    inflight = self.finish(f, r)?;
                    if let (Some(paused), None) = (paused, &inflight) {
                        let resumed = Input::DeliveryResumed { paused };
                        self.core.handle(now_micros(), resumed, &mut pending);
                    }
                }
            }
            while room && batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let timers = !inflight.as_ref().is_some_and(InFlight::stalled);
            self.decide(&mut batch, &mut pending, timers);
            if self.stopping {
                if let Some(f) = inflight.take() {
                    self.settle(f).await?;
                }
                if let Some(f) = self.launch(std::mem::take(&mut pending)) {
                    self.settle(f).await?;
                }
                return Ok(());
            }
            if inflight.is_none() && !pending.is_empty() {
                inflight = self.launch(std::mem::take(&mut pending));
            }
        }
    }

    /// Feeds a batch of commands to the core, then (with `timers`) its due timers; the
    /// effects accumulate in `fx`.
    fn decide(&mut self, batch: &mut Vec<Command>, fx: &mut Effects, timers: bool) {
        let now = now_micros();
        for cmd in batch.drain(..) {
            match cmd {
                Command::Input(input, reply) => {
                    if let Input::WorkerLeave { session } = &input {
                        self.outboxes.remove(session);
                    }
                    if let (Some(tx), Some(req)) = (reply, request_id(&input)) {
                        self.waiting.insert(req, Waiter::Reply(tx));
                    }
                    self.core.handle(now, input, fx);
                }
                Command::Committed(input, tx) => {
                    if let Some(req) = request_id(&input) {
                        self.waiting.insert(req, Waiter::Committed(tx));
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
                Command::Stop => self.stopping = true,
            }
        }
        if timers {
            self.core.handle_timeout(now, fx);
        }
        self.metrics.record_effects(fx);
        fx.reclaimed = 0;
        fx.stale_rejected = 0;
    }

    /// Starts committing `fx`'s writes; without any, delivers the rest at once.
    fn launch(&mut self, mut fx: Effects) -> Option<InFlight> {
        let writes = std::mem::take(&mut fx.writes);
        self.bodies.remember(&writes);
        let unread = Arc::new(self.bodies.resolve(&mut fx.sends));
        if writes.is_empty() {
            self.deliver(fx);
            return None;
        }
        Some(InFlight {
            events: committed_events(&writes),
            created: committed::collect(&self.waiting, &fx.replies, &writes),
            writes: writes.len(),
            started: Instant::now(),
            commit: self.attempt(writes, unread.clone(), Duration::ZERO),
            unread,
            failing: None,
            fx,
        })
    }

    /// One commit attempt after `pause`, then the read of the bodies its assignments still
    /// lack (`unread`). The store consumes what it commits, so it gets a copy; a failure hands
    /// the writes back for the next attempt. A large batch (or a retry) commits on its own
    /// task, its copy made off the driver's thread; a small one is polled by the driver
    /// itself, which spares a request on an idle server two task wake-ups.
    fn attempt(&self, writes: Vec<Write>, unread: Arc<Vec<TaskId>>, pause: Duration) -> Commit {
        let store = self.store.clone();
        let inline = pause.is_zero() && writes.len() <= INLINE_COMMIT;
        let run = async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            match store.commit(writes.clone()).await {
                Ok(()) => Ok(read_bodies(&*store, &unread).await),
                Err(e) => Err((e, writes)),
            }
        };
        if inline {
            Box::pin(async move { Ok(run.await) })
        } else {
            Box::pin(tokio::spawn(run))
        }
    }

    /// Waits for a batch to commit, through its retries (at shutdown).
    async fn settle(&mut self, mut f: InFlight) -> anyhow::Result<()> {
        loop {
            let r = (&mut f.commit).await;
            match self.finish(f, r)? {
                Some(retrying) => f = retrying,
                None => return Ok(()),
            }
        }
    }

    /// A commit attempt ended. On success its effects may now be seen by workers and clients;
    /// on failure the batch is tried again (returned, still in flight) until `store_retry`
    /// has passed since its first failure.
    fn finish(
        &mut self,
        mut f: InFlight,
        r: Result<CommitResult, tokio::task::JoinError>,
    ) -> anyhow::Result<Option<InFlight>> {
        let r = r.map_err(|e| {
            tracing::error!(error = %e, "the commit task failed; stopping the scheduler");
            anyhow::anyhow!("commit task failed: {e}")
        })?;
        match r {
            Ok(read) => {
                let unsent = bodies::fill(&mut f.fx.sends, &read);
                if !unsent.is_empty() {
                    tracing::error!(
                        count = unsent.len(),
                        "assignments whose task bodies could not be read are not sent; \
                         their leases run out and the tasks are retried"
                    );
                }
                if let Some(failing) = &f.failing {
                    tracing::warn!(
                        attempts = failing.attempts + 1,
                        after = ?failing.since.elapsed(),
                        "the store takes commits again; the batch is committed and the server is ready"
                    );
                    self.health.recovered();
                    self.metrics.set_store_degraded(false);
                }
                self.metrics.record_commit(f.writes, f.started.elapsed());
                self.publish(f.events);
                self.created = f.created;
                self.deliver(f.fx);
                Ok(None)
            }
            Err((e, writes)) => {
                let pause = self.failed(&mut f.failing, &e)?;
                f.commit = self.attempt(writes, f.unread.clone(), pause);
                Ok(Some(f))
            }
        }
    }

    /// Counts a failed attempt and marks the server degraded; the pause before the next one,
    /// or the error that stops the driver when `store_retry` has passed (or the store says
    /// its data is corrupt, which no retry mends).
    fn failed(
        &mut self,
        failing: &mut Option<Failing>,
        e: &StoreError,
    ) -> anyhow::Result<Duration> {
        self.metrics.commit_failed();
        let f = failing.get_or_insert_with(|| Failing {
            since: Instant::now(),
            attempts: 0,
            pause: RETRY_FIRST,
        });
        f.attempts += 1;
        let failing_for = f.since.elapsed();
        let left = self.store_retry.saturating_sub(failing_for);
        if matches!(e, StoreError::Corrupt(_)) {
            tracing::error!(error = %e, "the store reports corrupt data; stopping the scheduler");
            anyhow::bail!("commit failed: {e}");
        }
        if let StoreError::Fenced { ours, current } = *e {
            // Another server leads: nothing of this batch happened, and no retry can make it.
            tracing::warn!(error = %e, "a commit was fenced off; this server no longer leads");
            return Err(anyhow::Error::new(StoreError::Fenced { ours, current }));
        }
        if left.is_zero() {
            tracing::error!(
                error = %e,
                attempts = f.attempts,
                failing_for = ?failing_for,
                store_retry = ?self.store_retry,
                "the store still refuses the commit after --store-retry; stopping the scheduler \
                 (restart it: it recovers every acknowledged task from the store)"
            );
            anyhow::bail!(
                "the store refused a commit for {:.1}s ({} attempts, --store-retry {:?}): {e}",
                failing_for.as_secs_f64(),
                f.attempts,
                self.store_retry
            );
        }
        if f.attempts == 1 {
            tracing::warn!(
                error = %e,
                store_retry = ?self.store_retry,
                "a commit failed; retrying it, refusing state-changing requests (503) meanwhile"
            );
        } else {
            tracing::info!(error = %e, attempts = f.attempts, "the commit failed again; retrying");
        }
        self.health.failing(f.since, f.attempts, e);
        self.metrics.set_store_degraded(true);
        let pause = f.pause / 2 + self.rng.random_range(Duration::ZERO..=f.pause / 2);
        f.pause = (f.pause * 2).min(RETRY_MAX);
        Ok(pause.min(left))
    }

    /// Hands committed events to live subscribers (SSE, watch, webhooks). Nobody listening is fine.
    fn publish(&self, events: Vec<Event>) {
        for e in events {
            let _ = self.events.send(Arc::new(e));
        }
    }

    /// Carries out sends and replies of a committed batch, one message per worker per kind.
    fn deliver(&mut self, fx: Effects) {
        let mut assigns: HashMap<SessionId, Vec<proto::Assignment>> = HashMap::new();
        let mut cancels: HashMap<SessionId, Vec<proto::AttemptRef>> = HashMap::new();
        for (session, msg) in fx.sends {
            match msg {
                // Its body could not be read (logged by `finish`).
                ToWorker::Assign(a) if a.def.spec.is_in_store() => {}
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
            for assignments in split_by_size(assignments) {
                self.push(
                    session,
                    Body::Assignments(proto::Assignments { assignments }),
                );
            }
        }
        for (req, reply) in fx.replies {
            if let Some(w) = self.waiting.remove(&req) {
                w.answer(reply, &mut self.created, &self.core);
            }
        }
        self.created.clear();
    }

    fn push(&mut self, session: SessionId, body: Body) {
        let Some(out) = self.outboxes.get(&session) else {
            return;
        };
        match out
            .tx
            .try_send(Ok(proto::ServerMessage { body: Some(body) }))
        {
            Ok(()) => {}
            // The connection closed; its leave input is on its way. Leases cover the rest.
            Err(TrySendError::Closed(_)) => {
                self.outboxes.remove(&session);
            }
            // It stopped reading: cut it off rather than queue without end. Its session ends
            // (the adapter sends the leave) and what it holds is reclaimed when its leases
            // run out, unless it reconnects and re-attaches them first.
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    session,
                    queued = OUTBOX,
                    "a worker stopped reading its stream; disconnecting it"
                );
                self.metrics.worker_cut();
                if let Some(out) = self.outboxes.remove(&session) {
                    let _ = out.cut.send(true);
                }
            }
        }
    }
}

/// How a commit attempt ended: the bodies read for its assignments, or a failure that hands
/// the writes back for the next attempt.
type CommitResult = Result<HashMap<TaskId, Arc<TaskDef>>, (StoreError, Vec<Write>)>;

/// The stored definitions of `ids`. A failed read is logged and leaves them out: the commit
/// stands, and the assignments without a body are not sent (their leases reclaim them).
async fn read_bodies(store: &dyn Store, ids: &[TaskId]) -> HashMap<TaskId, Arc<TaskDef>> {
    if ids.is_empty() {
        return HashMap::new();
    }
    match store.task_defs(ids).await {
        Ok(defs) => defs.into_iter().collect(),
        Err(e) => {
            tracing::error!(error = %e, count = ids.len(), "reading task bodies for assignments failed");
            HashMap::new()
        }
    }
}

/// A commit attempt in flight (on its own task, or polled by the driver).
type Commit = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<CommitResult, tokio::task::JoinError>> + Send>,
>;

/// Batches of at most this many writes commit without a task of their own (`attempt`).
const INLINE_COMMIT: usize = 256;

/// A batch whose writes are being committed, and what to deliver once they are.
struct InFlight {
    events: Vec<Event>,
    /// The new tasks `Committed` waiters are told about.
    created: Created,
    commit: Commit,
    fx: Effects,
    /// Tasks whose bodies are read once the batch commits.
    unread: Arc<Vec<TaskId>>,
    writes: usize,
    /// The first attempt's start.
    started: Instant,
    /// Set once an attempt failed.
    failing: Option<Failing>,
}

impl InFlight {
    /// Failing, or slower than `STALL_AFTER`: the core's timers wait for it.
    fn stalled(&self) -> bool {
        self.failing.is_some() || self.started.elapsed() >= STALL_AFTER
    }
}

/// A batch the store has refused so far.
struct Failing {
    /// The first failure.
    since: Instant,
    attempts: u32,
    /// The pause before the next attempt, before jitter.
    pause: Duration,
}

/// About the most bytes of payload in one `Assignments` message (a worker decodes up to
/// 64 MiB; handler payloads are up to 1 MiB each).
const MAX_ASSIGN_BYTES: usize = 4 << 20;

/// Cuts a worker's assignments into messages of about `MAX_ASSIGN_BYTES` (at least one each).
fn split_by_size(list: Vec<proto::Assignment>) -> Vec<Vec<proto::Assignment>> {
    let size = |a: &proto::Assignment| match &a.spec {
        Some(proto::assignment::Spec::Handler(h)) => {
            h.payload.len() + h.upstream.values().map(String::len).sum::<usize>()
        }
        _ => 0,
    };
    if list.iter().map(size).sum::<usize>() <= MAX_ASSIGN_BYTES {
        return vec![list];
    }
    let mut out = vec![Vec::new()];
    let mut bytes = 0;
    for a in list {
        let n = size(&a);
        let last = out.last_mut().expect("one message at least");
        if !last.is_empty() && bytes + n > MAX_ASSIGN_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        out.last_mut().expect("one message at least").push(a);
    }
    out
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

mod bodies;
mod committed;
pub use committed::{Answer, CommittedTask};
use committed::{Created, Waiter};

#[cfg(test)]
mod bounded;
#[cfg(test)]
mod tests;
