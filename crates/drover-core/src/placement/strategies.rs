//! Ranking: each strategy chooses among the feasible workers (`Candidates::ok`), or decides
//! to wait with a reason. A strategy never returns a worker outside `ok`.

use std::collections::BTreeMap;

use rand::Rng;

use super::adaptive::placement_cost;
use super::feasibility::{Candidates, WaitNote};
use super::{PlacementSpec, PlacementState, Strategy, WorkerView};

/// `a` is less loaded than `b`: held/credit compared without floating point.
fn less_loaded(a: &WorkerView<'_>, b: &WorkerView<'_>) -> std::cmp::Ordering {
    let (ha, ca) = (a.held as u64, a.info.credit_limit().max(1) as u64);
    let (hb, cb) = (b.held as u64, b.info.credit_limit().max(1) as u64);
    (ha * cb).cmp(&(hb * ca))
}

/// Position in `ok` (sorted) of the first worker at or after the cursor, wrapping.
fn rotated_start(ok: &[usize], n: usize, cursor: usize) -> usize {
    let c = cursor % n.max(1);
    let p = ok.partition_point(|&i| i < c);
    if p == ok.len() {
        0
    } else {
        p
    }
}

fn rotated<'a>(ok: &'a [usize], n: usize, cursor: usize) -> impl Iterator<Item = usize> + 'a {
    let s = rotated_start(ok, n, cursor);
    ok[s..].iter().chain(&ok[..s]).copied()
}

/// Chooses a worker for the task, or says why it waits (`Err(None)`: the feasibility counts
/// say it all). `state.begin_round(workers)` must have been called for `workers`.
pub fn rank<R: Rng>(
    strategy: Strategy,
    spec: &PlacementSpec,
    kind: &str,
    workers: &[WorkerView<'_>],
    cands: &Candidates,
    state: &mut PlacementState,
    rng: &mut R,
) -> Result<usize, Option<WaitNote>> {
    let n = workers.len();
    let ok = &cands.ok;
    if cands.eligible.is_empty() {
        return Err(None);
    }
    if spec.shard.is_some() {
        // A broadcast copy: its one worker or nothing.
        return ok.first().copied().ok_or(None);
    }
    if state.reserved.len() != n {
        state.begin_round(workers);
    }
    let pick = match strategy {
        Strategy::RoundRobin => rotated(ok, n, state.cursor).next(),
        Strategy::Random => (!ok.is_empty()).then(|| ok[rng.random_range(0..ok.len())]),
        // An unsharded broadcast task reaching ranking (no fan-out happened): least loaded.
        Strategy::LeastLoaded | Strategy::Broadcast => {
            rotated(ok, n, state.cursor).min_by(|&a, &b| less_loaded(&workers[a], &workers[b]))
        }
        Strategy::PowerOfTwo => power_of_two(workers, ok, rng),
        Strategy::ConsistentHash => consistent_hash(spec, workers, cands, state)?,
        Strategy::BinPack => bin_pack(spec, workers, ok),
        Strategy::Spread => spread(spec, workers, ok, state.cursor),
        Strategy::Adaptive => return adaptive(spec, kind, workers, cands, state),
        Strategy::Failover => ok.first().copied(),
    };
    match pick {
        Some(i) => {
            state.cursor = i + 1;
            Ok(i)
        }
        None => Err(None),
    }
}

/// `power_of_two`: the less loaded of two distinct random feasible workers.
fn power_of_two<R: Rng>(workers: &[WorkerView<'_>], ok: &[usize], rng: &mut R) -> Option<usize> {
    match ok.len() {
        0 => None,
        1 => Some(ok[0]),
        len => {
            let a = rng.random_range(0..len);
            let mut b = rng.random_range(0..len - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (ok[a], ok[b]);
            Some(if less_loaded(&workers[b], &workers[a]).is_lt() {
                b
            } else {
                a
            })
        }
    }
}

/// `consistent_hash`: the key's owner on the ring among the eligible workers; waits with a
/// note when the owner is busy. Without a key, round robin.
fn consistent_hash(
    spec: &PlacementSpec,
    workers: &[WorkerView<'_>],
    cands: &Candidates,
    state: &mut PlacementState,
) -> Result<Option<usize>, Option<WaitNote>> {
    let n = workers.len();
    let ok = &cands.ok;
    let Some(key) = &spec.key else {
        return Ok(rotated(ok, n, state.cursor).next());
    };
    if state.ring.names().len() != n {
        state
            .ring
            .sync(workers.iter().map(|w| w.info.name.as_str()));
    }
    let owner = state
        .ring
        .lookup(key, |i| cands.eligible.binary_search(&i).is_ok());
    match owner {
        Some(o) if ok.binary_search(&o).is_ok() => Ok(Some(o)),
        Some(o) => Err(Some(WaitNote::KeyOwnerBusy {
            worker: workers[o].info.name.clone(),
        })),
        None => Ok(None),
    }
}

/// `bin_pack`: the feasible worker left fullest by the task; the first of equals.
fn bin_pack(spec: &PlacementSpec, workers: &[WorkerView<'_>], ok: &[usize]) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for &i in ok {
        let s = fill_after(spec, &workers[i]);
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i)
}

/// `spread`: a feasible worker in the spread label's group holding the fewest attempts,
/// then the least loaded, starting the tie-break at the cursor.
fn spread(
    spec: &PlacementSpec,
    workers: &[WorkerView<'_>],
    ok: &[usize],
    cursor: usize,
) -> Option<usize> {
    let label = spec.spread_label();
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for w in workers {
        let v = w.info.labels.get(label).map(String::as_str).unwrap_or("");
        *groups.entry(v).or_default() += w.held;
    }
    let group = |i: usize| {
        let v = workers[i]
            .info
            .labels
            .get(label)
            .map(String::as_str)
            .unwrap_or("");
        groups[v]
    };
    rotated(ok, workers.len(), cursor).min_by(|&a, &b| {
        group(a)
            .cmp(&group(b))
            .then_with(|| less_loaded(&workers[a], &workers[b]))
    })
}

/// How full the worker is after taking the task: credit used plus, for every requested
/// resource, the fraction of it used. Higher is a better fit for `bin_pack`.
fn fill_after(spec: &PlacementSpec, w: &WorkerView<'_>) -> f64 {
    let mut s = (w.held + 1) as f64 / w.info.credit_limit().max(1) as f64;
    for (name, amount) in spec.resources.iter() {
        let total = w.total(name).max(1) as f64;
        let used = w.used.get(name).copied().unwrap_or(0) as f64;
        s += (used + amount as f64) / total;
    }
    s
}

fn adaptive(
    spec: &PlacementSpec,
    kind: &str,
    workers: &[WorkerView<'_>],
    cands: &Candidates,
    state: &mut PlacementState,
) -> Result<usize, Option<WaitNote>> {
    let _ = spec;
    let n = workers.len();
    let pool = if state.adaptive.cfg.hold_back {
        &cands.eligible
    } else {
        &cands.ok
    };
    let mut best: Option<(f64, bool, usize)> = None;
    for i in rotated(pool, n, state.cursor) {
        let w = &workers[i];
        let est = state.adaptive.estimate(&w.info.name, kind);
        let held = w.held + state.reserved[i] as usize;
        let ect = placement_cost(
            held,
            w.info.slots,
            est.mean_us,
            est.fail,
            state.adaptive.cfg.queue_weight,
        );
        let free = cands.ok.binary_search(&i).is_ok();
        // Strictly better, or as good and free while the best so far is busy.
        let better = match best {
            None => true,
            Some((b, bfree, _)) => ect < b || (ect == b && free && !bfree),
        };
        if better {
            best = Some((ect, free, i));
        }
    }
    match best {
        Some((_, true, i)) => {
            state.cursor = i + 1;
            Ok(i)
        }
        Some((_, false, i)) => {
            state.reserved[i] += 1;
            Err(Some(WaitNote::WaitingForFaster {
                worker: workers[i].info.name.clone(),
            }))
        }
        None => Err(None),
    }
}
