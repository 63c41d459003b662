//! Property tests: random interleavings of submits, workers joining, stalling and leaving,
//! results (current and stale), cancels and time. After every step the invariants hold
//! (checked inside the bench); at the end, with one healthy worker, every task terminates.

mod harness;

use drover_core::*;
use harness::*;
use proptest::prelude::*;
use proptest::strategy::Strategy as PropStrategy;

#[derive(Clone, Debug)]
enum Op {
    Submit {
        n: usize,
        priority: i32,
        attempts: u32,
    },
    Join {
        w: usize,
        slots: u32,
        prefetch: u32,
    },
    Leave {
        w: usize,
    },
    Heartbeat {
        w: usize,
    },
    Start {
        pick: usize,
    },
    Finish {
        pick: usize,
        outcome: u8,
    },
    Cancel {
        pick: usize,
    },
    Advance {
        ms: i64,
    },
}

fn op() -> impl PropStrategy<Value = Op> {
    prop_oneof![
        3 => (1..5usize, -2..3i32, 1..4u32).prop_map(|(n, priority, attempts)| Op::Submit { n, priority, attempts }),
        2 => (0..4usize, 1..4u32, 0..3u32).prop_map(|(w, slots, prefetch)| Op::Join { w, slots, prefetch }),
        1 => (0..4usize).prop_map(|w| Op::Leave { w }),
        2 => (0..4usize).prop_map(|w| Op::Heartbeat { w }),
        4 => any::<usize>().prop_map(|pick| Op::Start { pick }),
        5 => (any::<usize>(), 0..4u8).prop_map(|(pick, outcome)| Op::Finish { pick, outcome }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (0..2500i64).prop_map(|ms| Op::Advance { ms }),
    ]
}

struct World {
    b: Bench,
    /// Current session of each worker name, if connected.
    sessions: [Option<SessionId>; 4],
    configs: [Option<(u32, u32)>; 4],
    next_session: SessionId,
}

impl World {
    fn held_by(&self, w: usize) -> Vec<AttemptRef> {
        let name = format!("w{w}");
        self.b
            .tasks
            .values()
            .filter(|t| t.state.is_leased() && t.worker.as_deref() == Some(name.as_str()))
            .map(|t| self.b.attempt_ref(t.id))
            .collect()
    }

    /// Any assignment ever sent, current or stale, with the session it went to.
    fn pick_assignment(&self, pick: usize) -> Option<(SessionId, AttemptRef)> {
        let all: Vec<_> = self
            .b
            .sent
            .iter()
            .filter_map(|(s, m)| match m {
                ToWorker::Assign(a) => Some((
                    *s,
                    AttemptRef {
                        task_id: a.task_id,
                        attempt: a.attempt,
                        lease: a.lease,
                    },
                )),
                _ => None,
            })
            .collect();
        (!all.is_empty()).then(|| all[pick % all.len()])
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Submit {
                n,
                priority,
                attempts,
            } => {
                for _ in 0..n {
                    let mut d = exec_def("q");
                    d.priority = priority;
                    d.max_attempts = attempts;
                    self.b.submit_def(d);
                }
            }
            Op::Join { w, slots, prefetch } => {
                let s = self.next_session;
                self.next_session += 1;
                let held = self.held_by(w);
                // A worker process keeps its configuration across reconnects.
                let (slots, prefetch) = *self.configs[w].get_or_insert((slots, prefetch));
                let name = format!("w{w}");
                // A live session (connected, not lost) keeps its name: never a takeover.
                let live = self.sessions[w].is_some()
                    && self
                        .b
                        .core
                        .workers()
                        .iter()
                        .any(|x| x.info.name == name && x.status != WorkerStatus::Lost);
                let req = self.b.fresh_req();
                self.b.input(Input::WorkerJoin {
                    req,
                    session: s,
                    info: worker(&name, slots, prefetch),
                    held,
                });
                let accepted = matches!(
                    self.b.replies.last(),
                    Some((r, Reply::Joined(Ok(())))) if *r == req
                );
                assert_eq!(accepted, !live, "join of {name} (live: {live})");
                if accepted {
                    self.sessions[w] = Some(s);
                }
            }
            Op::Leave { w } => {
                if let Some(s) = self.sessions[w].take() {
                    self.b.input(Input::WorkerLeave { session: s });
                }
            }
            Op::Heartbeat { w } => {
                if let Some(s) = self.sessions[w] {
                    let held = self.held_by(w);
                    self.b.input(Input::Heartbeat { session: s, held });
                }
            }
            Op::Start { pick } => {
                if let Some((s, r)) = self.pick_assignment(pick) {
                    self.b.input(Input::Started {
                        session: s,
                        attempt: r,
                    });
                }
            }
            Op::Finish { pick, outcome } => {
                if let Some((s, r)) = self.pick_assignment(pick) {
                    let before = self.b.tasks[&r.task_id].clone();
                    let current = before.state.is_leased()
                        && before.attempt == r.attempt
                        && before.lease == Some(r.lease)
                        && self.sessions.iter().flatten().any(|&x| x == s)
                        && before.worker.as_deref()
                            == self
                                .sessions
                                .iter()
                                .position(|&x| x == Some(s))
                                .map(|w| format!("w{w}"))
                                .as_deref();
                    let kind = [
                        AttemptOutcome::Succeeded,
                        AttemptOutcome::Failed,
                        AttemptOutcome::TimedOut,
                        AttemptOutcome::Cancelled,
                    ][outcome as usize];
                    self.b.input_only(Input::Finished {
                        session: s,
                        attempt: r,
                        outcome: Outcome {
                            kind,
                            exit_code: Some(outcome as i32),
                            error: None,
                            result: None,
                        },
                    });
                    if !current {
                        assert_eq!(
                            self.b.tasks[&r.task_id], before,
                            "a stale result changed a task"
                        );
                    }
                }
            }
            Op::Cancel { pick } => {
                let ids: Vec<TaskId> = self.b.tasks.keys().copied().collect();
                if !ids.is_empty() {
                    self.b.input(Input::Cancel {
                        req: 1_000_000,
                        task_id: ids[pick % ids.len()],
                    });
                }
            }
            Op::Advance { ms } => self.b.advance_ms(ms),
        }
    }

    /// Liveness: a healthy worker that completes whatever it holds ends every task.
    fn drain(&mut self) {
        let s = self.next_session;
        for w in 0..4 {
            self.apply(Op::Leave { w });
        }
        self.b.input(Input::WorkerJoin {
            req: 0,
            session: s,
            info: worker("healthy", 8, 0),
            held: vec![],
        });
        for _ in 0..10_000 {
            if self.b.tasks.values().all(|t| t.state.is_terminal()) {
                return;
            }
            let mine: Vec<TaskId> = self
                .b
                .tasks
                .values()
                .filter(|t| t.state.is_leased() && t.worker.as_deref() == Some("healthy"))
                .map(|t| t.id)
                .collect();
            for id in mine {
                self.b.run_ok(s, id);
            }
            self.b.input(Input::Heartbeat {
                session: s,
                held: vec![],
            });
            self.b.advance_ms(500);
        }
        panic!(
            "tasks did not all terminate: {:?}",
            self.b.core.active_counts()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn prop_invariants_hold_and_every_task_terminates(seed in any::<u8>(), ops in prop::collection::vec(op(), 1..120)) {
        let mut world = World { b: Bench::new(seed), sessions: [None; 4], configs: [None; 4], next_session: 1 };
        for o in ops {
            world.apply(o);
        }
        world.drain();
        // Every task's committed history ends in exactly one terminal state.
        for id in world.b.tasks.keys() {
            let h = world.b.history(*id);
            let terminal: Vec<_> = h.iter().filter(|s| s.is_terminal()).collect();
            prop_assert_eq!(terminal.len(), 1, "history {:?}", h);
            prop_assert!(h.last().unwrap().is_terminal());
            // Attempts only grow.
            let attempts: Vec<u32> = world.b.events.iter().filter_map(|e| match &e.kind {
                EventKind::Task { task_id, attempt, .. } if task_id == id => Some(*attempt),
                _ => None,
            }).collect();
            prop_assert!(attempts.windows(2).all(|w| w[0] <= w[1]));
        }
        prop_assert!(world.b.core.poll_timeout().is_none() || world.b.core.active_counts().is_empty());
    }
}
