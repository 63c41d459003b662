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
//! a request that cannot connect to one tries the next. A 503 with `Retry-After` (the
//! server's store is failing, or it is shutting down) is retried after that pause, for up to
//! [`UNAVAILABLE_RETRY`], when repeating the request is safe: reads, `PUT` and `DELETE`, and
//! submits whose every task has an idempotency key.

mod call;
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

/// How long a request safe to repeat is retried while the server answers 503 with
/// `Retry-After` (at most the client's timeout).
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
            }),
        })
    }

    /// The same client acting in namespace `ns`: tasks, workflows, schedules and webhooks it
    /// creates belong there (unless a request names its own), queues and schedules are looked
    /// up there, and listings and event streams show only it.
    pub fn in_namespace(&self, ns: impl Into<String>) -> Client {
        let i = &self.inner;
        Client {
            inner: Arc::new(Inner {
                bases: i.bases.clone(),
                current: AtomicUsize::new(i.current.load(Ordering::Relaxed)),
                http: i.http.clone(),
                token: i.token.clone(),
                timeout: i.timeout,
                namespace: Some(ns.into()),
            }),
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

    /// A request; with `repeat`, a 503 with `Retry-After` is retried after that pause while
    /// [`UNAVAILABLE_RETRY`] (at most the timeout) lasts. Without, the 503 is the answer.
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
        let give_up = tokio::time::Instant::now() + UNAVAILABLE_RETRY.min(self.inner.timeout);
        loop {
            let (base, resp) = self.exchange(&method, path, query, body.as_ref()).await?;
            if repeat && resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                if let Some(wait) = retry_after(&resp) {
                    if tokio::time::Instant::now() + wait <= give_up {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            return decode(&base, resp).await;
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
        let c = Client::new(&format!("127.0.0.1:{port}"), None).unwrap();
        let e = c.health().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("cannot reach the Drover server"), "{msg}");
        assert!(msg.contains("drover up"), "{msg}");
    }

    /// A server answering each connection's one request from `answers` in turn (503s with
    /// `Retry-After: 1`, then 200); returns its URL and how many requests it got.
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
                let (line, body) = if status == 503 {
                    (
                        "503 Service Unavailable\r\nretry-after: 1",
                        r#"{"code":"unavailable","message":"the server's store is unavailable, so nothing was changed; retry later"}"#,
                    )
                } else {
                    ("200 OK", r#"{"status":"ok"}"#)
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

        let (url, seen) = scripted(vec![503, 200]).await;
        let c = Client::new(&url, None).unwrap();
        let e = c.submit(&SubmitRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e:?}");
        assert!(e.to_string().contains("store is unavailable"), "{e}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a plain submit is not repeated"
        );
    }
}
