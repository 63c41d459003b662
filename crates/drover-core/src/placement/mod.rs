//! Placement: feasibility first, then ranking by a strategy, then selection (design section 4).
//!
//! Everything here is a pure function of (task spec, worker views, strategy state, seeded rng):
//!
//! - [`feasibility`]: which workers could take the task now ([`Candidates::ok`]), which could
//!   take it but for their current load ([`Candidates::eligible`]), and why the others cannot
//!   ([`Unplaced`], counts of rejections by reason, rendered as a human sentence).
//! - [`strategies`]: the ranking rules of [`Strategy`], over the candidates.
//! - [`adaptive`]: the learned model behind [`Strategy::Adaptive`].
//! - [`selector`]: label selectors (`k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`).
//!
//! `workers` is always given in a stable order (the coordinator passes them sorted by name);
//! strategies that break ties or fail over use that order.

pub mod adaptive;
pub mod feasibility;
pub mod hash;
pub mod selector;
pub mod strategies;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::model::{TaskId, WorkerInfo};

pub use adaptive::{AdaptiveConfig, AdaptiveModel, Estimate};
pub use feasibility::{candidates, Candidates, Rejection, Unplaced, WaitNote};
pub use hash::HashRing;
pub use selector::{Requirement, Selector, SelectorError};
pub use strategies::rank;

/// How to choose among feasible workers. Names (`as_str`) are the wire and CLI contract.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// Rotate over feasible workers.
    RoundRobin,
    /// Uniform choice among feasible workers.
    Random,
    /// Lowest held/credit ratio, ties broken by rotation.
    #[default]
    LeastLoaded,
    /// Two uniform samples among feasible workers; the less loaded one.
    PowerOfTwo,
    /// Hash ring with virtual nodes on the routing key; rotation without a key.
    ConsistentHash,
    /// Best fit: the feasible worker left fullest (slots and requested resources).
    BinPack,
    /// Balance across the values of a label (default `zone`), then least loaded.
    Spread,
    /// Least expected completion time from learned per-(worker, kind) run times and failure
    /// rates, with optimistic exploration.
    Adaptive,
    /// One copy per feasible worker, fanned out at submit; each copy is pinned to its worker
    /// and told its shard index and count.
    Broadcast,
    /// The first feasible worker in a stable order (by name).
    Failover,
}

impl Strategy {
    pub const ALL: [Strategy; 10] = [
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::LeastLoaded,
        Strategy::PowerOfTwo,
        Strategy::ConsistentHash,
        Strategy::BinPack,
        Strategy::Spread,
        Strategy::Adaptive,
        Strategy::Broadcast,
        Strategy::Failover,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
            Strategy::LeastLoaded => "least_loaded",
            Strategy::PowerOfTwo => "power_of_two",
            Strategy::ConsistentHash => "consistent_hash",
            Strategy::BinPack => "bin_pack",
            Strategy::Spread => "spread",
            Strategy::Adaptive => "adaptive",
            Strategy::Broadcast => "broadcast",
            Strategy::Failover => "failover",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown strategy '{s}' (one of: {})", names.join(", "))
            })
    }
}

/// Resources a task asks for. Units are whatever the workers declare (`--resources
/// cpu=4,mem=8GiB,gpu=1` gives whole CPUs, bytes and GPUs); zero means "not requested".
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct ResourceRequest {
    pub cpu: u64,
    pub mem: u64,
    pub gpu: u64,
    /// Named custom resources (`licenses=2`), matched by name against the worker's resources.
    pub custom: BTreeMap<String, u64>,
}

impl ResourceRequest {
    pub fn is_empty(&self) -> bool {
        self.cpu == 0 && self.mem == 0 && self.gpu == 0 && self.custom.values().all(|&v| v == 0)
    }

    /// The requested (non-zero) amounts by name, in a stable order: cpu, mem, gpu, then custom
    /// names sorted. Rejections refer to a resource by its position in this list.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        [("cpu", self.cpu), ("mem", self.mem), ("gpu", self.gpu)]
            .into_iter()
            .chain(self.custom.iter().map(|(k, &v)| (k.as_str(), v)))
            .filter(|&(_, v)| v > 0)
    }

    /// From a name → amount map (`cpu`, `mem`, `gpu` go to their fields).
    pub fn from_map(m: &BTreeMap<String, u64>) -> Self {
        let mut r = ResourceRequest::default();
        for (k, &v) in m {
            match k.as_str() {
                "cpu" => r.cpu = v,
                "mem" => r.mem = v,
                "gpu" => r.gpu = v,
                _ => {
                    r.custom.insert(k.clone(), v);
                }
            }
        }
        r
    }

    pub fn to_map(&self) -> BTreeMap<String, u64> {
        self.iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

impl fmt::Display for ResourceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl FromStr for ResourceRequest {
    type Err = String;
    /// `cpu=2,mem=1073741824,licenses=1` with whole numbers (the CLI converts units first).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("resource '{part}': expected name=amount"))?;
            let v: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("resource '{part}': '{}' is not a whole number", v.trim()))?;
            if m.insert(k.trim().to_string(), v).is_some() {
                return Err(format!("resource '{}' given twice", k.trim()));
            }
        }
        Ok(ResourceRequest::from_map(&m))
    }
}

/// One copy of a broadcast task: pinned to `worker`, told `index` of `count`.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Shard {
    /// The task that was submitted; it is shard 0 itself.
    pub group: TaskId,
    pub index: u32,
    pub count: u32,
    pub worker: String,
}

/// Everything placement needs to know about a task beyond its kind.
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct PlacementSpec {
    /// Overrides the queue's (or the server's) default strategy.
    pub strategy: Option<Strategy>,
    /// Routing key for `consistent_hash`.
    pub key: Option<String>,
    pub resources: ResourceRequest,
    pub selector: Selector,
    /// The label `spread` balances over; `zone` when unset.
    pub spread_label: Option<String>,
    /// Set on the copies of a broadcast task (by the core, never by a submitter).
    pub shard: Option<Shard>,
}

impl PlacementSpec {
    pub fn spread_label(&self) -> &str {
        self.spread_label.as_deref().unwrap_or("zone")
    }

    /// True when nothing differs from the default (no allocation needed to remember it).
    pub fn is_default(&self) -> bool {
        *self == PlacementSpec::default()
    }
}

/// What feasibility asks of a task beyond its spec: a worker must serve its namespace and
/// accept its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job<'a> {
    pub namespace: &'a str,
    pub kind: &'a str,
    /// A handler task: only a worker that named its kind may take it.
    pub handler: bool,
}

impl<'a> Job<'a> {
    pub fn of(def: &'a crate::model::TaskDef) -> Self {
        Job {
            namespace: &def.namespace,
            kind: &def.kind,
            handler: def.spec.is_handler(),
        }
    }

    /// A task of `kind` in the default namespace.
    pub fn kind(kind: &'a str) -> Self {
        Job {
            namespace: crate::model::DEFAULT_NAMESPACE,
            kind,
            handler: false,
        }
    }
}

/// What placement may know of a worker.
#[derive(Clone, Debug)]
pub struct WorkerView<'a> {
    pub info: &'a WorkerInfo,
    /// Assignments it holds now (running or prefetched); bounded by `info.credit_limit()`.
    pub held: usize,
    pub draining: bool,
    /// Silent for too long: eligible (it keeps its hash-ring keys) but given nothing now.
    pub suspect: bool,
    /// Resources held by the attempts it holds (sum of their requests).
    pub used: BTreeMap<String, u64>,
}

impl<'a> WorkerView<'a> {
    pub fn new(info: &'a WorkerInfo, held: usize, draining: bool) -> Self {
        WorkerView {
            info,
            held,
            draining,
            suspect: false,
            used: BTreeMap::new(),
        }
    }

    pub fn total(&self, resource: &str) -> u64 {
        self.info.resources.get(resource).copied().unwrap_or(0)
    }

    pub fn free(&self, resource: &str) -> u64 {
        self.total(resource)
            .saturating_sub(self.used.get(resource).copied().unwrap_or(0))
    }

    /// Records one more attempt holding `req` (used within a dispatch round).
    pub fn take(&mut self, req: &ResourceRequest) {
        self.held += 1;
        for (k, v) in req.iter() {
            *self.used.entry(k.to_string()).or_default() += v;
        }
    }
}

/// The state strategies keep between placements: the rotation cursor, the hash ring, the
/// adaptive model and the reservations of the current dispatch round.
#[derive(Clone, Debug)]
pub struct PlacementState {
    /// Rotation cursor of `round_robin`, `least_loaded` ties and key-less `consistent_hash`.
    pub cursor: usize,
    pub ring: HashRing,
    pub adaptive: AdaptiveModel,
    /// Per worker (index into the round's views): tasks `adaptive` decided to wait for it.
    pub reserved: Vec<u32>,
}

impl PlacementState {
    pub fn new(adaptive: AdaptiveConfig, vnodes: u32) -> Self {
        PlacementState {
            cursor: 0,
            ring: HashRing::new(vnodes),
            adaptive: AdaptiveModel::new(adaptive),
            reserved: Vec::new(),
        }
    }

    /// Call before placing a batch of tasks on `workers` (the same slice, updated in place,
    /// for the whole round): syncs the hash ring to the worker set, clears reservations.
    pub fn begin_round(&mut self, workers: &[WorkerView<'_>]) {
        self.ring.sync(workers.iter().map(|w| w.info.name.as_str()));
        self.reserved.clear();
        self.reserved.resize(workers.len(), 0);
    }
}

impl Default for PlacementState {
    fn default() -> Self {
        PlacementState::new(AdaptiveConfig::default(), hash::DEFAULT_VNODES)
    }
}

/// The outcome of placing one task. A failed placement is data, never an error.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Index into `workers`.
    Place(usize),
    Wait(Unplaced),
}

/// Feasibility, then ranking: the whole pipeline for one task. `state.begin_round(workers)`
/// must have been called for this `workers` slice.
pub fn place<R: Rng>(
    strategy: Strategy,
    spec: &PlacementSpec,
    job: Job<'_>,
    workers: &[WorkerView<'_>],
    state: &mut PlacementState,
    rng: &mut R,
) -> Placement {
    let cands = candidates(spec, job, workers);
    match rank(strategy, spec, job.kind, workers, &cands, state, rng) {
        Ok(i) => Placement::Place(i),
        Err(note) => {
            let mut u = cands.unplaced;
            u.note = note;
            Placement::Wait(u)
        }
    }
}

/// The workers a broadcast task fans out to: every worker that could take it but for its
/// current load (kind, labels, total resources, not draining), in `workers` order.
pub fn broadcast_targets(
    spec: &PlacementSpec,
    job: Job<'_>,
    workers: &[WorkerView<'_>],
) -> Vec<usize> {
    let unpinned = PlacementSpec {
        shard: None,
        ..spec.clone()
    };
    candidates(&unpinned, job, workers).eligible
}

/// An external ranking rule (the simulator's `oracle`), used by
/// `Coordinator::dispatch_with` instead of the task's strategy. Feasibility stays the core's:
/// a choice outside `ok` is treated as "wait".
pub trait Ranker {
    /// Called once per dispatch round, before any `choose`.
    fn begin_round(&mut self, _workers: &[WorkerView<'_>]) {}
    /// `ok`: feasible now. `eligible`: feasible but for current load (a superset of `ok`).
    fn choose(
        &mut self,
        kind: &str,
        spec: &PlacementSpec,
        workers: &[WorkerView<'_>],
        ok: &[usize],
        eligible: &[usize],
    ) -> Option<usize>;
}
