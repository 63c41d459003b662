//! The worker protocol adapter: decodes a worker's stream into core inputs. No logic here.

use std::pin::Pin;
use std::sync::Arc;

use drover_api::convert::attempt_of;
use drover_api::proto::{
    self, server_message::Body, worker_message, worker_service_server::WorkerService,
};
use drover_core::{
    AttemptOutcome, AttemptRef, Input, JoinError, LogStream, Outcome, Reply, SessionId,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{until_revoked, Auth, Identity};
use crate::cluster::Cluster;
use crate::driver::{Command, DriverHandle, Outbox, OUTBOX};
use crate::edge::Closer;
use crate::tls::PeerCert;
use drover_api::namespace::Scope;

pub struct WorkerGrpc {
    pub auth: Arc<Auth>,
    /// The leading driver is taken per session: a session ends with its term.
    pub cluster: Arc<Cluster>,
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
    /// mTLS: a worker must present a certificate the server's client CA verified.
    pub require_client_cert: bool,
}

impl WorkerGrpc {
    /// mTLS: with a client CA, only a worker with a verified certificate may open a session.
    fn check_client_cert<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let verified = request.extensions().get::<PeerCert>() == Some(&PeerCert(true));
        if self.require_client_cert && !verified {
            return Err(Status::unauthenticated(
                "this server requires workers to present a client certificate signed by its \
                 --tls-client-ca: start the worker with --tls-cert and --tls-key",
            ));
        }
        Ok(())
    }
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<proto::ServerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for WorkerGrpc {
    type SessionStream = ServerStream;

    async fn session(
        &self,
        request: Request<Streaming<proto::WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.check_client_cert(&request)?;
        let who = request.extensions().get::<Identity>().cloned();
        let closer = request.extensions().get::<Closer>().cloned();
        let mut inbound = request.into_inner();
        // A standby sends the worker to the leader before reading anything.
        let driver = self
            .cluster
            .slot
            .current()
            .map_err(|_| self.cluster.not_leader_status())?;
        let register = first_register(&mut inbound, who.as_ref()).await?;
        let held = refs(&register.held);
        let session: SessionId = driver.next_id();
        let (out_tx, out_rx) = mpsc::channel(OUTBOX);
        let (cut_tx, cut) = watch::channel(false);
        let _ = out_tx.try_send(Ok(proto::ServerMessage {
            body: Some(Body::Registered(proto::Registered {
                worker: register.name.clone(),
                heartbeat_interval_ms: self.heartbeat_ms,
                lease_ms: self.lease_ms,
            })),
        }));
        let gone = || Status::unavailable("the scheduler is shutting down");
        driver
            .send(Command::Attach(session, Outbox::new(out_tx, cut_tx)))
            .await
            .map_err(|_| gone())?;
        let info = (&register).into();
        let joined = driver
            .request(|req| Input::WorkerJoin {
                req,
                session,
                info,
                held,
            })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if let Reply::Joined(Err(JoinError::NameInUse(name))) = joined {
            // Drops the outbox; the core knows no such session.
            let _ = driver
                .send(Command::Input(Input::WorkerLeave { session }, None))
                .await;
            tracing::warn!(worker = %name, session, "refused a second registration of a live worker");
            return Err(Status::already_exists(format!(
                "worker {name} is already connected; a name is released when its session \
                 ends or has been silent for a lease"
            )));
        }
        tracing::info!(worker = %register.name, session, "worker connected");
        let link = Link {
            driver,
            session,
            cut: cut.clone(),
            closer,
        };
        tokio::spawn(forward_inputs(link, inbound));
        // A revoked token ends the session: the worker hears why and cannot reconnect with it.
        let revoked = Status::unauthenticated("the worker's token was revoked or has expired");
        Ok(Response::new(Box::pin(until_revoked(
            until_cut(ReceiverStream::new(out_rx), cut),
            self.auth.clone(),
            who,
            Some(Err(revoked)),
        ))))
    }
}

/// The session's first message, which must be a valid registration.
async fn first_register(
    inbound: &mut Streaming<proto::WorkerMessage>,
    who: Option<&Identity>,
) -> Result<proto::Register, Status> {
    let mut register = match inbound.next().await {
        Some(Ok(proto::WorkerMessage {
            body: Some(worker_message::Body::Register(r)),
        })) => r,
        Some(Err(e)) => return Err(e),
        _ => {
            return Err(Status::invalid_argument(
                "the first message must be register",
            ))
        }
    };
    drover_api::limits::check_worker_name(&register.name)
        .map_err(|e| Status::invalid_argument(format!("register: {e}")))?;
    // A token limited to names, kinds or labels: a registration outside them is refused.
    if let Some(w) = who {
        w.worker_limits
            .allows(&register.name, &register.kinds, &register.labels)
            .map_err(|why| {
                Status::permission_denied(format!("worker {} refused: {why}", register.name))
            })?;
    }
    if register.slots == 0 {
        return Err(Status::invalid_argument(
            "register: slots must be at least 1",
        ));
    }
    register.namespaces = served_namespaces(&register, who)?;
    Ok(register)
}

/// The namespaces a worker serves: what it asked for (checked, and within its token's), or,
/// when it asked for none, every namespace its token allows.
fn served_namespaces(
    register: &proto::Register,
    who: Option<&Identity>,
) -> Result<Vec<String>, Status> {
    let scope = who.map_or(Scope::All, Identity::scope);
    for ns in &register.namespaces {
        drover_api::namespace::check("namespaces", ns)
            .map_err(|e| Status::invalid_argument(format!("register: {}", e.message)))?;
        if !scope.allows(ns) {
            return Err(Status::permission_denied(format!(
                "worker {} refused: its token does not allow namespace {ns}",
                register.name
            )));
        }
    }
    Ok(match (&scope, register.namespaces.is_empty()) {
        (Scope::Only(own), true) => own.clone(),
        _ => register.namespaces.clone(),
    })
}

/// What the inbound half of a session needs.
struct Link {
    driver: DriverHandle,
    session: SessionId,
    /// Set by the driver when the worker stopped reading (its outbox is full).
    cut: watch::Receiver<bool>,
    /// Closes the session's connection.
    closer: Option<Closer>,
}

/// Turns what the worker sends into inputs until its stream ends or the driver cuts it off,
/// then says it left. Each input waits for room in the driver's inbox, so a driver that is
/// behind slows the worker (HTTP/2 flow control) instead of queueing without bound.
async fn forward_inputs(mut link: Link, mut inbound: Streaming<proto::WorkerMessage>) {
    let session = link.session;
    loop {
        let msg = tokio::select! {
            m = inbound.next() => m,
            r = link.cut.wait_for(|cut| *cut) => {
                // Err: the driver dropped the outbox (the stream is gone); the session ends.
                if r.is_ok() {
                    tracing::warn!(session, "closing the connection of a worker that stopped reading");
                    if let Some(c) = &link.closer {
                        c.close();
                    }
                }
                break;
            }
        };
        let Some(Ok(msg)) = msg else { break };
        for input in decode(session, msg) {
            if link.driver.send(Command::Input(input, None)).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(session, "worker disconnected");
    let leave = Command::Input(Input::WorkerLeave { session }, None);
    let _ = link.driver.send(leave).await;
}

/// The session's messages until the driver cuts it off, then an error the worker would see
/// if it read again. A session that ends normally (its outbox dropped) sends what is queued.
fn until_cut<S>(
    stream: S,
    cut: watch::Receiver<bool>,
) -> impl Stream<Item = Result<proto::ServerMessage, Status>> + Send
where
    S: Stream<Item = Result<proto::ServerMessage, Status>> + Send + 'static,
{
    let mut watch = cut.clone();
    let ended = async move {
        if watch.wait_for(|cut| *cut).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let why = futures::stream::once(async move { *cut.borrow() }).filter_map(|cut| {
        cut.then(|| {
            Err(Status::resource_exhausted(
                "the worker did not read its stream; the server disconnected it",
            ))
        })
    });
    futures::StreamExt::take_until(stream, Box::pin(ended)).chain(why)
}

fn refs(list: &[proto::AttemptRef]) -> Vec<AttemptRef> {
    list.iter()
        .filter_map(|r| AttemptRef::try_from(r).ok())
        .collect()
}

/// Turns one worker message into core inputs; malformed parts are dropped (logged), never fatal.
fn decode(session: SessionId, msg: proto::WorkerMessage) -> Vec<Input> {
    let mut out = Vec::new();
    match msg.body {
        Some(worker_message::Body::Heartbeat(h)) => out.push(Input::Heartbeat {
            session,
            held: refs(&h.held),
        }),
        Some(worker_message::Body::Updates(u)) => {
            for s in u.started {
                match attempt_of(&s.attempt) {
                    Ok(attempt) => out.push(Input::Started { session, attempt }),
                    Err(e) => tracing::warn!(session, error = %e, "bad started message"),
                }
            }
            for l in u.logs {
                let stream = if l.stream == 2 {
                    LogStream::Stderr
                } else {
                    LogStream::Stdout
                };
                match attempt_of(&l.attempt) {
                    Ok(attempt) => out.push(Input::Log {
                        session,
                        attempt,
                        stream,
                        data: l.data,
                    }),
                    Err(e) => tracing::warn!(session, error = %e, "bad log message"),
                }
            }
            for f in u.finished {
                match attempt_of(&f.attempt) {
                    Ok(attempt) => out.push(Input::Finished {
                        session,
                        attempt,
                        outcome: outcome(f),
                    }),
                    Err(e) => tracing::warn!(session, error = %e, "bad finished message"),
                }
            }
        }
        Some(worker_message::Body::Register(_)) => {
            tracing::warn!(session, "ignoring a second register on one session")
        }
        None => {}
    }
    out
}

/// How an attempt ended, as reported; a succeeded attempt's result must be JSON of at most
/// [`MAX_RESULT_BYTES`](drover_api::limits::MAX_RESULT_BYTES), else the attempt failed (the
/// error says why; retries apply).
fn outcome(f: proto::Finished) -> Outcome {
    let kind: AttemptOutcome = proto::Outcome::try_from(f.outcome)
        .unwrap_or(proto::Outcome::Unspecified)
        .into();
    let mut o = Outcome {
        kind,
        exit_code: f.exit_code,
        error: f.error.map(|e| truncate(e, 4096)),
        result: None,
    };
    let Some(text) = f.result.filter(|_| kind == AttemptOutcome::Succeeded) else {
        return o;
    };
    match check_result(&text) {
        Ok(compact) => o.result = Some(compact.into()),
        Err(why) => {
            o.kind = AttemptOutcome::Failed;
            o.error = Some(why);
        }
    }
    o
}

/// A handler's result as compact JSON, or why it is refused.
fn check_result(text: &str) -> Result<String, String> {
    let max = drover_api::limits::MAX_RESULT_BYTES;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the handler's result is not JSON: {e}"))?;
    let compact = value.to_string();
    if compact.len() > max {
        return Err(format!(
            "the handler's result is {} bytes as JSON; at most {max} (1 MiB): store large \
             data elsewhere and return a reference",
            compact.len()
        ));
    }
    Ok(compact)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
