//! Open streams (SSE, gRPC event watch, the worker stream) end within a second of their
//! token being revoked or expiring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use super::{Auth, Identity};

/// How often a stream re-checks its token besides on every revocation (for expiry).
const RECHECK: Duration = Duration::from_millis(250);

/// Resolves once `who`'s token is no longer valid (never with `--no-auth`).
pub async fn revoked(auth: Arc<Auth>, who: Identity) {
    if who.hash.is_none() {
        return futures::future::pending().await;
    }
    let mut changes = auth.revocations();
    let mut tick = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    // The server is stopping; the expiry tick still runs.
                    changes = auth.revocations();
                }
            }
            _ = tick.tick() => {}
        }
        if !auth.still_valid(&who) {
            tracing::info!(token = %who.name, "stream ended: its token was revoked or expired");
            return;
        }
    }
}

/// `stream` until `who`'s token is revoked or expires; then `last` (if any) as a final item
/// (a gRPC status that says why). Without an identity (an unguarded route), `stream` as is.
pub fn until_revoked<S>(
    stream: S,
    auth: Arc<Auth>,
    who: Option<Identity>,
    last: Option<S::Item>,
) -> impl Stream<Item = S::Item> + Send
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    let stop = async move {
        match who {
            Some(who) => revoked(auth, who).await,
            None => futures::future::pending().await,
        }
        flag.store(true, Ordering::SeqCst);
    };
    let mut last = last;
    stream.take_until(Box::pin(stop)).chain(
        futures::stream::once(async move { fired.load(Ordering::SeqCst) })
            .filter_map(move |f| futures::future::ready(if f { last.take() } else { None })),
    )
}
