//! Commits and token changes made by other servers on the same database, pushed by
//! PostgreSQL's LISTEN/NOTIFY: a standby follows the leader's events without polling.
//!
//! The commit sends `NOTIFY drover_events` in its transaction (delivered only if it commits);
//! token writes send `NOTIFY drover_tokens`. One connection per store listens, reconnecting
//! after a pause when it drops; after every (re)connect both counters move, since what was
//! sent while it was away is lost and the consumers must look at the store.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::Notices;

pub(super) const EVENTS: &str = "drover_events";
pub(super) const TOKENS: &str = "drover_tokens";
/// The pause before a dropped listener connects again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts the listener; it runs until every receiver of both counters is dropped.
pub(super) fn start(config: tokio_postgres::Config) -> Notices {
    let (events, events_rx) = watch::channel(0u64);
    let (tokens, tokens_rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while !(events.is_closed() && tokens.is_closed()) {
            if let Err(e) = listen(&config, &events, &tokens).await {
                tracing::debug!(error = %e, "the store's notification connection dropped");
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    });
    Notices {
        events: events_rx,
        tokens: tokens_rx,
    }
}

/// One connection's life: LISTEN, then count notifications until it drops.
async fn listen(
    config: &tokio_postgres::Config,
    events: &watch::Sender<u64>,
    tokens: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection yields the notifications; it must be polled for the client to work.
    let pump = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.channel().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "notification connection error");
                    break;
                }
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {EVENTS}; LISTEN {TOKENS}"))
        .await;
    if listening.is_ok() {
        events.send_modify(|n| *n += 1);
        tokens.send_modify(|n| *n += 1);
        while let Some(channel) = rx.recv().await {
            let counter = if channel == EVENTS { events } else { tokens };
            counter.send_modify(|n| *n += 1);
            if events.is_closed() && tokens.is_closed() {
                break;
            }
        }
    }
    pump.abort();
    listening
}
