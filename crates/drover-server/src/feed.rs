//! `EventFeed`: committed events in sequence order, with no gap and no duplicate, for every
//! consumer (SSE, gRPC watch, webhooks, metrics, the worker monitor).
//!
//! It subscribes to the live broadcast *before* it reads the durable backlog, so an event is
//! either in the store when the backlog is read or arrives on the broadcast afterwards; seqs
//! already delivered are skipped. When the broadcast lags (a slow consumer) or shows a gap, it
//! falls back to the store, then back to live.

use std::collections::VecDeque;
use std::sync::Arc;

use drover_core::Event;
use drover_store::{Store, StoreError};
use tokio::sync::broadcast::{self, error::RecvError};

/// Events read from the store per query while catching up.
const PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the scheduler is shutting down")]
    Closed,
}

pub struct EventFeed {
    store: Arc<dyn Store>,
    rx: broadcast::Receiver<Arc<Event>>,
    /// The last seq handed out (or the starting point).
    last: u64,
    /// Read from the store until it has nothing after `last`.
    catching_up: bool,
    backlog: VecDeque<Arc<Event>>,
}

impl EventFeed {
    /// Subscribes now. With `after`, replays the stored events after that seq first; without,
    /// yields only events committed from now on (after the newest stored one).
    pub async fn subscribe(
        store: Arc<dyn Store>,
        live: &broadcast::Sender<Arc<Event>>,
        after: Option<u64>,
    ) -> Result<EventFeed, FeedError> {
        let rx = live.subscribe();
        let (last, catching_up) = match after {
            Some(a) => (a, true),
            None => (store.last_event_seq().await?, false),
        };
        Ok(EventFeed {
            store,
            rx,
            last,
            catching_up,
            backlog: VecDeque::new(),
        })
    }

    /// The last seq handed out, or the starting point.
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The next stored event, or `None` once the store has nothing after the last one (for
    /// streams that replay history and end).
    pub async fn next_stored(&mut self) -> Result<Option<Arc<Event>>, FeedError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.seq > self.last {
                    self.last = e.seq;
                    return Ok(Some(e));
                }
                continue;
            }
            let page = self.store.events_after(self.last, PAGE).await?;
            if page.is_empty() {
                return Ok(None);
            }
            self.backlog.extend(page.into_iter().map(Arc::new));
        }
    }

    /// The next event. On a store error nothing is lost: calling again retries.
    pub async fn next(&mut self) -> Result<Arc<Event>, FeedError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.seq > self.last {
                    self.last = e.seq;
                    return Ok(e);
                }
                continue;
            }
            if self.catching_up {
                let page = self.store.events_after(self.last, PAGE).await?;
                if page.is_empty() {
                    self.catching_up = false;
                } else {
                    self.backlog.extend(page.into_iter().map(Arc::new));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(e) if e.seq <= self.last => continue,
                // Committed (it is published only after its commit) but something between was
                // not seen live: read the store from where we are.
                Ok(e) if e.seq > self.last + 1 => self.catching_up = true,
                Ok(e) => {
                    self.last = e.seq;
                    return Ok(e);
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "event subscriber lagged; reading the store");
                    self.catching_up = true;
                }
                Err(RecvError::Closed) => return Err(FeedError::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::{EventKind, WorkerEventState, Write};
    use drover_store::MemStore;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            at: seq as i64,
            kind: EventKind::Worker {
                name: format!("w{seq}"),
                state: WorkerEventState::Joined,
            },
        }
    }

    async fn commit(store: &MemStore, tx: &broadcast::Sender<Arc<Event>>, seqs: &[u64]) {
        store
            .commit(seqs.iter().map(|s| Write::Event(ev(*s))).collect())
            .await
            .unwrap();
        for s in seqs {
            let _ = tx.send(Arc::new(ev(*s)));
        }
    }

    async fn take(feed: &mut EventFeed, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(feed.next().await.unwrap().seq);
        }
        out
    }

    #[tokio::test]
    async fn replays_then_follows_without_gap_or_duplicate() {
        let store = Arc::new(MemStore::new());
        let (tx, _) = broadcast::channel(4);
        commit(&store, &tx, &[1, 2, 3]).await;
        let mut feed = EventFeed::subscribe(store.clone(), &tx, Some(1))
            .await
            .unwrap();
        // Committed after the subscription: in the store and on the broadcast.
        commit(&store, &tx, &[4]).await;
        assert_eq!(take(&mut feed, 3).await, [2, 3, 4]);
        commit(&store, &tx, &[5]).await;
        assert_eq!(take(&mut feed, 1).await, [5]);
        // The broadcast (capacity 4) overflows: the store fills in.
        commit(&store, &tx, &[6, 7, 8, 9, 10, 11, 12]).await;
        assert_eq!(take(&mut feed, 7).await, [6, 7, 8, 9, 10, 11, 12]);
    }

    #[tokio::test]
    async fn live_only_starts_after_the_newest() {
        let store = Arc::new(MemStore::new());
        let (tx, _) = broadcast::channel(16);
        commit(&store, &tx, &[1, 2]).await;
        let mut feed = EventFeed::subscribe(store.clone(), &tx, None)
            .await
            .unwrap();
        assert_eq!(feed.last_seq(), 2);
        commit(&store, &tx, &[3]).await;
        assert_eq!(take(&mut feed, 1).await, [3]);
        // A gap on the broadcast (4 never published live) is filled from the store.
        store.commit(vec![Write::Event(ev(4))]).await.unwrap();
        commit(&store, &tx, &[5]).await;
        assert_eq!(take(&mut feed, 2).await, [4, 5]);
    }
}
