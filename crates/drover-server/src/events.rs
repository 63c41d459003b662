//! The event stream adapters: `GET /v1/events` (Server-Sent Events) and the gRPC
//! `EventService/Watch`. Both read an `EventFeed` (store backlog, then live), filter it, and
//! encode each event; neither can slow the driver (a lagging subscriber re-reads the store).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Extension, Router};
use drover_api::events::{EventFilter, EventView, SseFrame};
use drover_api::namespace::Scope;
use drover_api::proto::{self, event_service_server::EventService};
use drover_api::ApiError;
use drover_core::Event;
use drover_store::Store;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::IntoParams;

use crate::auth::{until_revoked, Auth, Identity};
use crate::driver::DriverError;
use crate::edge::Edge;
use crate::feed::{EventFeed, FeedError};
use crate::http::{ApiQuery, AppState, HttpError};
use crate::metrics::{Metrics, SubscriberGuard};

/// What an open event stream holds until it ends: its gauge count and its place.
type Subscriber = (SubscriberGuard, tokio::sync::OwnedSemaphorePermit);

/// The OpenAPI part of `/v1/events`, merged into `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(sse), components(schemas(EventView, SseFrame)))]
pub struct EventApi;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/events", get(sse))
}

/// A comment line this often keeps proxies and clients from timing out an idle stream.
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// What the stream tells `EventSource` clients to wait before reconnecting.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only this namespace's events (default: every namespace the token may see; worker
    /// events only with a token of every namespace and no `namespace`).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    namespace: Option<String>,
    /// Only this task's own events (task events only: a schedule's `fired` event naming
    /// the task is not one of them).
    #[param(schema_with = drover_api::schema::task_id_or_empty)]
    task: Option<String>,
    /// Only task events of this queue.
    #[param(schema_with = drover_api::schema::filter_text)]
    queue: Option<String>,
    /// Only these new states (comma-separated): task states; worker states (`joined`,
    /// `suspect`, `lost`, `alive`, `draining`, `resumed`, `left`); workflow states
    /// (`pending`, `running`, `succeeded`, `failed`, `cancelled`); schedule changes
    /// (`created`, `updated`, `paused`, `resumed`, `deleted`, `fired`, `skipped`).
    #[param(schema_with = drover_api::schema::event_states)]
    state: Option<String>,
    /// Only these types (comma-separated): `task`, `worker`, `workflow`, `schedule`.
    #[serde(rename = "type")]
    #[param(schema_with = drover_api::schema::event_types)]
    kind: Option<String>,
    /// Only this workflow's events and the task events of its nodes.
    #[param(schema_with = drover_api::schema::filter_text)]
    workflow: Option<String>,
    /// Replay events after this seq first (the `Last-Event-ID` header wins over it).
    #[param(schema_with = drover_api::schema::u64_any)]
    after: Option<u64>,
    /// `false`: send the stored events (after `after`, default the newest 100) and end,
    /// instead of following live ones.
    follow: Option<bool>,
}

/// The header a reconnecting `EventSource` sends (documentation only: read by `resume_point`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ResumeHeader {
    /// Resume after this seq (wins over `after`); empty: as if absent.
    #[param(rename = "Last-Event-ID", schema_with = drover_api::schema::last_event_id)]
    last_event_id: Option<String>,
}

/// Events a non-following stream replays when no `after` is given.
const HISTORY: u64 = 100;

/// Builds the filter; a bad value is a 400 naming the parameter, a namespace outside the
/// caller's a 403.
fn filter_of(p: &EventParams, scope: &Scope) -> Result<EventFilter, ApiError> {
    let list = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
    let mut f = EventFilter::parse(
        p.task.as_deref(),
        p.queue.as_deref(),
        &list(&p.state),
        &list(&p.kind),
        p.workflow.as_deref(),
    )?;
    f.namespaces = scope
        .narrowed(p.namespace.as_deref(), "namespace")?
        .filter();
    Ok(f)
}

/// The caller's scope: its token's namespaces (every one without a token, `--no-auth`).
fn scope_of(who: Option<&Identity>) -> Scope {
    who.map_or(Scope::All, Identity::scope)
}

/// A feed that cannot start: the store's error by its kind, or the server is stopping.
fn feed_err(e: FeedError) -> HttpError {
    match e {
        FeedError::Store(e) => e.into(),
        FeedError::Closed => DriverError::Gone.into(),
    }
}

/// Where a (re)connecting client resumes: `Last-Event-ID`, else `?after=`, else now.
fn resume_point(headers: &HeaderMap, after: Option<u64>) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => {
            let bad = |s: &str| {
                let m = format!("'{s}' is not an event sequence number");
                ApiError::invalid("Last-Event-ID", m)
            };
            let s = v
                .to_str()
                .map_err(|_| bad(&String::from_utf8_lossy(v.as_bytes())))?
                .trim();
            if s.is_empty() {
                return Ok(after);
            }
            s.parse::<u64>().map(Some).map_err(|_| bad(s))
        }
        None => Ok(after),
    }
}

/// Yields the events of `feed` that pass `filter`, mapped by `encode`. Ends when the server
/// shuts down or the store fails (the client resumes from the last id it saw), or, unless
/// `follow`, once the stored events are sent.
fn filtered<T: Send + 'static>(
    feed: EventFeed,
    filter: EventFilter,
    guard: Subscriber,
    follow: bool,
    encode: fn(&Event) -> T,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(
        (feed, filter, guard),
        move |(mut feed, filter, guard)| async move {
            loop {
                let next = if follow {
                    feed.next().await
                } else {
                    match feed.next_stored().await {
                        Ok(Some(e)) => Ok(e),
                        Ok(None) => return None,
                        Err(e) => Err(e),
                    }
                };
                match next {
                    Ok(e) if filter.matches(&e) => {
                        return Some((encode(&e), (feed, filter, guard)))
                    }
                    Ok(_) => continue,
                    Err(FeedError::Closed) => return None,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream ended by a store error");
                        return None;
                    }
                }
            }
        },
    )
}

fn sse_event(e: &Event) -> Result<SseEvent, Infallible> {
    let v = EventView::from_event(e);
    let data = serde_json::to_string(&v).unwrap_or_default();
    Ok(SseEvent::default()
        .id(e.seq.to_string())
        .event(v.kind)
        .data(data))
}

/// `GET /v1/events`: Server-Sent Events, `id:` the seq, `event:` the type, `data:` the JSON.
#[utoipa::path(get, path = "/v1/events", params(EventParams, ResumeHeader),
    responses((status = 200, content_type = "text/event-stream", body = SseFrame,
            description = "Server-Sent Events: `id:` the seq, `event:` the type, `data:` an \
                EventView as JSON"),
        (status = 400, body = ApiError),
        (status = 503, body = ApiError, description = "too many open event streams")))]
async fn sse(
    State(s): State<AppState>,
    who: Option<Extension<Identity>>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<EventParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, HttpError> {
    let filter = filter_of(&p, &scope_of(who.as_ref().map(|w| &w.0)))?;
    let mut after = resume_point(&headers, p.after)?;
    let follow = p.follow.unwrap_or(true);
    if !follow && after.is_none() {
        after = Some(s.store.last_event_seq().await?.saturating_sub(HISTORY));
    }
    // Subscribed before the response starts: a client that sees the headers may read state
    // and rely on every later change arriving here.
    let place = s
        .edge
        .subscriber()
        .ok_or_else(|| HttpError(s.edge.too_many_streams()))?;
    let feed = EventFeed::subscribe(s.store.clone(), &s.events, after)
        .await
        .map_err(feed_err)?;
    let guard = (s.metrics.subscriber("sse"), place);
    // Where the stream starts, so a client that reconnects before any event arrived misses
    // nothing either.
    let hello = format!("subscribed after={}", feed.last_seq());
    let hello = futures::stream::once(async move {
        Ok::<_, Infallible>(SseEvent::default().retry(RETRY).comment(hello))
    });
    let stream = futures::StreamExt::chain(hello, filtered(feed, filter, guard, follow, sse_event));
    // Ends when the caller's token is revoked; the reconnect is then refused.
    let stream = until_revoked(stream, s.auth.clone(), who.map(|w| w.0), None);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keep-alive")))
}

/// The gRPC twin of `GET /v1/events`.
pub struct EventGrpc {
    pub auth: Arc<Auth>,
    pub store: Arc<dyn Store>,
    pub events: broadcast::Sender<Arc<Event>>,
    pub metrics: Arc<Metrics>,
    pub edge: Arc<Edge>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::Event, tonic::Status>> + Send>>;

fn proto_event(e: &Event) -> Result<proto::Event, tonic::Status> {
    Ok(proto::Event::from(e))
}

#[tonic::async_trait]
impl EventService for EventGrpc {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<proto::WatchRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        let who = request.extensions().get::<Identity>().cloned();
        let r = request.into_inner();
        let mut filter = EventFilter::parse(
            Some(&r.task),
            Some(&r.queue),
            &r.states,
            &r.types,
            Some(&r.workflow),
        )
        .map_err(|e| e.to_status())?;
        let namespace = Some(r.namespace.as_str()).filter(|n| !n.is_empty());
        filter.namespaces = scope_of(who.as_ref())
            .narrowed(namespace, "namespace")
            .map_err(|e| e.to_status())?
            .filter();
        let place = self.edge.subscriber().ok_or_else(|| {
            let mut e = self.edge.too_many_streams();
            e.code = drover_api::ErrorCode::ResourceExhausted;
            e.to_status()
        })?;
        let feed = EventFeed::subscribe(self.store.clone(), &self.events, r.after)
            .await
            .map_err(|e| feed_err(e).0.to_status())?;
        let guard = (self.metrics.subscriber("grpc"), place);
        let stream = filtered(feed, filter, guard, true, proto_event);
        let revoked = tonic::Status::unauthenticated("the token was revoked or has expired");
        Ok(tonic::Response::new(Box::pin(until_revoked(
            stream,
            self.auth.clone(),
            who,
            Some(Err(revoked)),
        ))))
    }
}
