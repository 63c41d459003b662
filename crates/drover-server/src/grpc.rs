//! The worker protocol adapter: decodes a worker's stream into core inputs. No logic here.

use std::pin::Pin;
use std::sync::Arc;

use drover_api::convert::attempt_of;
use drover_api::proto::{
    self, server_message::Body, worker_message, worker_service_server::WorkerService,
};
use drover_core::{AttemptRef, Input, LogStream, Outcome, SessionId};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{until_revoked, Auth, Identity};
use crate::driver::{Command, DriverHandle};

pub struct WorkerGrpc {
    pub auth: Arc<Auth>,
    pub driver: DriverHandle,
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<proto::ServerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for WorkerGrpc {
    type SessionStream = ServerStream;

    async fn session(
        &self,
        request: Request<Streaming<proto::WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let who = request.extensions().get::<Identity>().cloned();
        let mut inbound = request.into_inner();
        let register = match inbound.next().await {
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
        if register.name.is_empty() || register.name.len() > drover_api::limits::MAX_NAME {
            return Err(Status::invalid_argument(
                "register: name must be 1 to 200 bytes",
            ));
        }
        if register.slots == 0 {
            return Err(Status::invalid_argument(
                "register: slots must be at least 1",
            ));
        }
        let held = refs(&register.held);
        let session: SessionId = self.driver.next_id();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let _ = out_tx.send(Ok(proto::ServerMessage {
            body: Some(Body::Registered(proto::Registered {
                worker: register.name.clone(),
                heartbeat_interval_ms: self.heartbeat_ms,
                lease_ms: self.lease_ms,
            })),
        }));
        let gone = || Status::unavailable("the scheduler is shutting down");
        self.driver
            .send(Command::Attach(session, out_tx))
            .map_err(|_| gone())?;
        self.driver
            .send(Command::Input(
                Input::WorkerJoin {
                    session,
                    info: (&register).into(),
                    held,
                },
                None,
            ))
            .map_err(|_| gone())?;
        tracing::info!(worker = %register.name, session, "worker connected");
        let driver = self.driver.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbound.next().await {
                let Ok(msg) = msg else { break };
                for input in decode(session, msg) {
                    if driver.send(Command::Input(input, None)).is_err() {
                        return;
                    }
                }
            }
            tracing::info!(session, "worker disconnected");
            let _ = driver.send(Command::Input(Input::WorkerLeave { session }, None));
        });
        // A revoked token ends the session: the worker hears why and cannot reconnect with it.
        let revoked = Status::unauthenticated("the worker's token was revoked or has expired");
        Ok(Response::new(Box::pin(until_revoked(
            UnboundedReceiverStream::new(out_rx),
            self.auth.clone(),
            who,
            Some(Err(revoked)),
        ))))
    }
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
                let kind = proto::Outcome::try_from(f.outcome)
                    .unwrap_or(proto::Outcome::Unspecified)
                    .into();
                match attempt_of(&f.attempt) {
                    Ok(attempt) => out.push(Input::Finished {
                        session,
                        attempt,
                        outcome: Outcome {
                            kind,
                            exit_code: f.exit_code,
                            error: f.error.map(|e| truncate(e, 4096)),
                        },
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
