//! Webhooks: `/v1/webhooks` and the dispatcher that POSTs matching committed events.
//!
//! Each webhook has its own task fed by an `EventFeed` from its durable cursor (so a restart
//! or a lagging broadcast loses nothing), with a window of events in flight, per-request
//! timeouts, retries with exponential backoff and jitter, and a global bound on concurrent
//! requests. Delivery attempts and cursors are written in batches by one recorder task. None
//! of it touches the driver: a slow or dead endpoint only delays its own webhook.
//!
//! Each POST carries `X-Drover-Timestamp` (Unix seconds) and `X-Drover-Signature:
//! sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret>`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use drover_api::events::{
    event_name, pattern_matches, DeliveryList, DeliveryView, EventView, WebhookCreate, WebhookList,
    WebhookView,
};
use drover_api::namespace::{Scope, ALL_NAMESPACES};
use drover_api::rest::rfc3339;
use drover_api::{limits, ApiError};
use drover_core::Event;
use drover_store::{DeliveryRecord, Store, WebhookRecord};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc, Semaphore};
use utoipa::IntoParams;

use crate::clock::now_micros;
use crate::destinations;
use crate::feed::{EventFeed, FeedError};
use crate::http::{ApiJson, ApiQuery, ApiResult, AppState, Caller, HttpError};
use crate::ids::uuid_at;
use crate::metrics::Metrics;

/// Events of one webhook in flight at once (each retrying on its own schedule).
const WINDOW: usize = 16;
/// How often delivery attempts and cursors are written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Delivery attempts and cursor moves waiting for the recorder; when the store is slow,
/// deliveries wait for room rather than pile up records in memory.
const PROGRESS: usize = 4096;

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Bound on one POST, connection included.
    pub timeout: Duration,
    /// Tries per event, the first included; then the event is marked failed.
    pub max_attempts: u32,
    /// Pause after the first failure; doubles after each (with jitter).
    pub backoff: Duration,
    /// POSTs in flight at once, over all webhooks.
    pub concurrency: usize,
    /// Whether webhooks may reach loopback, private, link-local and other non-public addresses
    /// (`--allow-private-webhooks`, for local receivers). Off: refused at creation and at
    /// every connection.
    pub allow_private: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff: Duration::from_secs(1),
            concurrency: 32,
            allow_private: false,
        }
    }
}

enum Progress {
    Attempt(DeliveryRecord),
    Cursor(String, u64),
}

/// The dispatcher: one task per webhook, started at boot and on creation.
pub struct Webhooks {
    store: Arc<dyn Store>,
    events: broadcast::Sender<Arc<Event>>,
    metrics: Arc<Metrics>,
    cfg: WebhookConfig,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    progress: mpsc::Sender<Progress>,
}

/// What a delivery needs of its webhook.
struct Target {
    id: String,
    url: String,
    secret: String,
}

impl Webhooks {
    /// Starts the recorder; call `start_all` to start the stored webhooks' tasks.
    pub fn new(
        store: Arc<dyn Store>,
        events: broadcast::Sender<Arc<Event>>,
        metrics: Arc<Metrics>,
        cfg: WebhookConfig,
    ) -> anyhow::Result<Arc<Webhooks>> {
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("drover-webhooks/", env!("CARGO_PKG_VERSION")));
        if !cfg.allow_private {
            // Every connection goes to addresses checked when it is made.
            http = http.dns_resolver(Arc::new(destinations::CheckedResolver));
        }
        let http = http.build()?;
        let (tx, rx) = mpsc::channel(PROGRESS);
        tokio::spawn(record(store.clone(), rx));
        Ok(Arc::new(Webhooks {
            store,
            events,
            metrics,
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            cfg,
            http,
            running: Mutex::new(HashMap::new()),
            progress: tx,
        }))
    }

    pub async fn start_all(self: &Arc<Self>) -> Result<usize, drover_store::StoreError> {
        let hooks = self.store.webhooks().await?;
        let n = hooks.len();
        for w in hooks {
            self.start(w);
        }
        Ok(n)
    }

    fn start(self: &Arc<Self>, w: WebhookRecord) {
        let id = w.id.clone();
        let task = tokio::spawn(self.clone().run(w));
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = running.insert(id, task.abort_handle()) {
            old.abort();
        }
    }

    /// Stops every webhook's task (the server is stopping; cursors already recorded stay).
    pub fn shutdown(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for (_, h) in running.drain() {
            h.abort();
        }
    }

    fn stop(&self, id: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = running.remove(id) {
            h.abort();
        }
    }

    /// One webhook's loop: read events from its cursor, deliver the matching ones (a window
    /// at a time), move the cursor over everything before the oldest still in flight.
    async fn run(self: Arc<Self>, w: WebhookRecord) {
        let target = Arc::new(Target {
            id: w.id.clone(),
            url: w.url.clone(),
            secret: w.secret.clone(),
        });
        let mut feed = loop {
            match EventFeed::subscribe(self.store.clone(), &self.events, Some(w.cursor)).await {
                Ok(f) => break f,
                Err(FeedError::Closed) => return,
                Err(e) => {
                    tracing::warn!(webhook = %w.id, error = %e, "webhook: cannot read events");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut inflight = FuturesUnordered::new();
        let mut pending: BTreeSet<u64> = BTreeSet::new();
        let mut cursor = w.cursor;
        let mut read = w.cursor;
        loop {
            tokio::select! {
                r = feed.next(), if inflight.len() < WINDOW => match r {
                    Ok(e) => {
                        read = e.seq;
                        let name = event_name(&e);
                        if receives(&w, &e) && w.events.iter().any(|p| pattern_matches(p, &name)) {
                            pending.insert(e.seq);
                            inflight.push(self.clone().deliver(target.clone(), e, name));
                        }
                    }
                    Err(FeedError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(webhook = %w.id, error = %e, "webhook: reading events failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                Some(seq) = inflight.next() => {
                    pending.remove(&seq);
                }
            }
            let done = pending.first().map_or(read, |s| s - 1);
            if done > cursor {
                cursor = done;
                let _ = self
                    .progress
                    .send(Progress::Cursor(w.id.clone(), cursor))
                    .await;
            }
        }
    }

    /// Delivers one event, retrying until a 2xx or the last attempt. Returns its seq.
    async fn deliver(self: Arc<Self>, t: Arc<Target>, e: Arc<Event>, name: String) -> u64 {
        let body = serde_json::to_vec(&EventView::from_event(&e)).unwrap_or_default();
        for attempt in 1..=self.cfg.max_attempts.max(1) {
            let started = Instant::now();
            let (status, error) = {
                let _permit = self.permits.acquire().await;
                self.post(&t, &body, &name, e.seq).await
            };
            let ok = error.is_none();
            let last = ok || attempt >= self.cfg.max_attempts;
            self.metrics.webhook_attempt(ok);
            let attempt_record = Progress::Attempt(DeliveryRecord {
                webhook_id: t.id.clone(),
                seq: e.seq,
                event: name.clone(),
                attempt,
                status,
                error: error.clone(),
                ok,
                last,
                at: now_micros(),
                duration_ms: started.elapsed().as_millis() as u64,
            });
            let _ = self.progress.send(attempt_record).await;
            if ok {
                return e.seq;
            }
            if last {
                self.metrics.webhook_gave_up();
                tracing::warn!(webhook = %t.id, seq = e.seq, attempts = attempt,
                    error = error.as_deref().unwrap_or(""), "webhook delivery failed; giving up");
                return e.seq;
            }
            tokio::time::sleep(backoff(self.cfg.backoff, attempt)).await;
        }
        e.seq
    }

    /// One POST: the status if the receiver answered, and an error unless it was a 2xx.
    async fn post(
        &self,
        t: &Target,
        body: &[u8],
        name: &str,
        seq: u64,
    ) -> (Option<u16>, Option<String>) {
        if !self.cfg.allow_private {
            let blocked = reqwest::Url::parse(&t.url)
                .ok()
                .and_then(|u| destinations::blocked_literal(&u));
            if let Some(b) = blocked {
                tracing::debug!(webhook = %t.id, destination = %b, "webhook destination blocked");
                return (None, Some("blocked destination".into()));
            }
        }
        let ts = (now_micros() / 1_000_000).to_string();
        let r = self
            .http
            .post(&t.url)
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Drover-Event", name)
            .header("X-Drover-Delivery", format!("{}-{seq}", t.id))
            .header("X-Drover-Timestamp", &ts)
            .header("X-Drover-Signature", signature(&t.secret, &ts, body))
            .body(body.to_vec())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
            Ok(resp) => {
                let st = resp.status().as_u16();
                (Some(st), Some(format!("HTTP {st}")))
            }
            // By class only: a raw OS message would tell open from closed ports.
            Err(e) => (None, Some(destinations::classify(&e).to_string())),
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `base × 2^(attempt-1)`, capped, then a random point in its upper half.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1u32 << (attempt - 1).min(20))
        .min(MAX_BACKOFF);
    let half = full / 2;
    half + half.mul_f64((random_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// For jitter only (a failure to read OS randomness means no jitter).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = rand::rngs::OsRng.try_fill_bytes(&mut b);
    u64::from_le_bytes(b)
}

/// Writes delivery attempts and cursors in batches (one transaction per `FLUSH_EVERY`).
async fn record(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Progress>) {
    let mut attempts = Vec::new();
    let mut cursors: HashMap<String, u64> = HashMap::new();
    loop {
        let Some(first) = rx.recv().await else { return };
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Progress::Attempt(d)) => attempts.push(d),
                Some(Progress::Cursor(id, seq)) => {
                    let c = cursors.entry(id).or_insert(0);
                    *c = (*c).max(seq);
                }
                None => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => next = Some(p),
                Ok(None) | Err(_) => break,
            }
        }
        let batch = std::mem::take(&mut attempts);
        let moved: Vec<(String, u64)> = cursors.drain().collect();
        if let Err(e) = store.record_deliveries(batch, moved).await {
            // The cursors are not saved: after a restart those events are delivered again
            // (at least once).
            tracing::warn!(error = %e, "could not record webhook deliveries");
        }
    }
}

/// Whether a webhook receives an event of its namespace: `*` receives every namespace's and
/// the cluster's (worker events).
fn receives(w: &WebhookRecord, e: &Event) -> bool {
    w.namespace == ALL_NAMESPACES || e.namespace() == Some(w.namespace.as_str())
}

/// Whether the caller may see a webhook: its namespace's, or (`*`) a token of every one.
fn visible(scope: &Scope, w: &WebhookRecord) -> bool {
    scope.is_all() || scope.allows(&w.namespace)
}

fn view(w: &WebhookRecord, secret: bool) -> WebhookView {
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        namespace: w.namespace.clone(),
        events: w.events.clone(),
        created_at: rfc3339(w.created_at),
        delivered_seq: w.cursor,
        secret: secret.then(|| w.secret.clone()),
    }
}

/// The OpenAPI part of these endpoints, merged into `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, remove, deliveries),
    components(schemas(WebhookCreate, WebhookView, WebhookList, DeliveryView, DeliveryList))
)]
pub struct WebhookApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", delete(remove))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
}

/// Checks the URL fully: http or https, a host (a name as `/openapi.json` states it, or an IP
/// address), no credentials.
fn check_url(raw: &str) -> Result<String, ApiError> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| ApiError::invalid("url", format!("'{raw}' is not a URL: {e}")))?;
    let named = matches!(url.host(), Some(url::Host::Domain(_)));
    if named && !drover_api::patterns::webhook_url_regex().is_match(raw) {
        return Err(ApiError::invalid(
            "url",
            format!(
                "'{raw}': a host name of letters, digits and single hyphens, its last label \
                 starting with a letter; a path and query of printable ASCII (see /openapi.json)"
            ),
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::invalid("url", "only http:// and https:// URLs"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid(
            "url",
            "no credentials in the URL; receivers verify the signature instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(ApiError::invalid("url", "a webhook URL has no #fragment"));
    }
    Ok(url.to_string())
}

#[utoipa::path(post, path = "/v1/webhooks", request_body = WebhookCreate,
    responses((status = 201, body = WebhookView, description = "the webhook, with its secret (shown only here)"),
        (status = 400, body = ApiError)))]
async fn create(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiJson(req): ApiJson<WebhookCreate>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let namespace = req.target_namespace()?;
    if namespace == ALL_NAMESPACES {
        scope.require_all("a webhook of every namespace (`*`)")?;
    } else {
        scope.check(&namespace)?;
    }
    let events = req.validate()?;
    let url = check_url(&req.url)?;
    if !s.webhooks.cfg.allow_private {
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| ApiError::invalid("url", e.to_string()))?;
        destinations::check_new(&parsed).await.map_err(|b| {
            ApiError::invalid(
                "url",
                format!(
                    "{b}; webhooks may only reach public addresses (run the server with \
                     --allow-private-webhooks for local receivers)"
                ),
            )
        })?;
    }
    let secret = match req.secret.clone() {
        Some(s) => s,
        None => {
            let mut b = [0u8; 24];
            rand::rngs::OsRng.try_fill_bytes(&mut b).map_err(|e| {
                HttpError(ApiError::internal(format!(
                    "cannot generate a secret ({e}); pass one with \"secret\""
                )))
            })?;
            hex::encode(b)
        }
    };
    let now = now_micros();
    let rec = WebhookRecord {
        id: uuid_at(now).to_string(),
        url,
        events,
        secret,
        created_at: now,
        // Only events from now on.
        cursor: s.store.last_event_seq().await?,
        namespace,
    };
    s.store.insert_webhook(&rec).await?;
    s.webhooks.start(rec.clone());
    tracing::info!(webhook = %rec.id, url = %rec.url, "webhook added");
    Ok((StatusCode::CREATED, Json(view(&rec, true))))
}

#[utoipa::path(get, path = "/v1/webhooks", responses((status = 200, body = WebhookList)))]
async fn list(State(s): State<AppState>, Caller(scope): Caller) -> ApiResult<Json<WebhookList>> {
    let hooks = s.store.webhooks().await?;
    Ok(Json(WebhookList {
        webhooks: hooks
            .iter()
            .filter(|w| visible(&scope, w))
            .map(|w| view(w, false))
            .collect(),
    }))
}

/// 404 for a webhook that does not exist or that the caller may not see.
async fn check_visible(s: &AppState, scope: &Scope, id: &str) -> ApiResult<()> {
    let hooks = s.store.webhooks().await?;
    if hooks.iter().any(|w| w.id == id && visible(scope, w)) {
        return Ok(());
    }
    Err(HttpError(ApiError::not_found(format!(
        "no webhook with id {id}"
    ))))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", params(("id" = String, Path, description = "webhook id")),
    responses((status = 204), (status = 404, body = ApiError)))]
async fn remove(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_visible(&s, &scope, &id).await?;
    s.webhooks.stop(&id);
    if s.store.delete_webhook(&id).await? {
        tracing::info!(webhook = %id, "webhook removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(HttpError(ApiError::not_found(format!(
            "no webhook with id {id}"
        ))))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// Most attempts returned, newest first (default 100, at most 1000).
    #[param(schema_with = drover_api::schema::page)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries",
    params(("id" = String, Path, description = "webhook id"), DeliveryParams),
    responses((status = 200, body = DeliveryList), (status = 404, body = ApiError)))]
async fn deliveries(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<DeliveryParams>,
) -> ApiResult<Json<DeliveryList>> {
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > limits::MAX_PAGE {
        return Err(ApiError::invalid("limit", format!("1 to {}", limits::MAX_PAGE)).into());
    }
    check_visible(&s, &scope, &id).await?;
    let list = s.store.deliveries(&id, limit).await?;
    Ok(Json(DeliveryList {
        deliveries: list
            .into_iter()
            .map(|d| DeliveryView {
                webhook_id: d.webhook_id,
                seq: d.seq,
                event: d.event,
                attempt: d.attempt,
                status: d.status,
                error: d.error,
                ok: d.ok,
                last: d.last,
                at: rfc3339(d.at),
                duration_ms: d.duration_ms,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(signature("Jefe", "1700000000", b"{\"a\":1}"), want);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let base = Duration::from_secs(1);
        for attempt in 1..=12 {
            let d = backoff(base, attempt);
            let full = (base * (1 << (attempt - 1))).min(MAX_BACKOFF);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:8080/hook?x=1").is_ok());
        assert!(check_url("https://example.com/h").is_ok());
        for bad in [
            "ftp://x/",
            "http://u:p@h/",
            "nota url",
            "http://h/#f",
            "file:///etc",
            "HTTP://A*",
            " http://a.example/",
            "http://a--b.example/",
            "http://%61.example/",
            "http://a.example/é",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url("HTTPS://A.Example:8443/h?q=%20").is_ok());
    }
}
