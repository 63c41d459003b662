//! Placement rules as properties: of the pure functions (feasibility → rank) and of the
//! coordinator that applies them.

mod harness;

use std::collections::{BTreeMap, BTreeSet};

use drover_core::placement::{
    self, candidates, feasibility, place, Job, Placement, PlacementState, WorkerView,
};
use drover_core::Strategy;
use drover_core::*;
use harness::*;
use proptest::prelude::*;
use proptest::strategy::Strategy as PropStrategy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn winfo(name: &str, slots: u32, prefetch: u32) -> WorkerInfo {
    WorkerInfo {
        name: name.into(),
        slots,
        prefetch,
        ..WorkerInfo::default()
    }
}

/// Places `n` tasks with `spec` one after the other, never finishing any; returns the picks.
fn stream(
    strategy: Strategy,
    spec: &PlacementSpec,
    infos: &[WorkerInfo],
    n: usize,
    seed: u64,
    mut after_each: impl FnMut(&[WorkerView<'_>]),
) -> Vec<Option<usize>> {
    let mut views: Vec<WorkerView<'_>> =
        infos.iter().map(|i| WorkerView::new(i, 0, false)).collect();
    let mut state = PlacementState::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picks = Vec::new();
    for _ in 0..n {
        state.begin_round(&views);
        match place(
            strategy,
            spec,
            Job::kind("default"),
            &views,
            &mut state,
            &mut rng,
        ) {
            Placement::Place(i) => {
                assert!(feasibility::check(spec, Job::kind("default"), &views[i]).is_ok());
                views[i].take(&spec.resources);
                picks.push(Some(i));
            }
            Placement::Wait(_) => picks.push(None),
        }
        after_each(&views);
    }
    picks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_robin_deals_a_stream_evenly(n in 1..10usize, m in 0..200usize) {
        let infos: Vec<_> = (0..n).map(|i| winfo(&format!("w{i}"), 1000, 0)).collect();
        stream(Strategy::RoundRobin, &PlacementSpec::default(), &infos, m, 1, |views| {
            let held: Vec<usize> = views.iter().map(|v| v.held).collect();
            let (lo, hi) = (held.iter().min().unwrap(), held.iter().max().unwrap());
            assert!(hi - lo <= 1, "uneven: {held:?}");
        });
    }

    #[test]
    fn consistent_hash_keeps_keys_and_moves_about_one_nth(
        n in 2..13usize,
        keys in prop::collection::btree_set("[a-z0-9]{1,12}", 200..400),
        leaver in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let infos: Vec<_> = (0..n).map(|i| winfo(&format!("node-{i}"), 100_000, 0)).collect();
        let owner = |infos: &[WorkerInfo], key: &str, state: &mut PlacementState, rng: &mut ChaCha8Rng| {
            let views: Vec<_> = infos.iter().map(|i| WorkerView::new(i, 0, false)).collect();
            state.begin_round(&views);
            let spec = PlacementSpec { key: Some(key.to_string()), ..PlacementSpec::default() };
            match place(Strategy::ConsistentHash, &spec, Job::kind("default"), &views, state, rng) {
                Placement::Place(i) => infos[i].name.clone(),
                Placement::Wait(u) => panic!("unplaced {u:?}"),
            }
        };
        let mut state = PlacementState::default();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let before: BTreeMap<&String, String> = keys.iter().map(|k| (k, owner(&infos, k, &mut state, &mut rng))).collect();
        for k in &keys {
            prop_assert_eq!(&owner(&infos, k, &mut state, &mut rng), &before[k], "a key moved while its worker lives");
        }
        let gone = leaver.index(n);
        let rest: Vec<WorkerInfo> = infos.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, w)| w.clone()).collect();
        let mut moved = 0;
        for k in &keys {
            let now = owner(&rest, k, &mut state, &mut rng);
            if now != before[k] {
                prop_assert_eq!(&before[k], &infos[gone].name, "only the leaver's keys move");
                moved += 1;
            }
        }
        let bound = (2 * keys.len()).div_ceil(n) + 5;
        prop_assert!(moved <= bound, "moved {} of {} keys with {} workers (bound {})", moved, keys.len(), n, bound);
    }

    #[test]
    fn bin_pack_fills_a_worker_before_starting_another(
        credits in prop::collection::vec((1..6u32, 0..3u32), 1..8),
        m in 0..60usize,
    ) {
        let infos: Vec<_> = credits.iter().enumerate().map(|(i, &(s, p))| winfo(&format!("w{i}"), s, p)).collect();
        stream(Strategy::BinPack, &PlacementSpec::default(), &infos, m, 2, |views| {
            let partial = views.iter().filter(|v| v.held > 0 && v.held < v.info.credit_limit()).count();
            assert!(partial <= 1, "{partial} workers partly filled");
        });
    }

    #[test]
    fn spread_balances_across_label_values(zones in 2..5usize, per_zone in 1..4usize, m in 0..120usize, label in prop::sample::select(vec!["zone", "rack"])) {
        let mut infos = Vec::new();
        for z in 0..zones {
            for j in 0..per_zone {
                let mut w = winfo(&format!("w{j}-{z}"), 1000, 0);
                w.labels.insert(label.to_string(), format!("z{z}"));
                infos.push(w);
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        let spec = PlacementSpec { spread_label: Some(label.to_string()), ..PlacementSpec::default() };
        stream(Strategy::Spread, &spec, &infos, m, 3, |views| {
            let mut per: BTreeMap<&str, usize> = BTreeMap::new();
            for v in views {
                *per.entry(v.info.labels[label].as_str()).or_default() += v.held;
            }
            let (lo, hi) = (per.values().min().unwrap(), per.values().max().unwrap());
            assert!(hi - lo <= 1, "zones uneven: {per:?}");
            // Within a zone, least loaded: workers differ by at most one too.
            for z in per.keys() {
                let held: Vec<usize> = views.iter().filter(|v| v.info.labels[label] == *z).map(|v| v.held).collect();
                assert!(held.iter().max().unwrap() - held.iter().min().unwrap() <= 1);
            }
        });
    }
}

// ---- through the coordinator ----

#[derive(Clone, Debug)]
struct WSpec {
    kinds: Vec<&'static str>,
    zone: &'static str,
    gpu: u64,
    cpu: u64,
    slots: u32,
    prefetch: u32,
}

fn wspec() -> impl PropStrategy<Value = WSpec> {
    (
        prop::sample::subsequence(vec!["a", "b", "c"], 0..3),
        prop::sample::select(vec!["x", "y", "z"]),
        0..3u64,
        0..9u64,
        0..4u32,
        0..3u32,
    )
        .prop_map(|(kinds, zone, gpu, cpu, slots, prefetch)| WSpec {
            kinds,
            zone,
            gpu,
            cpu,
            slots,
            prefetch,
        })
}

fn info_of(i: usize, w: &WSpec) -> WorkerInfo {
    let mut info = winfo(&format!("w{i}"), w.slots, w.prefetch);
    info.kinds = w.kinds.iter().map(|k| k.to_string()).collect();
    info.labels.insert("zone".into(), w.zone.into());
    if w.gpu > 0 {
        info.resources.insert("gpu".into(), w.gpu);
    }
    info.resources.insert("cpu".into(), w.cpu);
    info
}

#[derive(Clone, Debug)]
struct TSpec {
    kind: &'static str,
    selector: &'static str,
    cpu: u64,
    gpu: u64,
    strategy: Strategy,
    key: Option<u8>,
}

fn tspec() -> impl PropStrategy<Value = TSpec> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        prop::sample::select(vec![
            "",
            "zone=x",
            "zone!=y",
            "zone in (x,z)",
            "zone notin (x)",
            "zone",
            "!zone",
        ]),
        0..4u64,
        0..2u64,
        prop::sample::select(Strategy::ALL.to_vec()),
        prop::option::of(0..6u8),
    )
        .prop_map(|(kind, selector, cpu, gpu, strategy, key)| TSpec {
            kind,
            selector,
            cpu,
            gpu,
            strategy,
            key,
        })
}

fn new_task(id: u128, t: &TSpec) -> (NewTask, PlacementSpec) {
    let mut def = exec_def("q");
    def.kind = t.kind.into();
    let spec = PlacementSpec {
        strategy: Some(t.strategy),
        key: t.key.map(|k| format!("key{k}")),
        resources: ResourceRequest {
            cpu: t.cpu,
            gpu: t.gpu,
            ..ResourceRequest::default()
        },
        selector: t.selector.parse().unwrap(),
        ..PlacementSpec::default()
    };
    (
        NewTask {
            id: TaskId(id),
            def,
            not_before: None,
        },
        spec,
    )
}

#[derive(Clone, Debug)]
enum Op {
    Submit(TSpec),
    Finish(usize),
    Drain(usize),
    Resume(usize),
}

fn op() -> impl PropStrategy<Value = Op> {
    prop_oneof![
        5 => tspec().prop_map(Op::Submit),
        4 => any::<usize>().prop_map(Op::Finish),
        1 => (0..6usize).prop_map(Op::Drain),
        1 => (0..6usize).prop_map(Op::Resume),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// No strategy ever picks an infeasible worker or oversubscribes credit or resources, and
    /// a broadcast task yields exactly one copy per worker that could take it.
    #[test]
    fn no_strategy_picks_an_infeasible_worker_or_oversubscribes(
        workers in prop::collection::vec(wspec(), 1..6),
        ops in prop::collection::vec(op(), 1..80),
        seed in any::<u8>(),
    ) {
        let mut b = Bench::new(seed);
        let infos: Vec<WorkerInfo> = workers.iter().enumerate().map(|(i, w)| info_of(i, w)).collect();
        for (i, info) in infos.iter().enumerate() {
            b.join(i as u64 + 1, info.clone());
        }
        let mut specs: BTreeMap<TaskId, PlacementSpec> = BTreeMap::new();
        let mut drained: BTreeSet<usize> = BTreeSet::new();
        let mut next = 1u128;
        let mut sent_before = 0;
        for o in ops {
            match o {
                Op::Submit(t) => {
                    let (nt, spec) = new_task(next, &t);
                    next += 1;
                    let id = nt.id;
                    let before: BTreeSet<TaskId> = b.tasks.keys().copied().collect();
                    b.input(Input::SubmitPlaced { req: 1, tasks: vec![(nt, spec.clone())] });
                    let created: Vec<TaskId> = b.tasks.keys().filter(|k| !before.contains(k)).copied().collect();
                    if t.strategy == Strategy::Broadcast {
                        // One copy per worker that could take it (kind, labels, resources in
                        // total, not draining), each pinned there and told its shard.
                        let views: Vec<_> = infos.iter().enumerate().map(|(i, w)| WorkerView::new(w, 0, drained.contains(&i))).collect();
                        let expect: Vec<String> = placement::broadcast_targets(&spec, Job::kind(t.kind), &views).into_iter().map(|i| infos[i].name.clone()).collect();
                        if expect.is_empty() {
                            prop_assert_eq!(created.len(), 1);
                            prop_assert!(b.core.shard(id).is_none());
                        } else {
                            prop_assert_eq!(created.len(), expect.len());
                            let mut got: Vec<(u32, String)> = created.iter().map(|c| {
                                let s = b.core.shard(*c).expect("a copy has a shard");
                                assert_eq!(s.count as usize, expect.len());
                                assert_eq!(s.group, id);
                                (s.index, s.worker)
                            }).collect();
                            got.sort();
                            let want: Vec<(u32, String)> = expect.iter().enumerate().map(|(i, w)| (i as u32, w.clone())).collect();
                            prop_assert_eq!(got, want);
                        }
                    }
                    for c in created {
                        let s = b.core.placement_spec(c).unwrap();
                        specs.insert(c, (*s).clone());
                    }
                }
                Op::Finish(pick) => {
                    let live: Vec<TaskId> = b.tasks.values().filter(|t| t.state.is_leased()).map(|t| t.id).collect();
                    if !live.is_empty() {
                        let id = live[pick % live.len()];
                        let w: usize = b.tasks[&id].worker.as_ref().unwrap()[1..].parse().unwrap();
                        b.run_ok(w as u64 + 1, id);
                    }
                }
                Op::Drain(w) if w < infos.len() => {
                    b.input(Input::DrainWorker { req: 2, name: infos[w].name.clone() });
                    drained.insert(w);
                }
                Op::Resume(w) if w < infos.len() => {
                    b.input(Input::ResumeWorker { req: 3, name: infos[w].name.clone() });
                    drained.remove(&w);
                }
                _ => {}
            }
            // Every new assignment went to a feasible worker.
            for (s, m) in &b.sent[sent_before..] {
                if let ToWorker::Assign(a) = m {
                    let w = (*s - 1) as usize;
                    prop_assert!(!drained.contains(&w), "assigned to drained w{}", w);
                    let spec = &specs[&a.task_id];
                    let v = WorkerView::new(&infos[w], 0, false);
                    let r = feasibility::check(spec, Job::of(&a.def), &v);
                    prop_assert!(r.is_ok(), "w{} infeasible for {:?}: {:?}", w, spec, r);
                }
            }
            sent_before = b.sent.len();
            // Credit and resources are never oversubscribed.
            for (i, info) in infos.iter().enumerate() {
                let live: Vec<&TaskRecord> = b.tasks.values().filter(|t| t.state.is_leased() && t.worker.as_deref() == Some(info.name.as_str())).collect();
                prop_assert!(live.len() <= info.credit_limit());
                for res in ["cpu", "gpu"] {
                    let used: u64 = live.iter().map(|t| specs[&t.id].resources.to_map().get(res).copied().unwrap_or(0)).sum();
                    let total = info.resources.get(res).copied().unwrap_or(0);
                    prop_assert!(used <= total, "w{} uses {} {} of {}", i, used, res, total);
                }
            }
        }
    }
}

#[test]
fn broadcast_copies_run_once_on_every_feasible_worker() {
    let mut b = Bench::new(9);
    for i in 0..4 {
        let mut w = worker(&format!("w{i}"), 1, 0);
        if i == 3 {
            w.kinds = vec!["other".into()];
        }
        b.join(i + 1, w);
    }
    let (nt, spec) = new_task(
        100,
        &TSpec {
            kind: "default",
            selector: "",
            cpu: 0,
            gpu: 0,
            strategy: Strategy::Broadcast,
            key: None,
        },
    );
    let mut nt = nt;
    nt.def.kind = "default".into();
    b.input(Input::SubmitPlaced {
        req: 1,
        tasks: vec![(nt, spec)],
    });
    assert_eq!(
        b.replies.last().unwrap().1,
        Reply::Submitted(vec![TaskId(100)]),
        "one id per submitted task"
    );
    let mut shards = Vec::new();
    for s in 1..=3 {
        let a = b.assigned_to(s);
        assert_eq!(a.len(), 1, "w{} got one copy", s - 1);
        let sh = b.core.shard(a[0].task_id).unwrap();
        assert_eq!(sh.worker, format!("w{}", s - 1));
        shards.push((sh.index, sh.count));
    }
    assert_eq!(shards, vec![(0, 3), (1, 3), (2, 3)]);
    assert!(b.assigned_to(4).is_empty(), "w3 does not accept the kind");
}

#[test]
fn a_broadcast_with_no_worker_waits_and_fans_out_when_one_joins() {
    let mut b = Bench::new(10);
    let mut def = exec_def("q");
    def.kind = "gpu-render".into();
    let spec = PlacementSpec {
        strategy: Some(Strategy::Broadcast),
        ..PlacementSpec::default()
    };
    b.input(Input::SubmitPlaced {
        req: 1,
        tasks: vec![(
            NewTask {
                id: TaskId(7),
                def,
                not_before: None,
            },
            spec,
        )],
    });
    assert_eq!(
        b.core.why_pending(TaskId(7)).unwrap(),
        "no workers are connected"
    );
    let mut cpu = worker("cpu", 1, 0);
    cpu.kinds = vec!["cpu".into()];
    b.join(1, cpu);
    assert_eq!(
        b.core.why_pending(TaskId(7)).unwrap(),
        "no worker has kind gpu-render"
    );
    let mut g = worker("gpu", 1, 0);
    g.kinds = vec!["gpu-render".into()];
    b.join(2, g);
    assert_eq!(b.assigned_to(2).len(), 1);
    assert_eq!(b.core.shard(TaskId(7)).unwrap().count, 1);
}

#[test]
fn why_pending_names_the_reason() {
    let mut b = Bench::new(11);
    let mut w = worker("a", 1, 0);
    w.labels.insert("zone".into(), "a".into());
    b.join(1, w.clone());
    w.name = "c".into();
    b.join(2, w);
    let mut def = exec_def("q");
    def.placement.selector = "zone=b".parse().unwrap();
    let id = b.submit_def(def);
    assert_eq!(
        b.core.why_pending(id).unwrap(),
        "no worker matches label zone=b"
    );
    let mut gpu = worker("b", 1, 0);
    gpu.labels.insert("zone".into(), "b".into());
    gpu.kinds = vec!["other".into()];
    b.join(3, gpu);
    let why = b.core.why_pending(id).unwrap();
    assert_eq!(
        why,
        "2 workers lack label zone=b; 1 worker lacks kind default"
    );
    // Resources: a task asking for more GPUs than anyone has.
    let spec = PlacementSpec {
        resources: ResourceRequest {
            gpu: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    b.input(Input::SubmitPlaced {
        req: 5,
        tasks: vec![(
            NewTask {
                id: TaskId(99),
                def: exec_def("q"),
                not_before: None,
            },
            spec,
        )],
    });
    let why = b.core.why_pending(TaskId(99)).unwrap();
    assert!(why.contains("less than gpu=2 in total"), "{why}");
    let mut g = worker("g", 1, 0);
    g.resources.insert("gpu".into(), 3);
    b.join(4, g);
    assert_eq!(b.state(TaskId(99)), TaskState::Assigned);
    assert_eq!(b.core.worker_resources_free("g").unwrap()["gpu"], 1);
    // A task that is running has no pending reason.
    let running = b.submit(1)[0];
    assert_eq!(b.state(running), TaskState::Assigned);
    assert_eq!(b.core.why_pending(running), None);
}

#[test]
fn drain_takes_nothing_new_lets_running_finish_and_shows_drained() {
    let mut b = Bench::new(12);
    b.join(1, worker("w1", 2, 0));
    let ids = b.submit(2);
    b.input(Input::DrainWorker {
        req: 1,
        name: "w1".into(),
    });
    assert_eq!(b.replies.last().unwrap().1, Reply::Drain(Ok(())));
    let more = b.submit(1)[0];
    assert_eq!(b.state(more), TaskState::Queued);
    assert!(b.core.why_pending(more).unwrap().contains("draining"));
    assert_eq!(b.core.workers()[0].status.as_str(), "draining");
    b.run_ok(1, ids[0]);
    b.run_ok(1, ids[1]);
    assert_eq!(b.state(more), TaskState::Queued, "no new work after drain");
    assert_eq!(b.core.workers()[0].status.as_str(), "drained");
    // Draining survives a reconnect; resume undoes it.
    b.input(Input::WorkerLeave { session: 1 });
    b.join(2, worker("w1", 2, 0));
    assert_eq!(b.core.workers()[0].status.as_str(), "drained");
    b.input(Input::ResumeWorker {
        req: 2,
        name: "w1".into(),
    });
    assert_eq!(b.state(more), TaskState::Assigned);
    b.input(Input::DrainWorker {
        req: 3,
        name: "nobody".into(),
    });
    assert_eq!(
        b.replies.last().unwrap().1,
        Reply::Drain(Err(DrainError::NotConnected))
    );
}

#[test]
fn consistent_hash_through_the_coordinator_keeps_a_key_on_its_worker() {
    let mut b = Bench::new(13);
    for i in 0..5 {
        b.join(i + 1, worker(&format!("w{i}"), 100, 0));
    }
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for n in 0..200u128 {
        let key = format!("user-{}", n % 17);
        let spec = PlacementSpec {
            strategy: Some(Strategy::ConsistentHash),
            key: Some(key.clone()),
            ..Default::default()
        };
        b.input(Input::SubmitPlaced {
            req: 1,
            tasks: vec![(
                NewTask {
                    id: TaskId(1000 + n),
                    def: exec_def("q"),
                    not_before: None,
                },
                spec,
            )],
        });
        let w = b.tasks[&TaskId(1000 + n)].worker.clone().unwrap();
        assert_eq!(owner.entry(key).or_insert_with(|| w.clone()), &w);
    }
    assert!(
        owner.values().collect::<BTreeSet<_>>().len() > 1,
        "keys spread over workers"
    );
}

/// Runs one task of `kind` on a worker that takes `secs` seconds.
fn run_for(b: &mut Bench, session: SessionId, id: TaskId, secs: i64) {
    let r = b.attempt_ref(id);
    b.input(Input::Started {
        session,
        attempt: r,
    });
    b.advance_ms(secs * 1000);
    b.finish(session, r, AttemptOutcome::Succeeded, Some(0));
}

#[test]
fn adaptive_learns_the_faster_worker_explores_and_adapts_to_a_slowdown() {
    let mut b = Bench::new(14);
    let cfg = CoreConfig {
        default_strategy: Strategy::Adaptive,
        suspect_after_ms: 1 << 40,
        lease_ms: 1 << 30,
        ..config()
    };
    b.core = Coordinator::new(cfg, [14; 32], b.now, Snapshot::default());
    b.join(1, worker("fast", 1, 0));
    b.join(2, worker("slow", 1, 0));
    // Warm up: each runs some tasks, fast in 1 s, slow in 4 s.
    for _ in 0..6 {
        for s in [1u64, 2] {
            let id = b.submit(1)[0];
            let w = b.tasks[&id].worker.clone().unwrap();
            let session = if w == "fast" { 1 } else { 2 };
            let _ = s;
            run_for(&mut b, session, id, if session == 1 { 1 } else { 4 });
        }
    }
    // With both free, the fast one is chosen.
    for _ in 0..5 {
        let id = b.submit(1)[0];
        assert_eq!(b.tasks[&id].worker.as_deref(), Some("fast"));
        run_for(&mut b, 1, id, 1);
    }
    // A new worker is explored: its unknown estimate is optimistic.
    b.join(3, worker("new", 1, 0));
    let id = b.submit(1)[0];
    assert_eq!(b.tasks[&id].worker.as_deref(), Some("new"));
    run_for(&mut b, 3, id, 8);
    // The fast worker slows down to 10 s: after a few runs the model moves away from it.
    let mut last = String::new();
    for _ in 0..30 {
        let id = b.submit(1)[0];
        last = b.tasks[&id].worker.clone().unwrap();
        let (s, secs) = match last.as_str() {
            "fast" => (1, 10),
            "slow" => (2, 4),
            _ => (3, 8),
        };
        run_for(&mut b, s, id, secs);
    }
    assert_eq!(
        last, "slow",
        "after the slowdown the 4 s worker is the fastest"
    );
    let st = b
        .core
        .placement_state()
        .adaptive
        .stats("fast", "default")
        .unwrap();
    assert!(st.mean_us > 4_000_000.0, "{st:?}");
}

#[test]
fn candidates_count_rejections_by_reason() {
    let infos = [winfo("a", 1, 0), winfo("b", 0, 0)];
    let views: Vec<_> = infos.iter().map(|i| WorkerView::new(i, 0, false)).collect();
    let c = candidates(&PlacementSpec::default(), Job::kind("k"), &views);
    assert_eq!(c.ok, vec![0]);
    assert_eq!(c.eligible, vec![0, 1]);
    assert_eq!(c.unplaced.count(feasibility::Rejection::NoCredit), 1);
}

#[test]
fn adaptive_with_hold_back_waits_for_a_much_faster_busy_worker() {
    let mut state = PlacementState::new(
        placement::AdaptiveConfig {
            hold_back: true,
            ..Default::default()
        },
        placement::hash::DEFAULT_VNODES,
    );
    for _ in 0..20 {
        state.adaptive.observe("fast", "k", Some(100), false);
        state.adaptive.observe("slow", "k", Some(10_000), false);
    }
    let infos = [winfo("fast", 1, 0), winfo("slow", 1, 0)];
    let views = [
        WorkerView::new(&infos[0], 1, false),
        WorkerView::new(&infos[1], 0, false),
    ];
    state.begin_round(&views);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let spec = PlacementSpec::default();
    match place(
        Strategy::Adaptive,
        &spec,
        Job::kind("k"),
        &views,
        &mut state,
        &mut rng,
    ) {
        Placement::Wait(u) => {
            assert!(
                u.explain(&spec, Job::kind("k"))
                    .contains("waiting for worker fast"),
                "{}",
                u.explain(&spec, Job::kind("k"))
            );
        }
        p => panic!("expected to wait, got {p:?}"),
    }
    // Without hold-back the free worker is used.
    state.adaptive.cfg.hold_back = false;
    state.begin_round(&views);
    assert_eq!(
        place(
            Strategy::Adaptive,
            &spec,
            Job::kind("k"),
            &views,
            &mut state,
            &mut rng
        ),
        Placement::Place(1)
    );
}

#[test]
fn selector_and_resources_round_trip_as_text() {
    let s: Selector = "zone in (a,b),!spot,gpu".parse().unwrap();
    assert_eq!(s.to_string().parse::<Selector>().unwrap(), s);
    let r: ResourceRequest = "cpu=2,gpu=1,licenses=3".parse().unwrap();
    assert_eq!(r.to_string(), "cpu=2,gpu=1,licenses=3");
    assert_eq!(r.to_string().parse::<ResourceRequest>().unwrap(), r);
    for st in Strategy::ALL {
        assert_eq!(st.as_str().parse::<Strategy>().unwrap(), st);
    }
}
