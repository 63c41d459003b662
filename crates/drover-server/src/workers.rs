//! Worker liveness as operators see it: `alive`, `suspect` (a missed heartbeat), `lost`
//! (silent for longer than a lease, or disconnected), or `draining` / `drained`. Silence is
//! the core's (its timers also emit the worker events), so the list and the event stream
//! agree; disconnection is noticed here.
//!
//! Disconnected workers vanish from the core, so the monitor keeps a small list of recently
//! lost ones (with their last known details) for `LOST_KEEP`: a worker missing from the core's
//! list since the last look (every heartbeat interval, and every `/v1/workers`) has gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_api::namespace::Scope;
use drover_api::rest::{rfc3339, WorkerList, WorkerView};
use drover_api::{ApiError, ErrorCode};
use drover_core::{Input, Micros, Reply, WorkerInfo, WorkerStatus, WorkerSummary};

use crate::clock::now_micros;
use crate::driver::DriverHandle;
use crate::http::{unexpected, ApiResult, AppState, Caller, HttpError};
use crate::metrics::Metrics;

/// The state of a disconnected worker.
const LOST: &str = WorkerStatus::Lost.as_str();
/// How long a lost worker stays listed.
pub const LOST_KEEP: Duration = Duration::from_secs(600);
/// Most lost workers remembered (the oldest go first).
const MAX_LOST: usize = 1000;

struct Lost {
    last: Option<WorkerSummary>,
    lost_at: Micros,
}

#[derive(Default)]
struct Inner {
    /// The last details seen of each connected worker.
    known: HashMap<String, WorkerSummary>,
    lost: BTreeMap<String, Lost>,
}

pub struct WorkerMonitor {
    heartbeat_ms: u64,
    inner: Mutex<Inner>,
}

impl WorkerMonitor {
    pub fn new(heartbeat_ms: u64) -> Self {
        WorkerMonitor {
            heartbeat_ms,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of a connected worker.
    pub fn state_of(w: &WorkerSummary) -> &'static str {
        w.status.as_str()
    }

    /// Every connected worker, then the recently lost ones, as the API shows them. Also
    /// refreshes what the monitor knows of the connected ones.
    pub fn views(&self, current: Vec<WorkerSummary>, now: Micros) -> Vec<WorkerView> {
        let mut g = self.lock();
        let known: HashMap<String, WorkerSummary> = current
            .iter()
            .map(|w| (w.info.name.clone(), w.clone()))
            .collect();
        // Gone since the last look (its `left` event may not be processed yet): lost now.
        let old = std::mem::replace(&mut g.known, known);
        for (name, w) in old {
            if !g.known.contains_key(&name) {
                g.lost.entry(name).or_insert(Lost {
                    last: Some(w),
                    lost_at: now,
                });
            }
        }
        let cutoff = now - LOST_KEEP.as_micros() as Micros;
        g.lost
            .retain(|name, l| l.lost_at >= cutoff && !is_connected(name, &current));
        while g.lost.len() > MAX_LOST {
            let oldest = g
                .lost
                .iter()
                .min_by_key(|(_, l)| l.lost_at)
                .map(|(n, _)| n.clone());
            match oldest {
                Some(n) => g.lost.remove(&n),
                None => break,
            };
        }
        let mut out = Vec::with_capacity(current.len() + g.lost.len());
        for w in &current {
            let age = age_ms(now, w.last_seen);
            out.push(view(w, Self::state_of(w), age));
        }
        for (name, l) in &g.lost {
            match &l.last {
                Some(w) => out.push(view(w, LOST, age_ms(now, w.last_seen))),
                None => out.push(WorkerView {
                    name: name.clone(),
                    state: LOST.into(),
                    draining: false,
                    last_heartbeat_age_ms: age_ms(now, l.lost_at),
                    slots: 0,
                    prefetch: 0,
                    held: 0,
                    running: 0,
                    labels: Default::default(),
                    kinds: Vec::new(),
                    namespaces: Vec::new(),
                    resources: Default::default(),
                    resources_free: Default::default(),
                    joined_at: rfc3339(l.lost_at),
                    last_heartbeat: rfc3339(l.lost_at),
                }),
            }
        }
        out
    }

    /// A worker was resumed while away: its lost entry no longer shows it draining.
    pub fn resumed(&self, name: &str) {
        if let Some(w) = self.lock().lost.get_mut(name).and_then(|l| l.last.as_mut()) {
            w.draining = false;
        }
    }

    /// Workers per state, for the metrics.
    pub fn counts(&self, current: Vec<WorkerSummary>, now: Micros) -> HashMap<&'static str, i64> {
        let mut m = HashMap::new();
        for v in self.views(current, now) {
            if let Some(s) = WorkerStatus::ALL.iter().find(|s| s.as_str() == v.state) {
                *m.entry(s.as_str()).or_insert(0) += 1;
            }
        }
        m
    }

    /// Looks at the connected workers every heartbeat interval (at most every second): notes
    /// the ones that went away and refreshes the worker gauges. Runs until the server stops.
    pub async fn run(self: Arc<Self>, driver: DriverHandle, metrics: Arc<Metrics>) {
        let every = Duration::from_millis(self.heartbeat_ms.clamp(100, 1000));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(current) = driver.workers().await else {
                return;
            };
            metrics.set_worker_counts(&self.counts(current, now_micros()));
        }
    }
}

/// The OpenAPI part of these endpoints, merged into `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(workers, drain, resume),
    components(schemas(WorkerView, WorkerList))
)]
pub struct WorkerApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/workers", get(workers))
        .route("/v1/workers/{name}/drain", post(drain))
        .route("/v1/workers/{name}/resume", post(resume))
}

#[utoipa::path(get, path = "/v1/workers", responses((status = 200, body = WorkerList)))]
async fn workers(State(s): State<AppState>, Caller(scope): Caller) -> ApiResult<Json<WorkerList>> {
    let list = s.driver.workers().await?;
    let mut workers = s.workers.views(list, now_micros());
    workers.retain(|w| serves_scope(&w.namespaces, &scope));
    Ok(Json(WorkerList { workers }))
}

/// Whether a worker serving `namespaces` (empty: every one) works for a caller of `scope`:
/// the caller sees the workers that may run its tasks.
fn serves_scope(namespaces: &[String], scope: &Scope) -> bool {
    scope.is_all() || namespaces.is_empty() || namespaces.iter().any(|n| scope.allows(n))
}

pub fn serves_any(info: &WorkerInfo, scope: &Scope) -> bool {
    serves_scope(&info.namespaces, scope)
}

/// A limited caller drains or resumes only workers that serve nothing but its namespaces:
/// others' shared workers are not its to stop (403), and unseen ones do not exist (404).
async fn check_drainable(s: &AppState, scope: &Scope, name: &str) -> ApiResult<()> {
    if scope.is_all() {
        return Ok(());
    }
    let list = s.driver.workers().await?;
    let Some(w) = list.iter().find(|w| w.info.name == name) else {
        return Err(no_worker(name));
    };
    let ns = &w.info.namespaces;
    if !serves_scope(ns, scope) {
        return Err(no_worker(name));
    }
    if ns.is_empty() || !ns.iter().all(|n| scope.allows(n)) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("worker {name} also serves other namespaces; a token of every namespace may drain it"),
        )
        .into());
    }
    Ok(())
}

fn no_worker(name: &str) -> HttpError {
    HttpError(ApiError::not_found(format!(
        "no connected worker named '{name}'; see drover workers"
    )))
}

#[utoipa::path(post, path = "/v1/workers/{name}/drain", params(("name" = String, Path, description = "worker name", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")),
    responses((status = 200, body = WorkerList), (status = 404, body = ApiError)))]
async fn drain(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkerList>> {
    check_drainable(&s, &scope, &name).await?;
    set_draining(s, name, true).await
}

#[utoipa::path(post, path = "/v1/workers/{name}/resume", params(("name" = String, Path, description = "worker name", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")),
    responses((status = 200, body = WorkerList), (status = 404, body = ApiError)))]
async fn resume(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkerList>> {
    check_drainable(&s, &scope, &name).await?;
    set_draining(s, name, false).await
}

/// Drain: the worker takes nothing new and its running tasks finish. Replies with the worker.
async fn set_draining(s: AppState, name: String, on: bool) -> ApiResult<Json<WorkerList>> {
    let n = name.clone();
    let reply = s
        .driver
        .request(move |req| {
            if on {
                Input::DrainWorker { req, name: n }
            } else {
                Input::ResumeWorker { req, name: n }
            }
        })
        .await?;
    match reply {
        Reply::Drain(Ok(())) => {
            if !on {
                s.workers.resumed(&name);
            }
            let list = s.driver.workers().await?;
            let mut views = s.workers.views(list, now_micros());
            views.retain(|w| w.name == name);
            Ok(Json(WorkerList { workers: views }))
        }
        Reply::Drain(Err(_)) => Err(no_worker(&name)),
        other => Err(unexpected(other)),
    }
}

fn is_connected(name: &str, current: &[WorkerSummary]) -> bool {
    current.iter().any(|w| w.info.name == name)
}

fn age_ms(now: Micros, then: Micros) -> u64 {
    ((now - then).max(0) / 1000) as u64
}

fn view(w: &WorkerSummary, state: &str, age: u64) -> WorkerView {
    WorkerView {
        name: w.info.name.clone(),
        state: state.into(),
        draining: w.draining,
        last_heartbeat_age_ms: age,
        slots: w.info.slots,
        prefetch: w.info.prefetch,
        held: w.held as u32,
        running: w.running as u32,
        labels: w.info.labels.clone(),
        kinds: w.info.kinds.clone(),
        namespaces: w.info.namespaces.clone(),
        resources: w.info.resources.clone(),
        resources_free: w.resources_free.clone(),
        joined_at: rfc3339(w.joined_at),
        last_heartbeat: rfc3339(w.last_seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::WorkerInfo;

    fn summary(name: &str, last_seen: Micros, status: WorkerStatus) -> WorkerSummary {
        WorkerSummary {
            info: WorkerInfo {
                name: name.into(),
                slots: 2,
                ..Default::default()
            },
            held: 0,
            running: 0,
            draining: false,
            joined_at: 0,
            last_seen,
            status,
            resources_free: Default::default(),
        }
    }

    #[test]
    fn states_from_the_core_silence_and_lost_list() {
        let m = WorkerMonitor::new(100);
        let now = 10_000_000;
        let views = m.views(
            vec![
                summary("a", now - 150_000, WorkerStatus::Alive),
                summary("s", now - 250_000, WorkerStatus::Suspect),
                summary("l", now - 1_500_000, WorkerStatus::Lost),
            ],
            now,
        );
        let states: Vec<_> = views
            .iter()
            .map(|v| (v.name.as_str(), v.state.as_str()))
            .collect();
        assert_eq!(states, [("a", "alive"), ("s", "suspect"), ("l", "lost")]);
        assert_eq!(views[1].last_heartbeat_age_ms, 250);
        // "l" and "s" went away: both listed as lost, with their details.
        let views = m.views(vec![summary("a", now, WorkerStatus::Alive)], now + 1000);
        let states: Vec<_> = views
            .iter()
            .map(|v| (v.name.as_str(), v.state.as_str()))
            .collect();
        assert_eq!(states, [("a", "alive"), ("l", "lost"), ("s", "lost")]);
        assert_eq!(views[2].slots, 2, "last known details are kept");
        // "l" and "s" are forgotten after LOST_KEEP; "a", gone now, is lost.
        let later = now + LOST_KEEP.as_micros() as Micros + 2000;
        let views = m.views(vec![], later);
        assert_eq!(views.len(), 1);
        assert_eq!(
            (views[0].name.as_str(), views[0].state.as_str()),
            ("a", "lost")
        );
        // Back: alive, and off the lost list.
        let counts = m.counts(vec![summary("a", later, WorkerStatus::Alive)], later);
        assert_eq!((counts["alive"], counts.get("lost")), (1, None));
    }
}
