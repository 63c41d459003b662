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
//! transport problem phrased for humans.
//!
//! Several servers (a cluster: one leader, standbys) are given as a comma-separated list or a
//! list of URLs: `Client::new("http://a:7070,http://b:7070", token)` or
//! `Client::new(vec![a, b], token)`. The client sticks to the server that answered last; when
//! one cannot be reached, or answers 503 (a standby, naming the leader in `x-drover-leader`; a
//! degraded store; a server shutting down), the request goes to the leader if it is one of
//! the given servers, else to the next one, pausing between rounds, for up to
//! [`UNAVAILABLE_RETRY`]. A request that may have reached a server before the exchange broke
//! is sent again only when repeating it is safe: reads, `PUT`, `DELETE`, and submits whose
//! every task has an idempotency key. With one server, a 503 is waited out (after its
//! `Retry-After`) only for those. The rules are in [`failover`]; [`Client::on_retry`] hears of
//! every move.

mod call;
mod error;
mod events;
mod exchange;
pub mod failover;
mod flow;
mod schedule;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use drover_api::auth::{Role, TokenCreate, TokenCreated, TokenList, TokenView, WorkerLimits};
pub use drover_api::cluster::{ClusterMember, ClusterView};
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
pub use failover::Retrying;
pub use flow::*;
pub use schedule::*;

/// The server address used when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Default bound on one request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one request keeps trying (other servers, or the same one after a 503) before it
/// gives up with the last error (at most the client's timeout): a standby takes over an
/// expired leader lease (5 s by default) within about 2 s more.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(30);

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
    /// Told of every retry (another server, or the same one after a pause).
    on_retry: Option<Arc<RetryHook>>,
}

type RetryHook = dyn Fn(&Retrying) + Send + Sync;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.bases)
            .field("current", &self.current)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// A copy to change one setting of (clients share nothing but the connection pool).
    fn copy(&self) -> Inner {
        Inner {
            bases: self.bases.clone(),
            current: AtomicUsize::new(self.current.load(Ordering::Relaxed)),
            http: self.http.clone(),
            token: self.token.clone(),
            timeout: self.timeout,
            namespace: self.namespace.clone(),
            on_retry: self.on_retry.clone(),
        }
    }
}

/// One server URL or several: a comma-separated string, or a list of URLs.
pub trait IntoServers {
    /// The URLs, untrimmed; empty entries are skipped.
    fn into_servers(self) -> Vec<String>;
}

impl IntoServers for &str {
    fn into_servers(self) -> Vec<String> {
        self.split(',').map(str::to_string).collect()
    }
}

impl IntoServers for &String {
    fn into_servers(self) -> Vec<String> {
        self.as_str().into_servers()
    }
}

impl IntoServers for String {
    fn into_servers(self) -> Vec<String> {
        self.as_str().into_servers()
    }
}

impl<S: AsRef<str>> IntoServers for Vec<S> {
    fn into_servers(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

impl<S: AsRef<str>> IntoServers for &[S] {
    fn into_servers(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

impl<S: AsRef<str>, const N: usize> IntoServers for [S; N] {
    fn into_servers(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client for `servers`: one URL (`http://host:port`; `http://` is assumed without a
    /// scheme), a comma-separated list, or a `Vec`/slice of URLs (a cluster: see the crate's
    /// documentation). Sends `token` as a bearer token if given, to these servers only.
    pub fn new(servers: impl IntoServers, token: Option<String>) -> Result<Self> {
        Self::with_timeout(servers, token, DEFAULT_TIMEOUT)
    }

    /// Like [`Client::new`] with a bound on each request other than [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(
        servers: impl IntoServers,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self> {
        Self::with_ca(servers, token, timeout, None)
    }

    /// Like [`Client::with_timeout`], trusting the CA certificate `ca_cert_pem` (PEM) for
    /// `https://` servers besides the web PKI roots.
    pub fn with_ca(
        servers: impl IntoServers,
        token: Option<String>,
        timeout: Duration,
        ca_cert_pem: Option<&[u8]>,
    ) -> Result<Self> {
        let given = servers.into_servers();
        let base_url = given.join(",");
        let base_url = base_url.as_str();
        let mut bases = given
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(normalize_base)
            .collect::<Result<Vec<_>>>()?;
        // The same server twice would only be tried twice.
        let mut seen = std::collections::HashSet::new();
        bases.retain(|b| seen.insert(drover_api::failover::normalize_address(b)));
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
                on_retry: None,
            }),
        })
    }

    /// The same client, calling `hook` each time a request moves on after a miss (to another
    /// server, or to the same one after a pause): to log or show the failover.
    pub fn on_retry(&self, hook: impl Fn(&Retrying) + Send + Sync + 'static) -> Client {
        let mut inner = self.inner.copy();
        inner.on_retry = Some(Arc::new(hook));
        Client {
            inner: Arc::new(inner),
        }
    }

    /// The servers this client was given, normalized, in order.
    pub fn servers(&self) -> &[String] {
        &self.inner.bases
    }

    /// The same client acting in namespace `ns`: tasks, workflows, schedules and webhooks it
    /// creates belong there (unless a request names its own), queues and schedules are looked
    /// up there, and listings and event streams show only it.
    pub fn in_namespace(&self, ns: impl Into<String>) -> Client {
        let mut inner = self.inner.copy();
        inner.namespace = Some(ns.into());
        Client {
            inner: Arc::new(inner),
        }
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

    /// `POST /v1/tasks`: submits one task; answered once it is committed.
    pub async fn submit(&self, req: &SubmitRequest) -> Result<TaskView> {
        let req = SubmitRequest {
            namespace: self.ns_or(&req.namespace),
            ..req.clone()
        };
        let repeat = req.idempotency_key.is_some();
        self.send_as(Method::POST, "/v1/tasks", &[], Some(&req), repeat)
            .await
    }

    /// `POST /v1/tasks:batch`: submits up to 10,000 tasks in one commit; ids in request order.
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
        let repeat = tasks.iter().all(|t| t.idempotency_key.is_some());
        let batch = Batch { tasks };
        self.send_as(Method::POST, "/v1/tasks:batch", &[], Some(&batch), repeat)
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

    /// `GET /v1/cluster`: the servers sharing this one's store, their roles (one leader,
    /// standbys), the epoch and the lease. Any member answers; a server older than clusters
    /// answers 404 ([`ClientError::is_not_found`]).
    pub async fn cluster(&self) -> Result<ClusterView> {
        self.get("/v1/cluster", &[]).await
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

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        self.send::<(), T>(Method::GET, path, query, None).await
    }

    /// A request; sent again (see [`failover`]) after a miss that left the server unchanged,
    /// or after any miss when its method is safe to repeat (`GET`, `HEAD`, `PUT`, `DELETE`).
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

    /// A request; `repeat`: sending it twice does no harm (it is also sent again after an
    /// exchange that broke once it may have reached the server).
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
        let timeout = self.inner.timeout;
        let (base, resp) = self
            .exchange(repeat, |base| {
                let mut rb = self
                    .inner
                    .http
                    .request(method.clone(), format!("{base}{path}"))
                    .timeout(timeout);
                if !query.is_empty() {
                    rb = rb.query(query);
                }
                if let Some(b) = &body {
                    rb = rb
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(b.clone());
                }
                rb
            })
            .await?;
        decode(&base, resp).await
    }
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
pub(crate) fn segment(s: &str) -> String {
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
        let c = Client::new(format!("127.0.0.1:{port}"), None).unwrap();
        let e = c.health().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("cannot reach the Drover server"), "{msg}");
        assert!(msg.contains("drover up"), "{msg}");
    }

    /// One answer of a [`scripted`] server.
    #[derive(Clone)]
    enum Answer {
        /// 200 with this JSON body.
        Ok(&'static str),
        /// 503 with `Retry-After: 1` and the leader header when given.
        Standby(Option<String>),
        /// Reads the request, then closes the connection without answering.
        Hangup,
    }

    const TASK: &str = r#"{"id":"t1","state":"queued","namespace":"default","queue":"default",
        "kind":"default","priority":0,"attempt":0,"max_attempts":1,"created_at":"x",
        "updated_at":"x","spec":{"type":"noop"},"label_selector":"","resources":{},"lost":0}"#;
    const HEALTHY: &str = r#"{"status":"ok"}"#;

    /// A server answering each connection's one request with the next of `answers` (the last
    /// one again once they are used up); its URL and how many requests it got.
    async fn scripted(answers: Vec<Answer>) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let Ok((mut conn, _)) = l.accept().await else {
                    return;
                };
                let answer = answers[i.min(answers.len() - 1)].clone();
                i += 1;
                let mut buf = vec![0; 65536];
                let _ = conn.read(&mut buf).await;
                count.fetch_add(1, Ordering::SeqCst);
                let (line, extra, body) = match answer {
                    Answer::Hangup => continue,
                    Answer::Ok(body) => ("200 OK", String::new(), body),
                    Answer::Standby(leader) => (
                        "503 Service Unavailable",
                        format!(
                            "retry-after: 1\r\n{}",
                            leader
                                .map(|l| format!("{}: {l}\r\n", drover_api::cluster::LEADER_HEADER))
                                .unwrap_or_default()
                        ),
                        r#"{"code":"unavailable","message":"this server is a standby; send it to the leader"}"#,
                    ),
                };
                let resp = format!(
                    "HTTP/1.1 {line}\r\n{extra}content-type: application/json\r\n\
                     connection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            }
        });
        (url, seen)
    }

    /// A loopback URL nothing listens on (bound, then released).
    fn dead_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    /// Moves seen: `(from, to)`.
    type Moves = Arc<std::sync::Mutex<Vec<(String, String)>>>;

    /// The client's retries, as `(from, to)`.
    fn recorded(c: Client) -> (Client, Moves) {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        let c = c.on_retry(move |r| l.lock().unwrap().push((r.from.clone(), r.to.clone())));
        (c, log)
    }

    #[tokio::test]
    async fn a_lone_server_s_503_is_waited_out_only_when_repeating_is_safe() {
        let (url, seen) = scripted(vec![Answer::Standby(None), Answer::Ok(HEALTHY)]).await;
        let c = Client::new(&url, None).unwrap();
        assert_eq!(c.health().await.unwrap().status, "ok");
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        // A plain submit says at once that the server is unavailable.
        let (url, seen) = scripted(vec![Answer::Standby(None), Answer::Ok(TASK)]).await;
        let c = Client::new(&url, None).unwrap();
        let e = c.submit(&SubmitRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e:?}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a plain submit is not repeated"
        );
    }

    #[tokio::test]
    async fn with_several_servers_a_503_moves_every_request_on() {
        // No leader named (an election is on): the next server, even for a plain submit,
        // since the 503 changed nothing.
        let (a, at_a) = scripted(vec![Answer::Standby(None)]).await;
        let (b, at_b) = scripted(vec![Answer::Ok(TASK)]).await;
        let (c, moves) = recorded(Client::new([&a, &b], None).unwrap());
        assert_eq!(c.submit(&SubmitRequest::default()).await.unwrap().id, "t1");
        assert_eq!(*moves.lock().unwrap(), [(a.clone(), b.clone())]);
        assert_eq!(
            (at_a.load(Ordering::SeqCst), at_b.load(Ordering::SeqCst)),
            (1, 1)
        );
    }

    #[tokio::test]
    async fn a_broken_exchange_is_repeated_only_when_repeating_is_safe() {
        // A leader that read the request and vanished (it may have committed it), and
        // another server that answers.
        async fn pair(answer: Answer) -> (Client, Arc<AtomicUsize>, Arc<AtomicUsize>) {
            let (a, at_a) = scripted(vec![Answer::Hangup]).await;
            let (b, at_b) = scripted(vec![answer]).await;
            (Client::new([a, b], None).unwrap(), at_a, at_b)
        }
        let seen =
            |a: &AtomicUsize, b: &AtomicUsize| (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst));

        let (c, a, b) = pair(Answer::Ok(TASK)).await;
        let e = c.submit(&SubmitRequest::default()).await.unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
        assert_eq!(seen(&a, &b), (1, 0), "a plain submit is not repeated");

        // With an idempotency key the repeat returns the task the first one created.
        let (c, a, b) = pair(Answer::Ok(TASK)).await;
        let keyed = SubmitRequest {
            idempotency_key: Some("k1".into()),
            ..Default::default()
        };
        assert_eq!(c.submit(&keyed).await.unwrap().id, "t1");
        assert_eq!(seen(&a, &b), (1, 1));

        // A read is repeated; so is a DELETE (idempotent); a cancel (a POST) is not.
        let (c, a, b) = pair(Answer::Ok(HEALTHY)).await;
        assert_eq!(c.health().await.unwrap().status, "ok");
        assert_eq!(seen(&a, &b), (1, 1));
        let (c, a, b) = pair(Answer::Ok("null")).await;
        c.remove_webhook("w").await.unwrap();
        assert_eq!(seen(&a, &b), (1, 1));
        let (c, a, b) = pair(Answer::Ok(TASK)).await;
        assert!(c.cancel("t1").await.is_err());
        assert_eq!(seen(&a, &b), (1, 0));
    }

    #[tokio::test]
    async fn exchanges_broken_everywhere_end_the_request_at_once() {
        // One server: as before, its broken exchange is the answer.
        let (url, seen) = scripted(vec![Answer::Hangup, Answer::Ok(HEALTHY)]).await;
        let c = Client::new(&url, None).unwrap();
        let e = c.health().await.unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        // Every server breaks it (say, https servers asked in http): one round, not 30 s.
        let (a, at_a) = scripted(vec![Answer::Hangup]).await;
        let (b, at_b) = scripted(vec![Answer::Hangup]).await;
        let c = Client::new([a, b], None).unwrap();
        let started = std::time::Instant::now();
        assert!(c.health().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            (at_a.load(Ordering::SeqCst), at_b.load(Ordering::SeqCst)),
            (1, 1)
        );
    }

    #[tokio::test]
    async fn a_dead_server_is_skipped_and_the_live_one_kept() {
        let dead = dead_url();
        let (live, seen) = scripted(vec![Answer::Ok(TASK)]).await;
        let (c, moves) = recorded(Client::new(format!("{dead},{live}"), None).unwrap());
        // Nothing was sent to the dead one: even a plain submit moves on.
        assert_eq!(c.submit(&SubmitRequest::default()).await.unwrap().id, "t1");
        assert_eq!(*moves.lock().unwrap(), [(dead.clone(), live.clone())]);
        assert_eq!(c.base_url(), live, "sticks to the server that answered");
        assert_eq!(c.task("t1").await.unwrap().id, "t1");
        assert_eq!(moves.lock().unwrap().len(), 1, "no second move");
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_standby_sends_the_request_to_the_leader_it_names() {
        let (leader, at_leader) = scripted(vec![Answer::Ok(TASK)]).await;
        let (standby, at_standby) = scripted(vec![Answer::Standby(Some(leader.clone()))]).await;
        let other = dead_url();
        // The leader is third: the hint skips the dead second one.
        let (c, moves) = recorded(Client::new(vec![&standby, &other, &leader], None).unwrap());
        assert_eq!(c.submit(&SubmitRequest::default()).await.unwrap().id, "t1");
        assert_eq!(*moves.lock().unwrap(), [(standby.clone(), leader.clone())]);
        assert_eq!(at_standby.load(Ordering::SeqCst), 1);
        assert_eq!(at_leader.load(Ordering::SeqCst), 1);
        assert_eq!(c.base_url(), leader);
    }

    #[tokio::test]
    async fn a_leader_outside_the_list_is_named_not_followed() {
        let (elsewhere, at_elsewhere) = scripted(vec![Answer::Ok(TASK)]).await;
        let (standby, at_standby) = scripted(vec![Answer::Standby(Some(elsewhere.clone()))]).await;
        // A short timeout bounds the retries (at most the timeout); a keyed submit is safe to
        // repeat, so the lone standby is asked again until then.
        let c = Client::with_timeout(&standby, None, Duration::from_millis(2500)).unwrap();
        let started = std::time::Instant::now();
        let keyed = SubmitRequest {
            idempotency_key: Some("k".into()),
            ..Default::default()
        };
        let e = c.submit(&keyed).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("the leader is {elsewhere}")), "{msg}");
        assert!(msg.contains("--server"), "{msg}");
        assert!(
            at_standby.load(Ordering::SeqCst) >= 2,
            "retried on the standby"
        );
        assert_eq!(
            at_elsewhere.load(Ordering::SeqCst),
            0,
            "never sent elsewhere"
        );
    }

    #[tokio::test]
    async fn every_server_down_gives_up_naming_them_all() {
        let (a, b) = (dead_url(), dead_url());
        let c = Client::with_timeout(format!("{a},{b}"), None, Duration::from_secs(1)).unwrap();
        let e = c.health().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&a) && msg.contains(&b), "{msg}");
        assert!(msg.contains("tried each of them"), "{msg}");
    }

    #[test]
    fn servers_come_as_a_comma_list_or_a_list_and_repeats_are_dropped() {
        let c = Client::new(vec!["a:1", "http://A:1/", "b:2"], None).unwrap();
        assert_eq!(c.servers(), ["http://a:1", "http://b:2"]);
        let c = Client::new(["a:1"], None).unwrap();
        assert_eq!(c.servers(), ["http://a:1"]);
        assert!(Client::new(Vec::<String>::new(), None).is_err());
    }
}
