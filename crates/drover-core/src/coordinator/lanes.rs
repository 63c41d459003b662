//! The ready index, one lane per queue, and the fair order in which dispatch visits them.
//!
//! Each queue's ready tasks form a lane ordered by priority, then submission order. Lanes take
//! turns by weight with stride scheduling: each lane has a *pass*; dispatch always tries the
//! lane with the lowest pass, and each task it starts adds `STRIDE / weight` to that lane's
//! pass, so over any window a backlogged lane's share of starts is its share of the weights.
//! A lane that was empty rejoins at the current virtual time (the pass of the latest start),
//! so idling earns no credit. A lane whose tasks cannot be placed is given up for the round
//! after `scan_limit` misses and never delays another lane: picking the next task costs
//! O(log lanes + log tasks), never a scan of other queues' tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::tasks::ReadyKey;
use crate::model::Scoped;

/// The pass a start adds at weight 1. Weights are at most `MAX_WEIGHT`, so every stride is a
/// whole number, and 2^40 starts fit before a pass could overflow.
const STRIDE: u64 = 1 << 24;
/// The largest queue weight (`drover queue set Q --weight W`).
pub const MAX_WEIGHT: u32 = 10_000;

fn stride(weight: u32) -> u64 {
    STRIDE / u64::from(weight.clamp(1, MAX_WEIGHT))
}

#[derive(Debug)]
struct Lane {
    keys: BTreeSet<ReadyKey>,
    pass: u64,
}

#[derive(Debug, Default)]
pub(super) struct Lanes {
    lanes: BTreeMap<Scoped, Lane>,
    len: usize,
    /// The pass of the latest start: where an empty lane rejoins.
    vtime: u64,
}

impl Lanes {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn has_lane(&self, queue: &Scoped) -> bool {
        self.lanes.contains_key(queue)
    }

    pub(super) fn contains(&self, key: &ReadyKey, queue: &Scoped) -> bool {
        self.lanes.get(queue).is_some_and(|l| l.keys.contains(key))
    }

    pub(super) fn insert(&mut self, key: ReadyKey, queue: &Scoped) {
        let vtime = self.vtime;
        let lane = match self.lanes.get_mut(queue) {
            Some(l) => l,
            None => self.lanes.entry(queue.clone()).or_insert(Lane {
                keys: BTreeSet::new(),
                pass: vtime,
            }),
        };
        if lane.keys.insert(key) {
            self.len += 1;
        }
    }

    /// Takes a task out; returns whether it was in.
    pub(super) fn remove(&mut self, key: &ReadyKey, queue: &Scoped) -> bool {
        let Some(lane) = self.lanes.get_mut(queue) else {
            return false;
        };
        let found = lane.keys.remove(key);
        if found {
            self.len -= 1;
            if lane.keys.is_empty() {
                self.lanes.remove(queue);
            }
        }
        found
    }

    /// A task of `queue` started: out of its lane, and the lane's turn moves on by its weight.
    pub(super) fn started(&mut self, key: &ReadyKey, queue: &Scoped, weight: u32) {
        if let Some(lane) = self.lanes.get_mut(queue) {
            self.vtime = self.vtime.max(lane.pass);
            lane.pass = lane.pass.saturating_add(stride(weight));
        }
        self.remove(key, queue);
    }

    /// One dispatch round's walk over the lanes; `weight` gives each queue's weight and
    /// `allowance` how many starts a rate-limited one may make in this round.
    pub(super) fn round<'a>(
        &'a self,
        weight: impl Fn(&Scoped) -> u32 + 'a,
        allowance: impl Fn(&Scoped) -> Option<u32>,
        scan_limit: usize,
    ) -> FairRound<'a> {
        let left: BTreeMap<&Scoped, u32> = self
            .lanes
            .keys()
            .filter_map(|q| Some((q, allowance(q)?)))
            .collect();
        FairRound {
            order: self
                .lanes
                .iter()
                .filter(|(q, _)| left.get(q) != Some(&0))
                .map(|(q, l)| (l.pass, q))
                .collect(),
            left,
            pass: self.lanes.iter().map(|(q, l)| (q, l.pass)).collect(),
            cursor: BTreeMap::new(),
            misses: BTreeMap::new(),
            lanes: &self.lanes,
            weight: Box::new(weight),
            scan_limit,
        }
    }
}

/// The order of one round: the lane with the lowest pass first; within it, the next task
/// after the ones already tried. `placed` and `missed` say how a try went.
pub(super) struct FairRound<'a> {
    order: BTreeSet<(u64, &'a Scoped)>,
    /// Each lane's pass in `order`.
    pass: BTreeMap<&'a Scoped, u64>,
    /// Starts a rate-limited lane may still make in this round.
    left: BTreeMap<&'a Scoped, u32>,
    /// The last task tried in each lane.
    cursor: BTreeMap<&'a Scoped, ReadyKey>,
    misses: BTreeMap<&'a Scoped, usize>,
    lanes: &'a BTreeMap<Scoped, Lane>,
    weight: Box<dyn Fn(&Scoped) -> u32 + 'a>,
    scan_limit: usize,
}

impl<'a> FairRound<'a> {
    /// The next task to try, with its queue; `None` once every lane is done for the round.
    pub(super) fn next(&mut self) -> Option<(&'a Scoped, ReadyKey)> {
        loop {
            let &(_, queue) = self.order.first()?;
            let keys = &self.lanes[queue].keys;
            let next = match self.cursor.get(queue) {
                Some(last) => keys
                    .range((Bound::Excluded(*last), Bound::Unbounded))
                    .next(),
                None => keys.first(),
            };
            match next {
                Some(k) => {
                    self.cursor.insert(queue, *k);
                    return Some((queue, *k));
                }
                None => {
                    self.order.pop_first();
                }
            }
        }
    }

    /// The task just tried started: its lane's turn moves on by the lane's weight.
    pub(super) fn placed(&mut self, queue: &'a Scoped) {
        let Some(pass) = self.pass.get_mut(queue) else {
            return;
        };
        if self.order.remove(&(*pass, queue)) {
            *pass = pass.saturating_add(stride((self.weight)(queue)));
            let left = self.left.get_mut(queue).map(|n| {
                *n -= 1;
                *n
            });
            if left != Some(0) {
                self.order.insert((*pass, queue));
            }
        }
    }

    /// The task just tried could not be placed: after `scan_limit` misses the lane is done
    /// for this round (its other tasks wait for the next), so it never holds up the others.
    pub(super) fn missed(&mut self, queue: &'a Scoped) {
        let n = self.misses.entry(queue).or_default();
        *n += 1;
        if *n > self.scan_limit {
            if let Some(pass) = self.pass.get(queue) {
                self.order.remove(&(*pass, queue));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskId;
    use std::cmp::Reverse;

    fn key(seq: u64) -> ReadyKey {
        (Reverse(0), seq, TaskId(seq as u128))
    }

    fn fill(lanes: &mut Lanes, q: &Scoped, from: u64, n: u64) {
        for s in from..from + n {
            lanes.insert(key(s), q);
        }
    }

    /// Starts `n` tasks the way dispatch does; returns how many each queue got.
    fn start(lanes: &mut Lanes, n: usize, weight: impl Fn(&Scoped) -> u32 + Copy) -> Vec<usize> {
        let mut got: BTreeMap<Scoped, usize> = BTreeMap::new();
        let mut plan = Vec::new();
        {
            let mut r = lanes.round(weight, |_| None, 8);
            while plan.len() < n {
                let Some((q, k)) = r.next() else { break };
                r.placed(q);
                plan.push((q.clone(), k));
            }
        }
        for (q, k) in plan {
            lanes.started(&k, &q, weight(&q));
            *got.entry(q).or_default() += 1;
        }
        got.into_values().collect()
    }

    #[test]
    fn backlogged_lanes_share_starts_by_weight() {
        let (a, b, c) = (
            Scoped::default_ns("a"),
            Scoped::default_ns("b"),
            Scoped::default_ns("c"),
        );
        let mut lanes = Lanes::default();
        fill(&mut lanes, &a, 0, 1000);
        fill(&mut lanes, &b, 1000, 1000);
        fill(&mut lanes, &c, 2000, 1000);
        let weight = |q: &Scoped| match q.name.as_str() {
            "a" => 1,
            "b" => 2,
            _ => 5,
        };
        // Several rounds, as dispatch runs them: shares hold across rounds too.
        let mut total = [0usize; 3];
        for _ in 0..8 {
            for (t, g) in total.iter_mut().zip(start(&mut lanes, 100, weight)) {
                *t += g;
            }
        }
        assert_eq!(total.iter().sum::<usize>(), 800);
        for (got, w) in total.iter().zip([1.0, 2.0, 5.0]) {
            let share = *got as f64 / 800.0;
            assert!((share - w / 8.0).abs() < 0.01, "{total:?}");
        }
    }

    #[test]
    fn a_lane_that_misses_is_left_for_the_round_and_others_go_on() {
        let (stuck, other) = (Scoped::default_ns("stuck"), Scoped::default_ns("other"));
        let mut lanes = Lanes::default();
        fill(&mut lanes, &stuck, 0, 10_000);
        fill(&mut lanes, &other, 20_000, 1);
        let mut r = lanes.round(|_| 1, |_| None, 8);
        let mut tried = 0;
        let placed = loop {
            let (q, k) = r.next().expect("the other lane's task is reached");
            tried += 1;
            if q == &other {
                break k;
            }
            r.missed(q);
        };
        assert_eq!(placed, key(20_000));
        assert!(tried <= 10, "{tried} tries before the other queue's task");
    }

    #[test]
    fn an_idle_lane_rejoins_at_the_current_turn_without_credit() {
        let (busy, idle) = (Scoped::default_ns("busy"), Scoped::default_ns("idle"));
        let mut lanes = Lanes::default();
        fill(&mut lanes, &busy, 0, 500);
        start(&mut lanes, 400, |_| 1);
        fill(&mut lanes, &idle, 1000, 500);
        let got = start(&mut lanes, 100, |_| 1);
        assert_eq!(
            got,
            [50, 50],
            "the idle lane does not catch up on its idle time"
        );
        assert_eq!(lanes.len(), 50 + 450);
    }
}
