//! The model behind `adaptive`: learned run times and failure rates per (worker, kind), and
//! the cost of placing one more task on a worker.
//!
//! Per (worker, kind) the model keeps exponentially decayed averages of the run time
//! (finished minus started, from the core's own inputs) and of failure (1 for failed, timed
//! out or lost, 0 for succeeded). The weight of a new observation is `max(alpha, 1/n)`: the
//! first `1/alpha` observations are averaged plainly, later ones decay geometrically, so a
//! worker that slows down is noticed within about `1/alpha` of its attempts.
//!
//! A worker with `slots` slots holding `held` attempts (running or prefetched) has
//! `queued = max(0, held + 1 - slots)` attempts ahead of a new one. With `m` its learned mean
//! run time for the kind and `f` its failure rate, the ranking cost is
//!
//! ```text
//! cost(w) = ((1 + queue_weight) * queued * m / slots + m) / (1 - min(f, 0.95))
//! ```
//!
//! With `queue_weight = 0` this is the task's expected completion time (wait for a slot, then
//! run, times the expected number of tries). The default `queue_weight = 1` also counts the
//! delay the task imposes on the tasks that will queue behind it on that worker; without it,
//! fast workers' queues grow long on near-ties and the mean gets worse (see
//! docs/placement.md for the measurements).
//!
//! A pair never observed is estimated optimistically: as fast as the best worker seen for
//! the kind, less an exploration bonus, so a new or unknown worker is tried as soon as it has
//! room, and keeps getting work only if it earns it.

use std::collections::BTreeMap;

/// Tuning of the adaptive model.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveConfig {
    /// Weight of the newest observation in the decayed averages, in (0, 1].
    pub alpha: f64,
    /// An unknown (worker, kind) pair is estimated at the kind's best known mean × (1 − bonus).
    pub explore_bonus: f64,
    /// Run time assumed for a kind nobody has run yet, µs (only relative values matter).
    pub prior_us: f64,
    /// Let a task wait for a busy worker when that is expected to cost less than any worker
    /// free now (a central-queue variant). Off by default: it helps at low load with prefetch
    /// and hurts at high load without (docs/placement.md).
    pub hold_back: bool,
    /// Weight of the delay a queued task imposes on later tasks at the same worker: the
    /// ranking cost is `((1 + w) * queued / slots + 1) * m`. 0 ranks by expected completion
    /// time alone.
    pub queue_weight: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            alpha: 0.05,
            explore_bonus: 0.1,
            prior_us: 1_000_000.0,
            hold_back: false,
            queue_weight: 1.0,
        }
    }
}

/// What the model knows of one (worker, kind) pair.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct PairStats {
    /// Outcomes observed (successes, failures, losses).
    pub n: u64,
    /// Run times observed.
    pub runs: u64,
    /// Decayed mean run time, µs.
    pub mean_us: f64,
    /// Decayed failure rate in [0, 1].
    pub fail: f64,
}

#[derive(Clone, Debug, Default)]
struct KindStats {
    workers: BTreeMap<String, PairStats>,
    /// Sum and count of `mean_us` over workers with at least one run.
    sum_means: f64,
    known: u32,
    /// The lowest `mean_us` of any worker (with a run) for this kind.
    best: f64,
}

/// The estimate used for ranking.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub mean_us: f64,
    pub fail: f64,
    /// False when the pair was never observed (the estimate is the optimistic prior).
    pub known: bool,
}

#[derive(Clone, Debug, Default)]
pub struct AdaptiveModel {
    pub cfg: AdaptiveConfig,
    kinds: BTreeMap<String, KindStats>,
}

impl AdaptiveModel {
    pub fn new(cfg: AdaptiveConfig) -> Self {
        AdaptiveModel {
            cfg,
            kinds: BTreeMap::new(),
        }
    }

    /// Records one finished attempt: `run_us` when its start was seen, `failed` for failed,
    /// timed out or lost attempts.
    pub fn observe(&mut self, worker: &str, kind: &str, run_us: Option<i64>, failed: bool) {
        let alpha = self.cfg.alpha.clamp(1e-6, 1.0);
        let ks = match self.kinds.get_mut(kind) {
            Some(k) => k,
            None => self.kinds.entry(kind.to_string()).or_default(),
        };
        let s = match ks.workers.get_mut(worker) {
            Some(s) => s,
            None => ks.workers.entry(worker.to_string()).or_default(),
        };
        s.n += 1;
        let a = alpha.max(1.0 / s.n as f64);
        s.fail += a * (if failed { 1.0 } else { 0.0 } - s.fail);
        if let Some(r) = run_us {
            let r = r.max(0) as f64;
            let old = (s.runs > 0).then_some(s.mean_us);
            s.runs += 1;
            let a = alpha.max(1.0 / s.runs as f64);
            s.mean_us += a * (r - s.mean_us);
            let new = s.mean_us;
            match old {
                Some(o) => ks.sum_means += new - o,
                None => {
                    ks.sum_means += new;
                    ks.known += 1;
                }
            }
            if ks.known == 1 || new <= ks.best {
                ks.best = new;
            } else if old.is_some_and(|o| o <= ks.best) {
                // The best one got slower: find the new best.
                ks.best = ks
                    .workers
                    .values()
                    .filter(|s| s.runs > 0)
                    .map(|s| s.mean_us)
                    .fold(f64::INFINITY, f64::min);
            }
        }
    }

    pub fn stats(&self, worker: &str, kind: &str) -> Option<PairStats> {
        self.kinds.get(kind)?.workers.get(worker).copied()
    }

    /// Every (worker, kind) pair with its stats, for metrics and the dashboard.
    pub fn all(&self) -> Vec<(String, String, PairStats)> {
        self.kinds
            .iter()
            .flat_map(|(k, ks)| {
                ks.workers
                    .iter()
                    .map(move |(w, s)| (w.clone(), k.clone(), *s))
            })
            .collect()
    }

    /// The kind's mean run time over the workers that ran it, if any did.
    pub fn kind_mean(&self, kind: &str) -> Option<f64> {
        let ks = self.kinds.get(kind)?;
        (ks.known > 0).then(|| ks.sum_means / ks.known as f64)
    }

    pub fn estimate(&self, worker: &str, kind: &str) -> Estimate {
        let ks = self.kinds.get(kind);
        let s = ks.and_then(|k| k.workers.get(worker));
        match s {
            Some(s) if s.runs > 0 => Estimate {
                mean_us: s.mean_us,
                fail: s.fail,
                known: true,
            },
            _ => {
                // Optimism: as good as the best worker seen for the kind, less a bonus.
                let base = ks
                    .filter(|k| k.known > 0)
                    .map(|k| k.best)
                    .unwrap_or(self.cfg.prior_us);
                Estimate {
                    mean_us: base * (1.0 - self.cfg.explore_bonus.clamp(0.0, 0.9)),
                    fail: s.map(|s| s.fail).unwrap_or(0.0),
                    known: false,
                }
            }
        }
    }
}

/// Expected completion time of one more task on a worker (see the module docs).
pub fn expected_completion(held: usize, slots: u32, mean: f64, fail: f64) -> f64 {
    let slots = slots.max(1) as f64;
    let queued = (held as f64 + 1.0 - slots).max(0.0);
    (queued * mean / slots + mean) / (1.0 - fail.clamp(0.0, 0.95))
}

/// The ranking cost of one more task on a worker: its expected completion time, with the
/// queueing part weighted by `1 + queue_weight` for the delay it adds to later tasks there.
pub fn placement_cost(held: usize, slots: u32, mean: f64, fail: f64, queue_weight: f64) -> f64 {
    let slots = slots.max(1) as f64;
    let queued = (held as f64 + 1.0 - slots).max(0.0);
    ((1.0 + queue_weight) * queued * mean / slots + mean) / (1.0 - fail.clamp(0.0, 0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_start_plain_then_decay() {
        let mut m = AdaptiveModel::new(AdaptiveConfig {
            alpha: 0.1,
            ..AdaptiveConfig::default()
        });
        m.observe("a", "k", Some(100), false);
        m.observe("a", "k", Some(300), false);
        assert_eq!(m.stats("a", "k").unwrap().mean_us, 200.0);
        for _ in 0..100 {
            m.observe("a", "k", Some(1000), false);
        }
        let s = m.stats("a", "k").unwrap();
        assert!((s.mean_us - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(s.fail, 0.0);
        m.observe("a", "k", None, true);
        assert!((m.stats("a", "k").unwrap().fail - 0.1).abs() < 1e-9);
    }

    #[test]
    fn unknown_pairs_are_optimistic() {
        let mut m = AdaptiveModel::new(AdaptiveConfig::default());
        assert_eq!(m.estimate("x", "k").mean_us, 900_000.0);
        m.observe("a", "k", Some(100), false);
        m.observe("b", "k", Some(300), false);
        let e = m.estimate("c", "k");
        assert!(!e.known);
        assert!((e.mean_us - 90.0).abs() < 1e-9);
        assert_eq!(m.kind_mean("k"), Some(200.0));
        // The best gets slower: the optimistic prior follows.
        for _ in 0..50 {
            m.observe("a", "k", Some(1000), false);
        }
        assert!((m.estimate("c", "k").mean_us - 270.0).abs() < 1e-9);
        assert!(m.estimate("a", "k").known);
    }

    #[test]
    fn cost_weighs_the_queue_for_later_tasks() {
        assert_eq!(placement_cost(1, 2, 10.0, 0.0, 1.0), 10.0);
        assert_eq!(placement_cost(2, 2, 10.0, 0.0, 1.0), 20.0);
        assert_eq!(placement_cost(2, 2, 10.0, 0.0, 0.0), 15.0);
        // A near-tie between a fast worker with one queued and a free one twice as slow
        // goes to the free one.
        assert!(placement_cost(1, 1, 1.0, 0.0, 1.0) > placement_cost(0, 1, 2.0, 0.0, 1.0));
    }

    #[test]
    fn completion_counts_the_queue_only_beyond_free_slots() {
        assert_eq!(expected_completion(0, 2, 10.0, 0.0), 10.0);
        assert_eq!(expected_completion(1, 2, 10.0, 0.0), 10.0);
        assert_eq!(expected_completion(2, 2, 10.0, 0.0), 15.0);
        assert_eq!(expected_completion(0, 1, 10.0, 0.5), 20.0);
    }
}
