//! The `oracle` baseline: shortest expected delay from the workers' true speeds and failure
//! rates, by the same rule as `adaptive` (including whether it may wait for a busy worker).
//! It is what `adaptive` would do if it knew everything it has to learn.

use std::collections::BTreeMap;

use drover_core::placement::adaptive::placement_cost;
use drover_core::placement::AdaptiveConfig;
use drover_core::placement::{PlacementSpec, Ranker, WorkerView};

pub struct Oracle {
    /// Worker name → (true mean run time, failure rate).
    truth: BTreeMap<String, (f64, f64)>,
    /// Per view index, for the current round.
    known: Vec<(f64, f64)>,
    reserved: Vec<u32>,
    cfg: AdaptiveConfig,
}

impl Oracle {
    /// `truth`: worker name → (mean run time, failure rate); `cfg`: adaptive's rule.
    pub fn new(truth: BTreeMap<String, (f64, f64)>, cfg: AdaptiveConfig) -> Self {
        Oracle {
            truth,
            known: Vec::new(),
            reserved: Vec::new(),
            cfg,
        }
    }
}

impl Ranker for Oracle {
    fn begin_round(&mut self, workers: &[WorkerView<'_>]) {
        self.known = workers
            .iter()
            .map(|w| {
                self.truth
                    .get(&w.info.name)
                    .copied()
                    .unwrap_or((f64::INFINITY, 0.0))
            })
            .collect();
        self.reserved.clear();
        self.reserved.resize(workers.len(), 0);
    }

    fn choose(
        &mut self,
        _kind: &str,
        _spec: &PlacementSpec,
        workers: &[WorkerView<'_>],
        ok: &[usize],
        eligible: &[usize],
    ) -> Option<usize> {
        let mut best: Option<(f64, bool, usize)> = None;
        let pool = if self.cfg.hold_back { eligible } else { ok };
        for &i in pool {
            let (mean, fail) = self.known[i];
            let held = workers[i].held + self.reserved[i] as usize;
            let ect = placement_cost(
                held,
                workers[i].info.slots,
                mean,
                fail,
                self.cfg.queue_weight,
            );
            let free = ok.binary_search(&i).is_ok();
            let better = match best {
                None => true,
                Some((b, bfree, _)) => ect < b || (ect == b && free && !bfree),
            };
            if better {
                best = Some((ect, free, i));
            }
        }
        match best {
            Some((_, true, i)) => Some(i),
            Some((_, false, i)) => {
                self.reserved[i] += 1;
                None
            }
            None => None,
        }
    }
}
