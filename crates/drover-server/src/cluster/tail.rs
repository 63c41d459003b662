//! A standby's event feed: the leader's committed events, read from the store whenever the
//! store says the leader committed (LISTEN/NOTIFY), and every `FALLBACK` in case a notice was
//! lost, published on the same broadcast the driver uses while this server leads. Consumers
//! (`EventFeed`) see no difference: they already fill any gap from the store.

use std::sync::Arc;
use std::time::Duration;

use drover_core::Event;
use drover_store::Store;
use tokio::sync::broadcast;

/// Events read per query.
const PAGE: usize = 1000;
/// A look at the store even without a notice.
const FALLBACK: Duration = Duration::from_secs(10);

/// Runs until aborted (this server is elected) or the store stops telling.
pub async fn follow(store: Arc<dyn Store>, events: broadcast::Sender<Arc<Event>>) {
    let Some(notices) = store.notices() else {
        return;
    };
    let mut committed = notices.events;
    let mut last = loop {
        match store.last_event_seq().await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::debug!(error = %e, "standby: reading the newest event failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        tokio::select! {
            changed = committed.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(FALLBACK) => {}
        }
        loop {
            match store.events_after(last, PAGE).await {
                Ok(page) if page.is_empty() => break,
                Ok(page) => {
                    for e in page {
                        last = e.seq;
                        let _ = events.send(Arc::new(e));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "standby: reading events failed; retrying");
                    break;
                }
            }
        }
    }
}
