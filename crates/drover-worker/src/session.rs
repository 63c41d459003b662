//! The connection loop: connect to a server, register, then multiplex the server's messages,
//! the executors' events, heartbeats and shutdown over one `WorkerService/Session` stream;
//! reconnect with backoff (cycling through the servers) whenever the stream fails.
//!
//! One task owns the [`Agent`]; nothing else touches it. After every step, whatever the agent
//! has pending is sent at once as one message per `Updates` batch (see `outbox.rs`), as long as
//! the bounded outbound channel has room; when it is full, updates keep accumulating and go
//! out together as soon as there is room.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use drover_api::proto::{
    server_message, worker_message, worker_service_client::WorkerServiceClient, ServerMessage,
    WorkerMessage,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};

use crate::agent::{Agent, Event};
use crate::{Handlers, WorkerConfig};

/// Messages queued towards the server. Small: each one is a batch.
const OUTBOUND_CAPACITY: usize = 16;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// From starting to connect until `Registered` arrives.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Used if the server announces a heartbeat interval of 0.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
const MAX_INBOUND_MESSAGE: usize = 64 << 20;
/// Most executor events handled before the next send.
const EVENT_BATCH: usize = 4096;
/// After shutdown begins and its grace (`WorkerConfig::shutdown_grace`) has passed: how much
/// longer until `run` returns, whatever happened.
const STOP_MARGIN: Duration = Duration::from_millis(400);

type Connecting = Pin<Box<dyn Future<Output = anyhow::Result<Box<Conn>>> + Send>>;

struct Conn {
    server: String,
    tx: mpsc::Sender<WorkerMessage>,
    inbound: Streaming<ServerMessage>,
    heartbeat: Interval,
}

enum Link {
    Down {
        retry_at: Instant,
    },
    Connecting {
        server: String,
        fut: Connecting,
    },
    Up(Box<Conn>),
    /// Shutting down: no more connecting.
    Off,
}

enum Step {
    Continue,
    Shutdown,
    StopDeadline,
    Server(ServerMessage),
    Connected(anyhow::Result<Box<Conn>>),
    Retry,
    /// The stream failed: why, and the leader a standby named (gRPC `UNAVAILABLE` with
    /// `x-drover-leader`).
    Lost(String, Option<String>),
}

/// What the connection loop keeps between steps.
struct Session {
    servers: Vec<String>,
    /// Applied to `https://` servers.
    tls: ClientTlsConfig,
    /// `authorization` metadata of every session request.
    auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    agent: Agent,
    events_rx: mpsc::UnboundedReceiver<Event>,
    backoff: Backoff,
    /// Index (modulo `servers`) of the server to try next.
    next_server: usize,
    link: Link,
    heartbeat_due: bool,
    /// When shutdown began.
    stop: Option<Instant>,
    /// Whether this process has registered once (a later refusal is a reconnect racing the
    /// server noticing that the previous connection died: retried).
    registered: bool,
    /// Why the worker stops on its own: its first registration was refused.
    refused: Option<anyhow::Error>,
    /// `WorkerConfig::shutdown_grace`.
    grace: Duration,
}

pub(crate) async fn run(
    cfg: WorkerConfig,
    handlers: Handlers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let servers = check(&cfg)?;
    let auth = match cfg.token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| anyhow!("the token has characters a header cannot carry"))?,
        ),
        None => None,
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel::<Event>();
    let backoff = Backoff::new(servers.len());
    let grace = cfg.shutdown_grace;
    let mut s = Session {
        grace,
        servers,
        tls: tls_config(&cfg.tls),
        auth,
        agent: Agent::new(Arc::new(cfg), events_tx, Arc::new(handlers)),
        events_rx,
        backoff,
        next_server: 0,
        link: Link::Down {
            retry_at: Instant::now(),
        },
        heartbeat_due: false,
        stop: None,
        registered: false,
        refused: None,
    };
    let mut shutdown = Box::pin(shutdown);
    loop {
        if !s.send_pending() {
            continue;
        }
        if s.finished() {
            break;
        }
        let step = s.next_step(&mut shutdown).await;
        if s.on_step(step).is_break() {
            break;
        }
    }
    if let Link::Up(conn) = s.link {
        close(
            *conn,
            s.stop.unwrap_or_else(Instant::now) + s.grace + STOP_MARGIN,
        )
        .await;
    }
    match s.refused {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Session {
    /// Sends what is pending, while the channel has room; `false` if the link was lost.
    fn send_pending(&mut self) -> bool {
        if let Link::Up(conn) = &self.link {
            if let Err(why) = flush(&mut self.agent, &mut self.heartbeat_due, &conn.tx) {
                self.link = lost(
                    &mut self.backoff,
                    (&self.servers, &mut self.next_server),
                    self.stop,
                    conn,
                    why,
                    None,
                );
                return false;
            }
        }
        true
    }

    /// Shutting down, nothing running, and nothing left to send (or no server to send it to).
    fn finished(&self) -> bool {
        self.stop.is_some()
            && self.agent.running() == 0
            && (self.agent.outbox.is_empty() || !matches!(self.link, Link::Up(_)))
    }

    /// Waits for the next thing to happen; executor events are handled here, in a batch.
    async fn next_step<F: Future<Output = ()>>(&mut self, shutdown: &mut Pin<Box<F>>) -> Step {
        let want_room = self.heartbeat_due || !self.agent.outbox.is_empty();
        let (tx, inbound, heartbeat, connecting, retry_at) = match &mut self.link {
            Link::Up(c) => (
                Some(&c.tx),
                Some(&mut c.inbound),
                Some(&mut c.heartbeat),
                None,
                None,
            ),
            Link::Connecting { fut, .. } => (None, None, None, Some(fut), None),
            Link::Down { retry_at } => (None, None, None, None, Some(*retry_at)),
            Link::Off => (None, None, None, None, None),
        };
        let (agent, events_rx, stop) = (&mut self.agent, &mut self.events_rx, self.stop);
        let grace = self.grace;
        tokio::select! {
            () = shutdown, if stop.is_none() => Step::Shutdown,
            () = sleep_until(stop.map(|s| s + grace)) => Step::StopDeadline,
            room = has_room(tx), if want_room => {
                if room { Step::Continue } else { Step::Lost("outbound stream closed".into(), None) }
            }
            msg = next_message(inbound) => match msg {
                Some(Ok(msg)) => Step::Server(msg),
                Some(Err(status)) => Step::Lost(format!("stream failed: {status}"), leader_of(&status)),
                None => Step::Lost("server closed the stream".into(), None),
            },
            Some(ev) = events_rx.recv() => {
                agent.on_event(ev);
                for _ in 0..EVENT_BATCH {
                    match events_rx.try_recv() {
                        Ok(ev) => agent.on_event(ev),
                        Err(_) => break,
                    }
                }
                Step::Continue
            }
            () = tick(heartbeat) => {
                self.heartbeat_due = true;
                Step::Continue
            }
            res = poll(connecting) => Step::Connected(res),
            () = sleep_until(retry_at) => Step::Retry,
        }
    }

    /// Acts on a step; `Break` ends the loop.
    fn on_step(&mut self, step: Step) -> ControlFlow<()> {
        match step {
            Step::Continue => {}
            Step::Shutdown => {
                tracing::info!(running = self.agent.running(), "worker shutting down");
                self.stop = Some(Instant::now());
                self.agent.begin_shutdown();
                if !matches!(self.link, Link::Up(_)) {
                    self.link = Link::Off;
                }
            }
            Step::StopDeadline => {
                tracing::warn!(
                    running = self.agent.running(),
                    "worker shutdown: attempts still running after the grace period"
                );
                return ControlFlow::Break(());
            }
            Step::Server(msg) => self.agent.on_server(msg),
            Step::Lost(why, leader) => {
                if let Link::Up(conn) = &self.link {
                    self.link = lost(
                        &mut self.backoff,
                        (&self.servers, &mut self.next_server),
                        self.stop,
                        conn,
                        &why,
                        leader.as_deref(),
                    );
                }
            }
            Step::Connected(Ok(conn)) => {
                self.registered = true;
                self.backoff.reset();
                self.heartbeat_due = false;
                self.link = Link::Up(conn);
            }
            Step::Connected(Err(e)) => {
                if let Some(why) = self.refusal(&e) {
                    tracing::error!(error = %why, "the server refused this worker");
                    self.refused = Some(why);
                    return ControlFlow::Break(());
                }
                self.connect_failed(&e)
            }
            Step::Retry => {
                let server = self.servers[self.next_server].clone();
                tracing::debug!(%server, "connecting");
                let tls = server.starts_with("https://").then(|| self.tls.clone());
                let fut = Box::pin(connect(
                    server.clone(),
                    tls,
                    self.auth.clone(),
                    self.agent.register(),
                ));
                self.link = Link::Connecting { server, fut };
            }
        }
        ControlFlow::Continue(())
    }

    /// A registration refusal that retrying cannot fix, on this process's first registration:
    /// the name is taken by a live worker, or the registration is invalid or not permitted.
    fn refusal(&self, e: &anyhow::Error) -> Option<anyhow::Error> {
        use tonic::Code;
        let status = e.downcast_ref::<Status>()?;
        let why = match status.code() {
            Code::AlreadyExists if !self.registered => "the worker name is already in use",
            Code::InvalidArgument | Code::PermissionDenied => "registration refused",
            _ => return None,
        };
        Some(anyhow!("{why}: {}", status.message()))
    }

    /// After a backoff, the leader a standby named (when it is one of the servers), else the
    /// next server.
    fn connect_failed(&mut self, e: &anyhow::Error) {
        if let Link::Connecting { server, .. } = &self.link {
            let status = e.downcast_ref::<Status>();
            if status.is_none() {
                // No answer at all: a standby still naming it as the leader (its view lags
                // the leader's death) is not followed back to it this round.
                self.backoff.mark_down(self.next_server);
            }
            let leader = status
                .and_then(leader_of)
                .filter(|l| !self.backoff.names_down(&self.servers, l));
            let next = move_on(&self.servers, self.next_server, leader.as_deref());
            let delay = self.backoff.next_delay();
            tracing::warn!(
                %server,
                error = format!("{e:#}"),
                leader = leader.as_deref().unwrap_or("-"),
                next = %self.servers[next],
                retry_in = ?delay,
                "cannot connect to the server; moving to {}", self.servers[next]
            );
            self.next_server = next;
            self.link = Link::Down {
                retry_at: Instant::now() + delay,
            };
        }
    }
}

/// Checks the configuration and returns the server URLs, `http://` added where no scheme is.
fn check(cfg: &WorkerConfig) -> anyhow::Result<Vec<String>> {
    if cfg.servers.is_empty() {
        bail!("no server address given");
    }
    drover_api::limits::check_worker_name(&cfg.name).map_err(|e| anyhow!(e))?;
    if cfg.slots == 0 {
        bail!("a worker needs at least one slot");
    }
    cfg.servers
        .iter()
        .map(|s| {
            let s = s.trim();
            let url = if s.contains("://") {
                s.to_string()
            } else {
                format!("http://{s}")
            };
            Endpoint::from_shared(url.clone())
                .with_context(|| format!("invalid server address {s:?}"))?;
            Ok(url)
        })
        .collect()
}

/// Sends pending updates (then a due heartbeat) while the channel has room. Updates go first,
/// so a heartbeat never lists an attempt whose result is already queued.
fn flush(
    agent: &mut Agent,
    heartbeat_due: &mut bool,
    tx: &mpsc::Sender<WorkerMessage>,
) -> Result<(), &'static str> {
    while *heartbeat_due || !agent.outbox.is_empty() {
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            // Full: updates keep accumulating; `has_room` wakes the loop when there is room.
            Err(TrySendError::Full(())) => return Ok(()),
            Err(TrySendError::Closed(())) => return Err("outbound stream closed"),
        };
        permit.send(if agent.outbox.is_empty() {
            *heartbeat_due = false;
            agent.heartbeat()
        } else {
            WorkerMessage {
                body: Some(worker_message::Body::Updates(agent.outbox.take_message())),
            }
        });
    }
    Ok(())
}

/// The link after losing `conn`: down until a backoff passes, then to the leader `leader`
/// names (when it is one of the servers) or the next server; off while shutting down. The
/// attempts the worker holds are re-attached by the next `Register` (its `held`), whichever
/// server that goes to.
fn lost(
    backoff: &mut Backoff,
    (servers, next_server): (&[String], &mut usize),
    stop: Option<Instant>,
    conn: &Conn,
    why: &str,
    leader: Option<&str>,
) -> Link {
    if stop.is_some() {
        tracing::warn!(server = %conn.server, "lost the server while shutting down: {why}");
        return Link::Off;
    }
    let leader = leader.filter(|l| !backoff.names_down(servers, l));
    let next = move_on(servers, *next_server, leader);
    let delay = backoff.next_delay();
    tracing::warn!(
        server = %conn.server,
        leader = leader.unwrap_or("-"),
        retry_in = ?delay,
        "lost the server: {why}; reconnecting to {}", servers[next]
    );
    *next_server = next;
    Link::Down {
        retry_at: Instant::now() + delay,
    }
}

/// The server after a miss on `servers[current]`: the leader a standby named when it is one
/// of `servers`, else the next one (`drover_api::failover`).
fn move_on(servers: &[String], current: usize, leader: Option<&str>) -> usize {
    drover_api::failover::next_server(servers, current, leader)
}

/// The leader's address in a standby's `UNAVAILABLE` (metadata `x-drover-leader`).
fn leader_of(status: &Status) -> Option<String> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    status
        .metadata()
        .get(drover_api::cluster::LEADER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Opens a session and waits for `Registered`.
/// The TLS settings of `https://` connections: the given CA (else the web PKI roots), and
/// the worker's own certificate when it has one.
fn tls_config(t: &crate::ClientTls) -> ClientTlsConfig {
    let c = ClientTlsConfig::new();
    let c = match &t.ca_cert_pem {
        Some(pem) => c.ca_certificate(Certificate::from_pem(pem)),
        None => c.with_webpki_roots(),
    };
    match &t.identity_pem {
        Some((cert, key)) => c.identity(Identity::from_pem(cert, key)),
        None => c,
    }
}

async fn connect(
    server: String,
    tls: Option<ClientTlsConfig>,
    auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    register: WorkerMessage,
) -> anyhow::Result<Box<Conn>> {
    let held = match &register.body {
        Some(worker_message::Body::Register(r)) => r.held.len(),
        _ => 0,
    };
    let open = async {
        let mut endpoint = Endpoint::from_shared(server.clone())?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = endpoint.connect().await?;
        let mut client =
            WorkerServiceClient::new(channel).max_decoding_message_size(MAX_INBOUND_MESSAGE);
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        tx.try_send(register)
            .map_err(|_| anyhow!("outbound channel unusable"))?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(a) = auth {
            request.metadata_mut().insert("authorization", a);
        }
        let mut inbound = client.session(request).await?.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| anyhow!("the server closed the stream before registering"))?;
        let Some(server_message::Body::Registered(reg)) = first.body else {
            bail!("the server's first message was not registered");
        };
        let every = match reg.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(ms).max(MIN_HEARTBEAT),
        };
        tracing::info!(
            %server,
            worker = %reg.worker,
            heartbeat_ms = every.as_millis() as u64,
            lease_ms = reg.lease_ms,
            held,
            "registered with the server"
        );
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Box::new(Conn {
            server: server.clone(),
            tx,
            inbound,
            heartbeat,
        }))
    };
    tokio::time::timeout(REGISTER_TIMEOUT, open)
        .await
        .map_err(|_| anyhow!("no registered reply within {REGISTER_TIMEOUT:?}"))?
}

/// Ends the session: closes our half (the server then sees every update sent before) and waits,
/// until `until`, for the server to close its half, so nothing queued is cut off.
async fn close(conn: Conn, until: Instant) {
    let Conn {
        tx, mut inbound, ..
    } = conn;
    drop(tx);
    let drained = tokio::time::timeout_at(until, async {
        while let Ok(Some(msg)) = inbound.message().await {
            if let Some(server_message::Body::Assignments(a)) = msg.body {
                tracing::debug!(
                    count = a.assignments.len(),
                    "assignments after shutdown; the server reclaims them"
                );
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("the server did not close the stream in time");
    }
}

async fn has_room(tx: Option<&mpsc::Sender<WorkerMessage>>) -> bool {
    match tx {
        // The permit is given back at once: `flush` takes it again synchronously.
        Some(tx) => tx.reserve().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn next_message(
    inbound: Option<&mut Streaming<ServerMessage>>,
) -> Option<Result<ServerMessage, Status>> {
    match inbound {
        Some(s) => s.message().await.transpose(),
        None => std::future::pending().await,
    }
}

async fn tick(interval: Option<&mut Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn poll(connecting: Option<&mut Connecting>) -> anyhow::Result<Box<Conn>> {
    match connecting {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Exponential backoff, 100 ms doubling to 5 s, each delay jittered to 50-100 % of its value.
/// With several servers it grows once per round: until every server has missed once since the
/// last growth, the next one is tried after the shortest delay (so a server that is back is
/// found as soon as with one server).
struct Backoff {
    next: Duration,
    rng: StdRng,
    servers: usize,
    /// Misses since the delay last grew.
    missed: usize,
    /// The servers that did not answer at all since then.
    down: Vec<usize>,
}

impl Backoff {
    fn new(servers: usize) -> Self {
        Backoff {
            next: BACKOFF_MIN,
            rng: StdRng::from_os_rng(),
            servers: servers.max(1),
            missed: 0,
            down: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
        self.missed = 0;
        self.down.clear();
    }

    /// `servers[i]` did not answer at all (until the delay next grows).
    fn mark_down(&mut self, i: usize) {
        self.down.push(i);
    }

    /// Whether `address` is one of `servers` that did not answer at all lately.
    fn names_down(&self, servers: &[String], address: &str) -> bool {
        drover_api::failover::position(servers, address).is_some_and(|i| self.down.contains(&i))
    }

    fn next_delay(&mut self) -> Duration {
        self.missed += 1;
        let d = if self.missed < self.servers {
            BACKOFF_MIN
        } else {
            self.missed = 0;
            self.down.clear();
            let d = self.next;
            self.next = (d * 2).min(BACKOFF_MAX);
            d
        };
        let half = d / 2;
        half + half.mul_f64(self.rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new(1);
        let mut nominal = BACKOFF_MIN;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            nominal = (nominal * 2).min(BACKOFF_MAX);
        }
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }

    #[test]
    fn with_several_servers_backoff_grows_once_per_round() {
        let mut b = Backoff::new(3);
        let mut nominal = BACKOFF_MIN;
        for round in 0..6 {
            for k in 0..3 {
                let d = b.next_delay();
                // The last miss of a round waits the grown delay; the others the shortest.
                let want = if k == 2 { nominal } else { BACKOFF_MIN };
                assert!(d >= want / 2 && d <= want, "round {round}, miss {k}: {d:?}");
            }
            nominal = (nominal * 2).min(BACKOFF_MAX);
        }
    }

    #[test]
    fn a_standby_s_unavailable_names_the_leader_the_worker_goes_to() {
        let servers = vec![
            "http://a:7070".to_string(),
            "http://b:7070".to_string(),
            "http://c:7070".to_string(),
        ];
        let mut standby = Status::unavailable("this server is a standby");
        standby.metadata_mut().insert(
            drover_api::cluster::LEADER_HEADER,
            "http://c:7070".parse().unwrap(),
        );
        let leader = leader_of(&standby);
        assert_eq!(leader.as_deref(), Some("http://c:7070"));
        assert_eq!(move_on(&servers, 0, leader.as_deref()), 2);
        // Through `anyhow`, as a failed connect carries it.
        let e = anyhow::Error::from(standby);
        assert_eq!(
            e.downcast_ref::<Status>().and_then(leader_of).as_deref(),
            Some("http://c:7070")
        );
        // No hint, another code, or a leader the worker was not given: the next server.
        assert_eq!(leader_of(&Status::unavailable("down")), None);
        let mut denied = Status::permission_denied("no");
        denied.metadata_mut().insert(
            drover_api::cluster::LEADER_HEADER,
            "http://c:7070".parse().unwrap(),
        );
        assert_eq!(leader_of(&denied), None);
        assert_eq!(move_on(&servers, 0, None), 1);
        assert_eq!(move_on(&servers, 2, Some("http://elsewhere:7070")), 0);
    }

    #[test]
    fn a_leader_that_did_not_answer_is_not_followed_back_this_round() {
        let servers = vec![
            "http://a:7070".to_string(),
            "http://b:7070".to_string(),
            "http://c:7070".to_string(),
        ];
        let mut b = Backoff::new(3);
        b.mark_down(0);
        assert!(b.names_down(&servers, "http://a:7070"));
        assert!(!b.names_down(&servers, "http://c:7070"));
        assert!(!b.names_down(&servers, "http://elsewhere:7070"));
        // The round ends (the delay grows): a may be back.
        for _ in 0..3 {
            b.next_delay();
        }
        assert!(!b.names_down(&servers, "http://a:7070"));
        b.mark_down(0);
        b.reset();
        assert!(!b.names_down(&servers, "http://a:7070"));
    }

    #[test]
    fn server_addresses_get_a_scheme_and_bad_ones_are_refused() {
        let mut cfg = WorkerConfig::new(
            vec!["127.0.0.1:7070".into(), "https://a.example:7070".into()],
            "w".into(),
        );
        assert_eq!(
            check(&cfg).unwrap(),
            vec!["http://127.0.0.1:7070", "https://a.example:7070"]
        );
        cfg.servers = vec!["http://bad host".into()];
        assert!(check(&cfg).is_err());
        cfg.servers = vec![];
        assert!(check(&cfg).is_err());
        let mut cfg = WorkerConfig::new(vec!["x:1".into()], "w".into());
        cfg.slots = 0;
        assert!(check(&cfg).is_err());
    }
}
