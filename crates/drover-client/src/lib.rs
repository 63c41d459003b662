//! Drover's Rust SDK: a typed async client over the REST API (`/v1/...`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), drover_client::ClientError> {
//! use drover_client::{Client, SubmitRequest};
//! let client = Client::new("http://127.0.0.1:7070", None)?;
//! let task = client
//!     .submit(&SubmitRequest { argv: vec!["echo".into(), "hi".into()], ..Default::default() })
//!     .await?;
//! let done = client.wait(&task.id, |_| {}).await?;
//! println!("{} ended {}", done.id, done.state);
//! # Ok(()) }
//! ```
//!
//! Every error is a [`ClientError`]: either the server's own `{code, message, field}` or a
//! transport problem phrased for humans. Several server URLs may be given (comma-separated);
//! a request that cannot connect to one tries the next.
//!
//! Backpressure: a 429 (a queue's or the server's backlog is full, or the client is over its
//! request rate) and a 503 with `Retry-After` (the store is failing, the scheduler is busy or
//! shutting down) mean the server changed nothing. Such a request is sent again after the
//! pause it names, doubling with each further refusal (at most [`MAX_RETRY_PAUSE`], plus
//! jitter), for up to [`UNAVAILABLE_RETRY`] in all ([`Client::with_retry_for`]): a 429 for
//! every request, a 503 for reads, `PUT`, `DELETE` and submits. Each wait is logged
//! (`tracing`, info) and told to the [`Client::on_retry`] callback. A submit that must never
//! run twice, whatever fails, should carry an idempotency key.

mod error;
mod events;
mod flow;
mod schedule;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use drover_api::auth::{Role, TokenCreate, TokenCreated, TokenList, TokenView, WorkerLimits};
pub use drover_api::events::{
    DeliveryList, DeliveryView, EventView, WebhookCreate, WebhookList, WebhookView,
};
pub use drover_api::rest::{
    AttemptView, BatchSubmitRequest, BatchSubmitResponse, Health, LogsView, SpecView, StatsView,
    SubmitRequest, TaskList, TaskView, WorkerList, WorkerView,
};
pub use drover_api::{ApiError, ErrorCode};
pub use error::ClientError;
pub use events::{EventQuery, EventStream};
pub use flow::*;
pub use schedule::*;

/// The server address used when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Default bound on one request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a request is retried in all while the server answers 429, or 503 with
/// `Retry-After` (by default; see [`Client::with_retry_for`]).
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(30);

/// The longest pause between two tries of one request (before jitter).
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);

/// A request about to be sent again because the server said to wait: what the
/// [`Client::on_retry`] callback is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retrying {
    /// `POST /v1/tasks:batch` and the like.
    pub request: String,
    /// 429 or 503.
    pub status: u16,
    /// The server's reason.
    pub message: String,
    /// The try about to be made (2 for the first retry).
    pub attempt: u32,
    /// The pause before it.
    pub wait: Duration,
}

/// Told of every retry ([`Client::on_retry`]).
#[derive(Clone)]
struct OnRetry(Arc<dyn Fn(&Retrying) + Send + Sync>);

impl std::fmt::Debug for OnRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRetry")
    }
}

/// Filters and paging of `GET /v1/tasks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub state: Option<String>,
    pub queue: Option<String>,
    /// Page size (server default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A handle on one Drover server (or a list to fail over across). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bases: Vec<String>,
    /// Index into `bases` of the server that answered last.
    current: AtomicUsize,
    http: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
    /// Sent with every request that takes a namespace; `None`: the server's default
    /// (`default` for what is created or named, every visible one for listings).
    namespace: Option<String>,
    /// How long a refused request (429, 503 with `Retry-After`) is retried in all.
    retry_for: Duration,
    on_retry: Option<OnRetry>,
}

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client for `base_url` (`http://host:port`; `http://` is assumed without a scheme;
    /// several URLs may be separated by commas), sending `token` as a bearer token if given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self> {
        Self::with_timeout(base_url, token, DEFAULT_TIMEOUT)
    }

    /// Like [`Client::new`] with a bound on each request other than [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(base_url: &str, token: Option<String>, timeout: Duration) -> Result<Self> {
        Self::with_ca(base_url, token, timeout, None)
    }

    /// Like [`Client::with_timeout`], trusting the CA certificate `ca_cert_pem` (PEM) for
    /// `https://` servers besides the web PKI roots.
    pub fn with_ca(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
        ca_cert_pem: Option<&[u8]>,
    ) -> Result<Self> {
        let bases = base_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(normalize_base)
            .collect::<Result<Vec<_>>>()?;
        if bases.is_empty() {
            return Err(ClientError::InvalidUrl {
                url: base_url.into(),
                reason: format!("no URL given; e.g. {DEFAULT_SERVER}"),
            });
        }
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.into(),
            reason,
        };
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_cert_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|e| invalid(format!("the CA certificate: {}", error::root_cause(&e))))?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("drover-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(error::root_cause(&e)))?;
        Ok(Client {
            inner: Arc::new(Inner {
                bases,
                current: AtomicUsize::new(0),
                http,
                token: token.filter(|t| !t.is_empty()),
                timeout,
                namespace: None,
                retry_for: UNAVAILABLE_RETRY,
                on_retry: None,
            }),
        })
    }

    /// A copy of this client with its settings changed by `f`.
    fn derive(&self, f: impl FnOnce(&mut Inner)) -> Client {
        let i = &self.inner;
        let mut inner = Inner {
            bases: i.bases.clone(),
            current: AtomicUsize::new(i.current.load(Ordering::Relaxed)),
            http: i.http.clone(),
            token: i.token.clone(),
            timeout: i.timeout,
            namespace: i.namespace.clone(),
            retry_for: i.retry_for,
            on_retry: i.on_retry.clone(),
        };
        f(&mut inner);
        Client {
            inner: Arc::new(inner),
        }
    }

    /// The same client retrying refused requests (429, 503 with `Retry-After`) for up to
    /// `total` in all; zero: never.
    pub fn with_retry_for(&self, total: Duration) -> Client {
        self.derive(|i| i.retry_for = total)
    }

    /// The same client calling `f` before each retry of a refused request (the CLI says so
    /// on stderr).
    pub fn on_retry(&self, f: impl Fn(&Retrying) + Send + Sync + 'static) -> Client {
        self.derive(|i| i.on_retry = Some(OnRetry(Arc::new(f))))
    }

    /// The same client acting in namespace `ns`: tasks, workflows, schedules and webhooks it
    /// creates belong there (unless a request names its own), queues and schedules are looked
    /// up there, and listings and event streams show only it.
    pub fn in_namespace(&self, ns: impl Into<String>) -> Client {
        let ns = ns.into();
        self.derive(|i| i.namespace = Some(ns))
    }

    /// The namespace this client acts in, if one was chosen.
    pub fn namespace(&self) -> Option<&str> {
        self.inner.namespace.as_deref()
    }

    /// `namespace=` for the routes that take it.
    pub(crate) fn ns_query(&self) -> Vec<(&'static str, String)> {
        self.namespace()
            .map(|n| ("namespace", n.to_string()))
            .into_iter()
            .collect()
    }

    /// A body's namespace: its own, else the client's.
    pub(crate) fn ns_or(&self, own: &Option<String>) -> Option<String> {
        own.clone().or_else(|| self.inner.namespace.clone())
    }

    /// The server URL requests go to now.
    pub fn base_url(&self) -> &str {
        let i = self.inner.current.load(Ordering::Relaxed);
        &self.inner.bases[i % self.inner.bases.len()]
    }

    /// `POST /v1/tasks`: submits one task; answered once it is committed. Refused for now
    /// (429: its queue is full; 503 with `Retry-After`), it is sent again (see the crate docs).
    pub async fn submit(&self, req: &SubmitRequest) -> Result<TaskView> {
        let req = SubmitRequest {
            namespace: self.ns_or(&req.namespace),
            ..req.clone()
        };
        self.send_as(Method::POST, "/v1/tasks", &[], Some(&req), true)
            .await
    }

    /// `POST /v1/tasks:batch`: submits up to 10,000 tasks in one commit; ids in request order.
    /// A batch that would pass a backlog limit is refused whole (429) and sent again later.
    pub async fn submit_batch(&self, tasks: &[SubmitRequest]) -> Result<BatchSubmitResponse> {
        #[derive(Serialize)]
        struct Batch<'a> {
            tasks: &'a [SubmitRequest],
        }
        let owned: Vec<SubmitRequest>;
        let tasks = if self.namespace().is_some() {
            owned = tasks
                .iter()
                .map(|t| SubmitRequest {
                    namespace: self.ns_or(&t.namespace),
                    ..t.clone()
                })
                .collect();
            &owned[..]
        } else {
            tasks
        };
        let batch = Batch { tasks };
        self.send_as(Method::POST, "/v1/tasks:batch", &[], Some(&batch), true)
            .await
    }

    /// `GET /v1/tasks/{id}`: the task with all its attempts.
    pub async fn task(&self, id: &str) -> Result<TaskView> {
        self.get(&format!("/v1/tasks/{}", segment(id)), &[]).await
    }

    /// `GET /v1/tasks`: one page, newest first.
    pub async fn list(&self, q: &ListQuery) -> Result<TaskList> {
        let mut query = self.ns_query();
        if let Some(s) = &q.state {
            query.push(("state", s.clone()));
        }
        if let Some(s) = &q.queue {
            query.push(("queue", s.clone()));
        }
        if let Some(n) = q.limit {
            query.push(("limit", n.to_string()));
        }
        if let Some(c) = &q.cursor {
            query.push(("cursor", c.clone()));
        }
        self.get("/v1/tasks", &query).await
    }

    /// `POST /v1/tasks/{id}/cancel`: the task as it is after the cancellation.
    /// `POST /v1/workers/{name}/drain` (or `/resume` when `on` is false): the worker takes
    /// nothing new; what it runs finishes.
    pub async fn drain(&self, name: &str, on: bool) -> Result<WorkerList> {
        let verb = if on { "drain" } else { "resume" };
        let path = format!("/v1/workers/{}/{verb}", segment(name));
        self.send::<(), _>(Method::POST, &path, &[], None).await
    }

    pub async fn cancel(&self, id: &str) -> Result<TaskView> {
        let path = format!("/v1/tasks/{}/cancel", segment(id));
        self.send::<(), _>(Method::POST, &path, &[], None).await
    }

    /// `GET /v1/tasks/{id}/logs`: output of one attempt (default: the latest).
    pub async fn logs(&self, id: &str, attempt: Option<u32>) -> Result<LogsView> {
        let query: Vec<_> = attempt
            .map(|a| ("attempt", a.to_string()))
            .into_iter()
            .collect();
        self.get(&format!("/v1/tasks/{}/logs", segment(id)), &query)
            .await
    }

    /// `GET /v1/tasks/{id}/logs` from byte offsets: only the output after `stdout_from` and
    /// `stderr_from` (the previous answer's `stdout_next` and `stderr_next`).
    pub async fn logs_from(
        &self,
        id: &str,
        attempt: Option<u32>,
        stdout_from: u64,
        stderr_from: u64,
    ) -> Result<LogsView> {
        let mut query = vec![
            ("stdout_from", stdout_from.to_string()),
            ("stderr_from", stderr_from.to_string()),
        ];
        if let Some(a) = attempt {
            query.push(("attempt", a.to_string()));
        }
        self.get(&format!("/v1/tasks/{}/logs", segment(id)), &query)
            .await
    }

    /// `POST /v1/webhooks`: the new webhook, with its secret (shown only in this answer).
    pub async fn add_webhook(&self, req: &WebhookCreate) -> Result<WebhookView> {
        let req = &WebhookCreate {
            namespace: self.ns_or(&req.namespace),
            ..req.clone()
        };
        self.send(Method::POST, "/v1/webhooks", &[], Some(req))
            .await
    }

    /// `POST /v1/tokens` (admin): the new token with its secret, shown only here.
    pub async fn create_token(&self, req: &TokenCreate) -> Result<TokenCreated> {
        self.send(Method::POST, "/v1/tokens", &[], Some(req)).await
    }

    /// `GET /v1/tokens` (admin): every token, without secrets.
    pub async fn tokens(&self) -> Result<TokenList> {
        self.get("/v1/tokens", &[]).await
    }

    /// `DELETE /v1/tokens/{name}` (admin): revokes a token, also for its open streams.
    pub async fn revoke_token(&self, name: &str) -> Result<()> {
        let path = format!("/v1/tokens/{}", segment(name));
        self.send::<(), ()>(Method::DELETE, &path, &[], None).await
    }

    /// `GET /v1/webhooks`.
    pub async fn webhooks(&self) -> Result<WebhookList> {
        self.get("/v1/webhooks", &[]).await
    }

    /// `DELETE /v1/webhooks/{id}`.
    pub async fn remove_webhook(&self, id: &str) -> Result<()> {
        let path = format!("/v1/webhooks/{}", segment(id));
        self.send::<(), ()>(Method::DELETE, &path, &[], None).await
    }

    /// `GET /v1/webhooks/{id}/deliveries`: delivery attempts, newest first.
    pub async fn deliveries(&self, id: &str, limit: Option<usize>) -> Result<DeliveryList> {
        let query: Vec<_> = limit
            .map(|n| ("limit", n.to_string()))
            .into_iter()
            .collect();
        self.get(&format!("/v1/webhooks/{}/deliveries", segment(id)), &query)
            .await
    }

    /// `GET /v1/workers`: the connected workers.
    pub async fn workers(&self) -> Result<WorkerList> {
        self.get("/v1/workers", &[]).await
    }

    /// `GET /v1/stats`: task counts by state and the number of workers.
    pub async fn stats(&self) -> Result<StatsView> {
        self.get("/v1/stats", &[]).await
    }

    /// `GET /v1/audit`: audit records, newest first.
    pub async fn audit(
        &self,
        p: &drover_api::audit::AuditParams,
    ) -> Result<drover_api::audit::AuditList> {
        let mut q = Vec::new();
        if let Some(s) = &p.since {
            q.push(("since", s.clone()));
        }
        if let Some(t) = &p.token {
            q.push(("token", t.clone()));
        }
        if let Some(b) = p.before {
            q.push(("before", b.to_string()));
        }
        if let Some(l) = p.limit {
            q.push(("limit", l.to_string()));
        }
        self.get("/v1/audit", &q).await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health> {
        self.get("/healthz", &[]).await
    }

    /// Waits until the task is terminal, calling `on_change` with the first view and each
    /// time its state or attempt changes. Listens to the task's events (subscribing before it
    /// reads the task, so no change is missed); if the event stream is unavailable or breaks,
    /// polls instead.
    pub async fn wait(&self, id: &str, mut on_change: impl FnMut(&TaskView)) -> Result<TaskView> {
        let mut last: Option<(String, u32)> = None;
        let mut report = |t: &TaskView| {
            let now = (t.state.clone(), t.attempt);
            if last.as_ref() != Some(&now) {
                on_change(t);
                last = Some(now);
            }
        };
        let query = EventQuery {
            task: Some(id.to_string()),
            ..Default::default()
        };
        if let Ok(mut stream) = self.events(&query).await {
            let t = self.task(id).await?;
            report(&t);
            if is_terminal(&t.state) {
                return Ok(t);
            }
            // Each event of the task says "look again": the task read after it is the truth.
            while let Ok(Some(_)) = stream.next().await {
                let t = self.task(id).await?;
                report(&t);
                if is_terminal(&t.state) {
                    return Ok(t);
                }
            }
        }
        self.poll_until_done(id, report).await
    }

    /// Polls `GET /v1/tasks/{id}` until the task is terminal (backoff 20 ms growing to 500 ms),
    /// calling `on_change` with the first view and each time the state changes.
    pub async fn poll_until_done(
        &self,
        id: &str,
        mut on_change: impl FnMut(&TaskView),
    ) -> Result<TaskView> {
        let mut pause = Duration::from_millis(20);
        let mut last: Option<(String, u32)> = None;
        loop {
            let t = self.task(id).await?;
            let now = (t.state.clone(), t.attempt);
            if last.as_ref() != Some(&now) {
                on_change(&t);
                last = Some(now);
                pause = Duration::from_millis(20);
            }
            if is_terminal(&t.state) {
                return Ok(t);
            }
            tokio::time::sleep(pause).await;
            pause = next_pause(pause);
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.send::<(), T>(Method::GET, path, query, None).await
    }

    /// A request, retried after a 503 with `Retry-After` when its method is safe to repeat
    /// (`GET`, `HEAD`, `PUT`, `DELETE`).
    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T> {
        let repeat = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        self.send_as(method, path, query, body, repeat).await
    }

    /// A request, sent again while the server refuses it for now and `retry_for` lasts: a
    /// 429 always (it changed nothing), a 503 with `Retry-After` only with `repeat`.
    async fn send_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        repeat: bool,
    ) -> Result<T> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Protocol {
                url: self.base_url().into(),
                status: 0,
                detail: format!("cannot encode the request: {e}"),
            })?;
        let give_up = tokio::time::Instant::now() + self.inner.retry_for;
        let mut attempt = 1;
        loop {
            let (base, resp) = self.exchange(&method, path, query, body.as_ref()).await?;
            let status = resp.status();
            let refused = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || (repeat && status == reqwest::StatusCode::SERVICE_UNAVAILABLE);
            let Some(hint) = retry_after(&resp).filter(|_| refused) else {
                return decode(&base, resp).await;
            };
            let wait = backoff(hint, attempt);
            if tokio::time::Instant::now() + wait > give_up {
                return decode(&base, resp).await;
            }
            let why = decode_error(&base, resp).await;
            attempt += 1;
            let r = Retrying {
                request: format!("{method} {path}"),
                status: status.as_u16(),
                message: why.to_string(),
                attempt,
                wait,
            };
            tracing::info!(request = %r.request, status = r.status, wait_ms = wait.as_millis() as u64,
                attempt, reason = %r.message, "the server refused the request for now; retrying");
            if let Some(f) = &self.inner.on_retry {
                (f.0)(&r);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends a request to the first server that accepts a connection; its URL and answer.
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Vec<u8>>,
    ) -> Result<(String, reqwest::Response)> {
        let n = self.inner.bases.len();
        let start = self.inner.current.load(Ordering::Relaxed);
        let mut unreachable = None;
        for k in 0..n {
            let i = (start + k) % n;
            let base = &self.inner.bases[i];
            let mut rb = self
                .inner
                .http
                .request(method.clone(), format!("{base}{path}"))
                .timeout(self.inner.timeout);
            if !query.is_empty() {
                rb = rb.query(query);
            }
            if let Some(t) = &self.inner.token {
                rb = rb.bearer_auth(t);
            }
            if let Some(b) = body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            match rb.send().await {
                Ok(resp) => {
                    if k > 0 {
                        self.inner.current.store(i, Ordering::Relaxed);
                    }
                    return Ok((base.clone(), resp));
                }
                // Nothing was sent: safe to try the next server, even for a POST.
                Err(e) if e.is_connect() => {
                    unreachable = Some(ClientError::Unreachable {
                        url: base.clone(),
                        detail: error::root_cause(&e),
                    });
                }
                Err(e) => return Err(transport(base, &e, self.inner.timeout)),
            }
        }
        Err(unreachable.expect("at least one server URL"))
    }
}

/// The pause before try `attempt + 1`: the server's `Retry-After`, doubled for each refusal
/// after the first, at most `MAX_RETRY_PAUSE`, plus up to a quarter more at random (clients
/// refused together do not come back together).
fn backoff(hint: Duration, attempt: u32) -> Duration {
    use rand::{Rng, SeedableRng};
    let base = hint
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(MAX_RETRY_PAUSE.max(hint));
    let jitter = rand::rngs::StdRng::from_os_rng().random_range(0.0..0.25);
    base + base.mul_f64(jitter)
}

/// A `Retry-After` in whole seconds (at least 100 ms), if the answer has one.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).max(Duration::from_millis(100)))
}

async fn decode<T: DeserializeOwned>(base: &str, resp: reqwest::Response) -> Result<T> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| transport(base, &e, DEFAULT_TIMEOUT))?;
    if status == reqwest::StatusCode::NO_CONTENT {
        let null: &[u8] = b"null";
        return serde_json::from_slice(null).map_err(|e| ClientError::Protocol {
            url: base.into(),
            status: status.as_u16(),
            detail: format!("expected a body ({e})"),
        });
    }
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url: base.into(),
            status: status.as_u16(),
            detail: format!("the body is not the expected JSON ({e}); is this a Drover server?"),
        });
    }
    Err(error_of(base, status, &bytes))
}

/// The error for a non-2xx answer.
pub(crate) async fn decode_error(base: &str, resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    match resp.bytes().await {
        Ok(bytes) => error_of(base, status, &bytes),
        Err(e) => transport(base, &e, DEFAULT_TIMEOUT),
    }
}

fn error_of(base: &str, status: reqwest::StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(bytes) {
        Ok(error) => ClientError::Api {
            status: status.as_u16(),
            error,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let snippet: String = snippet.chars().take(200).collect();
            ClientError::Protocol {
                url: base.into(),
                status: status.as_u16(),
                detail: if snippet.is_empty() {
                    "no error body; is this a Drover server?".into()
                } else {
                    snippet
                },
            }
        }
    }
}

fn transport(base: &str, e: &reqwest::Error, timeout: Duration) -> ClientError {
    let detail = if e.is_timeout() {
        format!("no answer within {}s", timeout.as_secs_f64())
    } else {
        error::root_cause(e)
    };
    ClientError::Transport {
        url: base.into(),
        detail,
    }
}

/// Whether a task in this state will not change any more.
pub fn is_terminal(state: &str) -> bool {
    state
        .parse::<drover_core::TaskState>()
        .map(|s| s.is_terminal())
        .unwrap_or(false)
}

/// The polling backoff: ×1.5, at most 500 ms.
pub(crate) fn next_pause(p: Duration) -> Duration {
    (p * 3 / 2).min(Duration::from_millis(500))
}

/// `http://host:port` without a trailing slash; `http://` is assumed without a scheme.
fn normalize_base(url: &str) -> Result<String> {
    let bad = |reason: String| ClientError::InvalidUrl {
        url: url.into(),
        reason,
    };
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let parsed = reqwest::Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        s => {
            return Err(bad(format!(
                "unsupported scheme '{s}'; use http://HOST:PORT or https://HOST:PORT"
            )))
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host; e.g. http://127.0.0.1:7070".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a server URL has no query or fragment".into()));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Percent-encodes one path segment (task ids are UUIDs, but input is input).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(
            normalize_base("127.0.0.1:7070").unwrap(),
            "http://127.0.0.1:7070"
        );
        assert_eq!(
            normalize_base("http://localhost:7070/").unwrap(),
            "http://localhost:7070"
        );
        assert_eq!(
            normalize_base("http://h:1/prefix/").unwrap(),
            "http://h:1/prefix"
        );
        assert_eq!(normalize_base("https://h:1").unwrap(), "https://h:1");
        assert!(normalize_base("ftp://h").is_err());
        assert!(normalize_base("http://").is_err());
    }

    #[test]
    fn several_servers_and_empty_lists() {
        let c = Client::new("a:1, b:2", None).unwrap();
        assert_eq!(c.inner.bases, ["http://a:1", "http://b:2"]);
        assert_eq!(c.base_url(), "http://a:1");
        assert!(Client::new(" , ", None).is_err());
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(
            segment("0190c0de-0000-7000-8000-000000000000"),
            "0190c0de-0000-7000-8000-000000000000"
        );
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[test]
    fn terminal_states() {
        for s in ["succeeded", "failed", "cancelled", "timed_out", "dead"] {
            assert!(is_terminal(s), "{s}");
        }
        for s in ["pending", "queued", "assigned", "running", "whatever"] {
            assert!(!is_terminal(s), "{s}");
        }
    }

    #[test]
    fn polling_backs_off_to_half_a_second() {
        let mut p = Duration::from_millis(20);
        let mut seen = vec![];
        for _ in 0..12 {
            seen.push(p.as_millis());
            p = next_pause(p);
        }
        assert_eq!(seen[..3], [20, 30, 45]);
        assert_eq!(*seen.last().unwrap(), 500);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_human_error() {
        // A port that was free a moment ago.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("127.0.0.1:{port}"), None).unwrap();
        let e = c.health().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("cannot reach the Drover server"), "{msg}");
        assert!(msg.contains("drover up"), "{msg}");
    }

    /// A server answering each connection's one request from `answers` in turn (503s and
    /// 429s with `Retry-After: 1`, 500, else 200); returns its URL and how many requests it
    /// got.
    async fn scripted(answers: Vec<u16>) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            for status in answers {
                let (mut conn, _) = l.accept().await.unwrap();
                let mut buf = vec![0; 65536];
                let _ = conn.read(&mut buf).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let (line, body) = match status {
                    503 => (
                        "503 Service Unavailable\r\nretry-after: 1",
                        r#"{"code":"unavailable","message":"the server's store is unavailable, so nothing was changed; retry later"}"#,
                    ),
                    429 => (
                        "429 Too Many Requests\r\nretry-after: 1",
                        r#"{"code":"resource_exhausted","message":"queue q is full"}"#,
                    ),
                    500 => (
                        "500 Internal Server Error",
                        r#"{"code":"internal","message":"broken"}"#,
                    ),
                    _ => ("200 OK", r#"{"ids":["a"],"status":"ok"}"#),
                };
                let resp = format!(
                    "HTTP/1.1 {line}\r\ncontent-type: application/json\r\nconnection: close\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn a_503_with_retry_after_is_retried_only_when_repeating_is_safe() {
        let (url, seen) = scripted(vec![503, 200]).await;
        let c = Client::new(&url, None).unwrap();
        assert_eq!(c.health().await.unwrap().status, "ok");
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        // Cancelling is a POST that is not repeated on a 503.
        let (url, seen) = scripted(vec![503, 200]).await;
        let c = Client::new(&url, None).unwrap();
        let e = c.cancel("x").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e:?}");
        assert!(e.to_string().contains("store is unavailable"), "{e}");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "not repeated");
    }

    #[tokio::test]
    async fn a_refused_batch_is_sent_again_with_growing_pauses_and_said_so() {
        let (url, seen) = scripted(vec![429, 503, 200]).await;
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = told.clone();
        let c = Client::new(&url, None)
            .unwrap()
            .on_retry(move |r| t.lock().unwrap().push(r.clone()));
        let started = std::time::Instant::now();
        let r = c.submit_batch(&[SubmitRequest::default()]).await.unwrap();
        assert_eq!(r.ids, ["a"]);
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        let told = told.lock().unwrap().clone();
        assert_eq!(told.len(), 2);
        assert_eq!(
            (told[0].status, told[0].attempt, told[0].request.as_str()),
            (429, 2, "POST /v1/tasks:batch")
        );
        assert_eq!(told[0].message, "queue q is full");
        // 1 s, then twice that (each up to a quarter more).
        assert!(
            told[0].wait >= Duration::from_secs(1) && told[0].wait <= Duration::from_millis(1250)
        );
        assert!(
            told[1].wait >= Duration::from_secs(2) && told[1].wait <= Duration::from_millis(2500)
        );
        assert!(started.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test]
    async fn retrying_stops_at_its_bound_and_other_errors_are_answers() {
        // 1 s + 2 s of pauses do not fit in 2 s: the second 429 is the answer.
        let (url, seen) = scripted(vec![429, 429, 200]).await;
        let c = Client::new(&url, None)
            .unwrap()
            .with_retry_for(Duration::from_secs(2));
        let e = c.submit(&SubmitRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::ResourceExhausted), "{e:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        let (url, seen) = scripted(vec![500, 200]).await;
        let c = Client::new(&url, None).unwrap();
        assert!(c.submit(&SubmitRequest::default()).await.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let s = Duration::from_secs(1);
        for (attempt, nominal) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)] {
            let w = backoff(s, attempt);
            let n = Duration::from_secs(nominal);
            assert!(w >= n && w <= n + n / 4, "{attempt}: {w:?}");
        }
        // A server asking for longer than the cap is obeyed.
        assert!(backoff(Duration::from_secs(30), 3) >= Duration::from_secs(30));
    }
}
