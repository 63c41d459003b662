//! Feasibility: which workers may take a task, and why the others may not.
//!
//! Checks run cheapest and most permanent first, and a worker is counted under the first
//! check it fails: namespace, kind, label selector, total resources, draining, free credit, free
//! resources. The first three can only change when workers join or leave; the last three
//! change as work finishes.

use std::collections::BTreeMap;

use super::{Job, PlacementSpec, WorkerView};

/// Why one worker was not feasible. Indices refer to the task's spec: `Label(i)` to
/// `spec.selector.0[i]`, resource indices to `spec.resources.iter()`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Rejection {
    /// A broadcast copy pinned to another worker.
    Pinned,
    /// Does not serve the task's namespace.
    Namespace,
    /// Does not accept the task's kind.
    Kind,
    /// Fails the selector requirement with this index.
    Label(u16),
    /// Declares less of this resource in total than requested: it never fits.
    Capacity(u16),
    Draining,
    /// Silent for longer than `suspect_after_ms`: may be stalled, so nothing new for now.
    Unresponsive,
    /// Holds `slots + prefetch` attempts already.
    NoCredit,
    /// Has the resource, but not enough of it free now.
    Resource(u16),
}

impl Rejection {
    /// Permanent while the worker set stays the same.
    pub fn is_static(self) -> bool {
        matches!(
            self,
            Rejection::Pinned
                | Rejection::Namespace
                | Rejection::Kind
                | Rejection::Label(_)
                | Rejection::Capacity(_)
        )
    }
}

/// A note a strategy adds when it chose to wait although some worker was eligible.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum WaitNote {
    /// `consistent_hash`: the key's owner on the ring has no room now.
    KeyOwnerBusy { worker: String },
    /// `adaptive`: waiting for this worker is expected to finish sooner than any free one.
    WaitingForFaster { worker: String },
}

/// A failed placement, as data: how many workers were looked at and how many were rejected
/// for each reason.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Unplaced {
    pub workers: u32,
    /// Counts by reason, in `Rejection` order.
    pub rejected: Vec<(Rejection, u32)>,
    pub note: Option<WaitNote>,
}

impl Unplaced {
    pub fn count(&self, r: Rejection) -> u32 {
        self.rejected
            .iter()
            .find(|(x, _)| *x == r)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// True when no worker connected now could ever take the task (only static reasons).
    pub fn never_fits(&self) -> bool {
        self.note.is_none() && self.rejected.iter().all(|(r, _)| r.is_static())
    }

    /// A sentence for `drover status`: "no worker has kind gpu-render", "2 workers lack label
    /// zone=b; 1 worker has no free slot", ...
    pub fn explain(&self, spec: &PlacementSpec, job: Job<'_>) -> String {
        if self.workers == 0 {
            return "no workers are connected".into();
        }
        if let Some(s) = self.missing_shard_worker(spec) {
            return s;
        }
        if let Some(s) = self.cluster_fact(spec, job) {
            return s;
        }
        let mut out = self.reasons(spec, job);
        if let Some(note) = self.note_text(spec) {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(&note);
        }
        if out.is_empty() {
            out = "waiting for a free slot".into();
        }
        out
    }

    /// A broadcast copy whose pinned worker is not connected: every worker rejects it as
    /// pinned elsewhere.
    fn missing_shard_worker(&self, spec: &PlacementSpec) -> Option<String> {
        let sh = spec.shard.as_ref()?;
        (self.count(Rejection::Pinned) == self.workers).then(|| {
            format!(
                "shard {} of {} waits for worker {}, which is not connected",
                sh.index, sh.count, sh.worker
            )
        })
    }

    /// One static reason for every worker: say it as a fact about the cluster.
    fn cluster_fact(&self, spec: &PlacementSpec, job: Job<'_>) -> Option<String> {
        let [(r, n)] = self.rejected.as_slice() else {
            return None;
        };
        if *n != self.workers || self.note.is_some() {
            return None;
        }
        match r {
            Rejection::Namespace => Some(format!("no worker serves namespace {}", job.namespace)),
            Rejection::Kind if job.handler => {
                Some(format!("no worker has a handler for kind {}", job.kind))
            }
            Rejection::Kind => Some(format!("no worker has kind {}", job.kind)),
            Rejection::Label(i) => {
                requirement(spec, *i).map(|req| format!("no worker matches label {req}"))
            }
            Rejection::Capacity(i) => {
                Some(format!("no worker has {} in total", resource(spec, *i)))
            }
            Rejection::Draining => Some(format!("all {} workers are draining", self.workers)),
            Rejection::NoCredit => Some(format!(
                "waiting for a free slot: all {} workers are busy",
                self.workers
            )),
            _ => None,
        }
    }

    /// The rejections as clauses, most common first, joined with "; " (pinned ones unsaid).
    fn reasons(&self, spec: &PlacementSpec, job: Job<'_>) -> String {
        let mut parts: Vec<(u32, String)> = self
            .rejected
            .iter()
            .filter_map(|&(r, n)| reason(spec, job, r, n).map(|text| (n, text)))
            .collect();
        // Most common reason first; ties keep the check order.
        parts.sort_by_key(|p| std::cmp::Reverse(p.0));
        parts
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// What the strategy's wait note adds, if there is one.
    fn note_text(&self, spec: &PlacementSpec) -> Option<String> {
        Some(match self.note.as_ref()? {
            WaitNote::KeyOwnerBusy { worker } => {
                let key = spec.key.as_deref().unwrap_or("");
                format!(
                    "waiting for worker {worker}, the owner of key '{key}' on the hash ring, to have room"
                )
            }
            WaitNote::WaitingForFaster { worker } => format!(
                "waiting for worker {worker}: expected to finish sooner there than on a free worker (adaptive)"
            ),
        })
    }
}

/// The requested resource with index `i`, as `name=amount`.
fn resource(spec: &PlacementSpec, i: u16) -> String {
    spec.resources
        .iter()
        .nth(i as usize)
        .map(|(k, v)| format!("{k}={v}"))
        .unwrap_or_else(|| "?".into())
}

/// The selector requirement with index `i`.
fn requirement(spec: &PlacementSpec, i: u16) -> Option<&super::Requirement> {
    spec.selector.0.get(i as usize)
}

/// One clause for `n` workers rejected for `r`; `None` for reasons not worth saying.
fn reason(spec: &PlacementSpec, job: Job<'_>, r: Rejection, n: u32) -> Option<String> {
    let w = if n == 1 { "worker" } else { "workers" };
    let (has, lacks, is) = if n == 1 {
        ("has", "lacks", "is")
    } else {
        ("have", "lack", "are")
    };
    let text = match r {
        Rejection::Pinned => return None,
        Rejection::Namespace => format!("{n} {w} {is} not serving namespace {}", job.namespace),
        Rejection::Kind => format!("{n} {w} {lacks} kind {}", job.kind),
        Rejection::Label(i) => match requirement(spec, i) {
            Some(req @ super::Requirement::Eq(..))
            | Some(req @ super::Requirement::Exists(..))
            | Some(req @ super::Requirement::In(..)) => {
                format!("{n} {w} {lacks} label {req}")
            }
            Some(req) => format!("{n} {w} do not match {req}"),
            None => format!("{n} {w} fail the label selector"),
        },
        Rejection::Capacity(i) => {
            format!("{n} {w} {has} less than {} in total", resource(spec, i))
        }
        Rejection::Draining => format!("{n} {w} {is} draining"),
        Rejection::Unresponsive => format!("{n} {w} {is} not responding"),
        Rejection::NoCredit => format!("{n} {w} {has} no free slot"),
        Rejection::Resource(i) => format!("{n} {w} {lacks} free {}", resource(spec, i)),
    };
    Some(text)
}

/// The result of the feasibility pass over every worker.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// Feasible now, in `workers` order.
    pub ok: Vec<usize>,
    /// Feasible but for current load (no credit, resources held by others, or a late
    /// heartbeat): `ok` plus the busy ones, in `workers` order.
    pub eligible: Vec<usize>,
    pub unplaced: Unplaced,
}

/// Checks one worker; `Ok` when it can take the task now.
pub fn check(spec: &PlacementSpec, job: Job<'_>, w: &WorkerView<'_>) -> Result<(), Rejection> {
    if let Some(sh) = &spec.shard {
        if sh.worker != w.info.name {
            return Err(Rejection::Pinned);
        }
    }
    if !w.info.serves_namespace(job.namespace) {
        return Err(Rejection::Namespace);
    }
    let kind_ok = if job.handler {
        w.info.names_kind(job.kind)
    } else {
        w.info.accepts_kind(job.kind)
    };
    if !kind_ok {
        return Err(Rejection::Kind);
    }
    if let Some(i) = spec.selector.first_failure(&w.info.labels) {
        return Err(Rejection::Label(i.min(u16::MAX as usize) as u16));
    }
    for (i, (name, amount)) in spec.resources.iter().enumerate() {
        if w.total(name) < amount {
            return Err(Rejection::Capacity(i as u16));
        }
    }
    if w.draining {
        return Err(Rejection::Draining);
    }
    if w.suspect {
        return Err(Rejection::Unresponsive);
    }
    if w.held >= w.info.credit_limit() {
        return Err(Rejection::NoCredit);
    }
    for (i, (name, amount)) in spec.resources.iter().enumerate() {
        if w.free(name) < amount {
            return Err(Rejection::Resource(i as u16));
        }
    }
    Ok(())
}

/// The feasibility pass: O(workers × requirements).
pub fn candidates(spec: &PlacementSpec, job: Job<'_>, workers: &[WorkerView<'_>]) -> Candidates {
    let mut c = Candidates {
        unplaced: Unplaced {
            workers: workers.len() as u32,
            ..Unplaced::default()
        },
        ..Candidates::default()
    };
    let mut counts: BTreeMap<Rejection, u32> = BTreeMap::new();
    for (i, w) in workers.iter().enumerate() {
        match check(spec, job, w) {
            Ok(()) => {
                c.ok.push(i);
                c.eligible.push(i);
            }
            Err(r) => {
                if matches!(
                    r,
                    Rejection::Unresponsive | Rejection::NoCredit | Rejection::Resource(_)
                ) {
                    c.eligible.push(i);
                }
                *counts.entry(r).or_default() += 1;
            }
        }
    }
    c.unplaced.rejected = counts.into_iter().collect();
    c
}
