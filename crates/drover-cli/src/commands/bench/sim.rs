//! Simulated workers for `drover bench` at fleet scale: each one a real gRPC session of the
//! worker protocol (register, heartbeat at the interval the server announces, started and
//! finished for every assignment), without an agent behind it: a no-op completes the moment
//! it arrives. Thousands fit in one process; the server cannot tell them from real workers.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use drover_api::proto::{
    server_message, worker_message, worker_service_client::WorkerServiceClient, AttemptRef,
    Finished, Heartbeat, Register, Started, Updates, WorkerMessage,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// A connected simulated worker; dropping `stop` (or sending `true`) ends its session.
pub struct SimWorker {
    pub name: String,
    /// When its first assignments arrived.
    pub first_assignment: Arc<OnceLock<Instant>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimWorker {
    /// Connects and registers; returns once the server said `Registered`.
    pub async fn start(
        url: &str,
        token: Option<&str>,
        name: String,
        slots: u32,
        prefetch: u32,
    ) -> anyhow::Result<SimWorker> {
        let channel = Endpoint::from_shared(url.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("worker {name}: connecting to {url}"))?;
        let (tx, rx) = mpsc::channel(16);
        let register = Register {
            name: name.clone(),
            slots,
            prefetch,
            version: "bench-sim".into(),
            ..Default::default()
        };
        tx.try_send(msg(worker_message::Body::Register(register)))
            .map_err(|_| anyhow!("outbound channel unusable"))?;
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse()?);
        }
        let mut inbound = WorkerServiceClient::new(channel)
            .session(req)
            .await
            .with_context(|| format!("worker {name}: opening its session"))?
            .into_inner();
        let every = match inbound.message().await?.and_then(|m| m.body) {
            Some(server_message::Body::Registered(r)) => {
                Duration::from_millis(r.heartbeat_interval_ms.max(10))
            }
            other => bail!("worker {name}: expected registered, got {other:?}"),
        };
        let (stop, stopped) = watch::channel(false);
        let (started, up) = oneshot::channel();
        let first_assignment = Arc::new(OnceLock::new());
        let first = first_assignment.clone();
        let task = tokio::spawn(session(inbound, tx, every, stopped, (started, first)));
        let _ = up.await;
        Ok(SimWorker {
            name,
            first_assignment,
            stop,
            task,
        })
    }

    /// Ends the session (closes the stream) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn msg(body: worker_message::Body) -> WorkerMessage {
    WorkerMessage { body: Some(body) }
}

/// Answers every assignment at once (started and succeeded, one message per batch) and
/// heartbeats, until stopped or the stream ends.
async fn session(
    mut inbound: tonic::Streaming<drover_api::proto::ServerMessage>,
    tx: mpsc::Sender<WorkerMessage>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    (up, first): (oneshot::Sender<()>, Arc<OnceLock<Instant>>),
) {
    let _ = up.send(());
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(m)) => {
                    if let Some(server_message::Body::Assignments(a)) = m.body {
                        let _ = first.set(Instant::now());
                        let refs: Vec<AttemptRef> =
                            a.assignments.into_iter().filter_map(|a| a.attempt).collect();
                        if tx.send(done(refs)).await.is_err() {
                            return;
                        }
                    }
                }
                _ => return,
            },
            _ = beat.tick() => {
                let hb = Heartbeat { held: vec![], running: 0 };
                if tx.send(msg(worker_message::Body::Heartbeat(hb))).await.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Started and finished (succeeded) for each attempt, in one message.
fn done(refs: Vec<AttemptRef>) -> WorkerMessage {
    let started = refs
        .iter()
        .map(|r| Started {
            attempt: Some(r.clone()),
        })
        .collect();
    let finished = refs
        .into_iter()
        .map(|r| Finished {
            attempt: Some(r),
            outcome: drover_api::proto::Outcome::Succeeded as i32,
            exit_code: Some(0),
            error: None,
            result: None,
        })
        .collect();
    msg(worker_message::Body::Updates(Updates {
        started,
        logs: vec![],
        finished,
    }))
}
