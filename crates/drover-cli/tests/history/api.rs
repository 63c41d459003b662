//! The harness's own REST client for a cluster: it finds the leader by itself (the
//! `x-drover-leader` header of a standby's 503, else the next URL), retries 503s and refused
//! connections, and repeats a request whose exchange broke only when that is safe (a submit
//! with an idempotency key).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::Value;

use crate::common::bearer;

/// How long one request keeps trying (a failover takes a lease and a bit).
const GIVE_UP: Duration = Duration::from_secs(60);

/// What the client went through, for the report.
#[derive(Default)]
pub struct Stats {
    /// 503s (a standby, an election, a degraded leader).
    pub unavailable: AtomicU64,
    /// 503s naming the leader, followed.
    pub redirects: AtomicU64,
    /// Connections refused (a dead server): nothing was sent.
    pub unreachable: AtomicU64,
    /// Exchanges broken after the request went out: its outcome is unknown.
    pub broken: AtomicU64,
}

impl Stats {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} answered 503 ({} named the leader), {} refused connections, {} broken exchanges",
            g(&self.unavailable),
            g(&self.redirects),
            g(&self.unreachable),
            g(&self.broken)
        )
    }
}

/// A request that did not get an answer.
#[derive(Debug)]
pub enum Failure {
    /// The exchange broke after the request was sent, and it may not be repeated: it may or
    /// may not have been applied.
    Unknown(String),
    /// Nobody answered for a minute.
    GaveUp(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unknown(e) => write!(f, "outcome unknown: {e}"),
            Failure::GaveUp(e) => write!(f, "no answer for a minute: {e}"),
        }
    }
}

/// An answer or a failure, in a line.
pub fn describe(r: &Result<(u16, Value), Failure>) -> String {
    match r {
        Ok((status, v)) => format!("{status} {v}"),
        Err(e) => e.to_string(),
    }
}

pub struct Api {
    pub urls: Vec<String>,
    current: Mutex<usize>,
    http: Client,
    pub stats: Stats,
}

impl Api {
    pub fn new(urls: Vec<String>) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, bearer().parse().unwrap());
        let http = Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        Api {
            urls,
            current: Mutex::new(0),
            http,
            stats: Stats::default(),
        }
    }

    fn current(&self) -> usize {
        *self.current.lock().unwrap()
    }

    /// Moves on from `i` (unless another thread already did).
    fn next_after(&self, i: usize) {
        let mut c = self.current.lock().unwrap();
        if *c == i {
            *c = (i + 1) % self.urls.len();
        }
    }

    /// Sends to the leader, wherever it is; `repeatable`: a broken exchange may be sent again.
    /// Returns the first answer that is not a 503, with its JSON body.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repeatable: bool,
    ) -> Result<(u16, Value), Failure> {
        let deadline = Instant::now() + GIVE_UP;
        let mut pause = Duration::from_millis(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            let i = self.current();
            let url = &self.urls[i];
            let mut rb = self.http.request(method.clone(), format!("{url}{path}"));
            if let Some(b) = body {
                rb = rb.json(b);
            }
            match rb.send() {
                Err(e) if e.is_connect() => {
                    self.stats.unreachable.fetch_add(1, Ordering::Relaxed);
                    last = format!("{url}: {e}");
                    self.next_after(i);
                }
                Err(e) => {
                    self.stats.broken.fetch_add(1, Ordering::Relaxed);
                    if !repeatable {
                        return Err(Failure::Unknown(format!("{url}: {e}")));
                    }
                    last = format!("{url}: {e}");
                    self.next_after(i);
                }
                Ok(resp) if resp.status() == 503 => {
                    self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                    let leader = resp
                        .headers()
                        .get(drover_api::cluster::LEADER_HEADER)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| self.urls.iter().position(|u| u == h));
                    last = format!("{url}: 503 {}", resp.text().unwrap_or_default());
                    match leader {
                        Some(j) if j != i => {
                            self.stats.redirects.fetch_add(1, Ordering::Relaxed);
                            *self.current.lock().unwrap() = j;
                            continue;
                        }
                        _ => self.next_after(i),
                    }
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.text() {
                        Ok(text) => {
                            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
                            return Ok((status, v));
                        }
                        Err(e) => {
                            self.stats.broken.fetch_add(1, Ordering::Relaxed);
                            if !repeatable {
                                return Err(Failure::Unknown(format!("{url}: {e}")));
                            }
                            last = format!("{url}: {e}");
                        }
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(400));
        }
        Err(Failure::GaveUp(last))
    }

    /// A write to the leader (a 2xx expected); panics when nobody answers.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body), true)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// A leader-only read (`/v1/workers`, ...).
    pub fn get_leader(&self, path: &str) -> Value {
        match self.send(Method::GET, path, None, true) {
            Ok((200, v)) => v,
            other => panic!("GET {path}: {}", describe(&other)),
        }
    }

    /// A read any member serves: the first member that answers 200.
    pub fn get_any(&self, path: &str) -> Option<Value> {
        let start = self.current();
        (0..self.urls.len()).find_map(|k| {
            let url = &self.urls[(start + k) % self.urls.len()];
            get_from(&self.http, url, path)
        })
    }

    /// A read from one member.
    pub fn get_from(&self, url: &str, path: &str) -> Option<Value> {
        get_from(&self.http, url, path)
    }
}

fn get_from(http: &Client, url: &str, path: &str) -> Option<Value> {
    let r = http.get(format!("{url}{path}")).send().ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().ok()
}
