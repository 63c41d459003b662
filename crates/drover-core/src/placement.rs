//! Placement: feasibility first, then ranking by a strategy. Pure and deterministic: the
//! rotation cursor and the random source are passed in.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::model::{TaskDef, WorkerInfo};

/// How to choose among feasible workers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Strategy {
    RoundRobin,
    Random,
    /// Lowest held/credit ratio, ties broken by rotation.
    #[default]
    LeastLoaded,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::LeastLoaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
            Strategy::LeastLoaded => "least_loaded",
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

/// What placement may know of a worker.
#[derive(Clone, Copy, Debug)]
pub struct WorkerView<'a> {
    pub info: &'a WorkerInfo,
    /// Assignments it holds now (running or prefetched).
    pub held: usize,
    pub draining: bool,
}

/// Why a worker was not feasible; counted per task so "why is my task waiting" has an answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Rejection {
    Kind,
    Labels,
    NoCredit,
    Draining,
}

pub fn feasibility(task: &TaskDef, w: &WorkerView<'_>) -> Result<(), Rejection> {
    if w.draining {
        return Err(Rejection::Draining);
    }
    if !w.info.accepts_kind(&task.kind) {
        return Err(Rejection::Kind);
    }
    if !task
        .label_selector
        .iter()
        .all(|(k, v)| w.info.labels.get(k) == Some(v))
    {
        return Err(Rejection::Labels);
    }
    if w.held >= w.info.credit_limit() {
        return Err(Rejection::NoCredit);
    }
    Ok(())
}

/// Picks one of `workers` for `task`, or `None` when none is feasible.
/// `cursor` is the strategy's rotation state, advanced on every pick.
pub fn place<R: Rng>(
    strategy: Strategy,
    task: &TaskDef,
    workers: &[WorkerView<'_>],
    cursor: &mut usize,
    rng: &mut R,
) -> Option<usize> {
    let n = workers.len();
    if n == 0 {
        return None;
    }
    let start = *cursor % n;
    let feasible = (0..n)
        .map(|i| (start + i) % n)
        .filter(|&i| feasibility(task, &workers[i]).is_ok());
    let pick = match strategy {
        Strategy::RoundRobin => feasible.into_iter().next(),
        Strategy::Random => {
            let all: Vec<usize> = feasible.collect();
            (!all.is_empty()).then(|| all[rng.random_range(0..all.len())])
        }
        Strategy::LeastLoaded => feasible.min_by(|&a, &b| {
            let load = |w: &WorkerView<'_>| (w.held as u64, w.info.credit_limit().max(1) as u64);
            let (ha, ca) = load(&workers[a]);
            let (hb, cb) = load(&workers[b]);
            // ha/ca < hb/cb without floating point; min_by keeps the first (rotated) on ties.
            (ha * cb).cmp(&(hb * ca))
        }),
    };
    if let Some(i) = pick {
        *cursor = i + 1;
    }
    pick
}
