//! The conformance suite: every case is written once, generic over `Store`, and instantiated
//! for each backend by `suite!`. A backend passes only if it behaves exactly like the others.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use drover_core::{
    AttemptOutcome, AttemptRecord, Event, EventKind, LeaseToken, LogChunk, LogStream,
    ScheduleChange, Scoped, Sealed, TaskDef, TaskId, TaskRecord, TaskSpec, TaskState,
    WorkerEventState, WorkflowState, Write, DEFAULT_NAMESPACE,
};
use drover_store::postgres::TempSchema;
use drover_store::{
    DeliveryRecord, MemStore, Member, PgStore, Role, SqliteStore, Store, StoreError, TaskQuery,
    TokenRecord, WebhookRecord,
};
use futures::FutureExt;

// ---- fixtures ----

pub struct Fixture<S> {
    pub store: Arc<S>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<TempSchema>,
}

impl<S> Fixture<S> {
    fn new(store: S) -> Fixture<S> {
        Fixture {
            store: Arc::new(store),
            _dir: None,
            schema: None,
        }
    }

    /// Closes the store and drops what it was kept in.
    pub async fn finish(self) {
        let Fixture {
            store,
            _dir,
            schema,
        } = self;
        drop(store);
        if let Some(s) = schema {
            s.drop_schema().await.unwrap();
        }
    }
}

pub async fn mem_store() -> Option<Fixture<MemStore>> {
    Some(Fixture::new(MemStore::new()))
}

pub async fn sqlite_store() -> Option<Fixture<SqliteStore>> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("nested/dir/drover.db")).unwrap();
    Some(Fixture {
        _dir: Some(dir),
        ..Fixture::new(store)
    })
}

/// The database the PostgreSQL cases run in (each in a schema of its own), e.g.
/// `postgres://postgres@127.0.0.1:5432/test`; unset, they are skipped.
pub const PG_URL_VAR: &str = "DROVER_TEST_POSTGRES_URL";

pub fn pg_base_url() -> Option<String> {
    let url = std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: {PG_URL_VAR} not set");
    }
    url
}

pub async fn pg_store() -> Option<Fixture<PgStore>> {
    let schema = TempSchema::create(&pg_base_url()?).await.unwrap();
    // Few connections: many tests run at once.
    let store = PgStore::connect_with(schema.url(), 2).await.unwrap();
    Some(Fixture {
        schema: Some(schema),
        ..Fixture::new(store)
    })
}

/// Runs `case` on `f`'s store, then finishes `f` whether the case passed or not.
pub async fn run<S, F, Fut>(f: Fixture<S>, case: F)
where
    F: FnOnce(Arc<S>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let out = AssertUnwindSafe(case(f.store.clone())).catch_unwind().await;
    f.finish().await;
    if let Err(panic) = out {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! suite {
    ($backend:ident, $make:path) => {
        mod $backend {
            suite!(@cases $make;
                task_round_trip,
                handler_payload_and_result_round_trip,
                update_keeps_definition,
                attempts_round_trip_and_upsert,
                dedup_within_batch,
                is_new_is_ored_within_batch,
                snapshot_holds_exactly_the_active_tasks,
                empty_snapshot,
                list_filters_and_pages,
                logs_in_write_order,
                events_after,
                every_event_kind_round_trips,
                count_by_state,
                failed_batch_changes_nothing,
                empty_commit,
                prune_events_keeps_the_newest,
                webhooks_round_trip,
                deliveries_and_cursors,
                flow_round_trip_and_snapshot,
                prune_tasks_removes_old_terminal_tasks_and_their_history,
                prune_tasks_within_the_limit_until_none_is_due,
                prune_tasks_keeps_a_workflow_until_every_node_is_due,
                prune_tasks_never_prunes_a_workflow_with_an_active_node,
                prune_tasks_prunes_a_rerun_workflow_with_its_earlier_runs,
                prune_tasks_prunes_workflows_whole,
                prune_tasks_shares_the_limit_with_whole_workflows,
                prune_tasks_reports_idempotency_keys,
                drained_workers_survive_in_the_snapshot,
                audit_log_filters_pages_and_prunes,
                tokens_round_trip,
                namespaces_keep_names_apart,
                leadership_fences_writes,
                lean_updates_keep_the_body,
                copies_take_their_tasks_body,
                task_defs_read_bodies,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_reads_and_commits() {
                let Some(f) = $make().await else { return };
                super::run(f, super::cases::concurrent_reads_and_commits).await;
            }
        }
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(f) = $make().await else { return };
                #[allow(unused_imports)]
                use super::cases::*;
                #[allow(unused_imports)]
                use super::flow_cases::*;
                #[allow(unused_imports)]
                use super::audit_cases::*;
                #[allow(unused_imports)]
                use super::leadership_cases::*;
                #[allow(unused_imports)]
                use super::body_cases::*;
                super::run(f, |s| async move { $case(s.as_ref()).await }).await;
            }
        )*
    };
}

suite!(mem, super::mem_store);
suite!(sqlite, super::sqlite_store);
suite!(postgres, super::pg_store);

// ---- builders ----

pub fn tid(n: u128) -> TaskId {
    // Shaped like a UUIDv7: a time-ish high part, so ordering covers the whole u128.
    TaskId((n << 80) | 0x7000_8000_0000_0000_0000 | n)
}

pub fn exec_def(queue: &str) -> TaskDef {
    TaskDef {
        namespace: DEFAULT_NAMESPACE.into(),
        queue: queue.into(),
        kind: "build".into(),
        priority: -7,
        spec: TaskSpec::Exec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo \"héllo\" 'wörld' \\ $X".into(),
            ],
            // Order and duplicates are kept.
            env: vec![
                ("Z".into(), "last".into()),
                ("A".into(), "=x=".into()),
                ("Z".into(), "again".into()),
                ("EMPTY".into(), String::new()),
            ],
            cwd: Some("/tmp/work dir".into()),
            // Opaque bytes, kept exactly (any byte, empty too), in order.
            secret_env: vec![
                ("TOKEN".into(), Sealed(vec![0, 1, 0xfe, 0xff, b'"'])),
                ("EMPTY_SEALED".into(), Sealed(vec![])),
            ],
        },
        max_attempts: 5,
        backoff_ms: u64::MAX,
        timeout_ms: Some(30_000),
        idempotency_key: Some("key-1".into()),
        placement: drover_core::PlacementSpec {
            strategy: Some(drover_core::Strategy::ConsistentHash),
            key: Some("customer-42".into()),
            resources: "cpu=2,mem=1073741824,licenses=1".parse().unwrap(),
            selector: "region=eu,gpu in (a100,h100),!spot".parse().unwrap(),
            spread_label: Some("rack".into()),
            shard: Some(drover_core::Shard {
                group: TaskId(7),
                index: 1,
                count: 3,
                worker: "w2".into(),
            }),
        },
        concurrency: Some(drover_core::KeyLimit {
            key: "customer 42 ü".into(),
            max: 3,
        }),
    }
}

pub fn noop_def(queue: &str) -> TaskDef {
    TaskDef {
        namespace: DEFAULT_NAMESPACE.into(),
        queue: queue.into(),
        kind: "noop".into(),
        priority: 0,
        spec: TaskSpec::Noop,
        max_attempts: 1,
        backoff_ms: 0,
        timeout_ms: None,
        idempotency_key: None,
        placement: Default::default(),
        concurrency: None,
    }
}

pub fn task(id: TaskId, seq: u64, def: TaskDef, state: TaskState) -> TaskRecord {
    TaskRecord {
        id,
        seq,
        def: Arc::new(def),
        state,
        attempt: 0,
        lost: 0,
        not_before: None,
        worker: None,
        lease: None,
        created_at: 1_000 + seq as i64,
        updated_at: 1_000 + seq as i64,
        started_at: None,
        finished_at: None,
        exit_code: None,
        error: None,
        result: None,
    }
}

pub fn attempt(id: TaskId, n: u32, worker: &str) -> AttemptRecord {
    AttemptRecord {
        task_id: id,
        attempt: n,
        worker: worker.into(),
        assigned_at: 10 * n as i64,
        started_at: None,
        finished_at: None,
        outcome: None,
        exit_code: None,
        error: None,
    }
}

pub fn task_event(seq: u64, t: &TaskRecord, reason: Option<&str>) -> Event {
    Event {
        seq,
        at: 5_000 + seq as i64,
        kind: EventKind::Task {
            task_id: t.id,
            namespace: t.def.namespace.clone(),
            queue: t.def.queue.clone(),
            state: t.state,
            attempt: t.attempt,
            worker: t.worker.clone(),
            reason: reason.map(str::to_owned),
            workflow: None,
            result_bytes: None,
        },
    }
}

/// `t` as a snapshot has it: its definition lean.
pub fn stand_in(t: &TaskRecord) -> TaskRecord {
    let mut t = t.clone();
    t.def = Arc::new(t.def.lean());
    t
}

pub fn new(t: &TaskRecord) -> Write {
    Write::Task {
        record: t.clone(),
        is_new: true,
    }
}

pub fn upd(t: &TaskRecord) -> Write {
    Write::Task {
        record: t.clone(),
        is_new: false,
    }
}

pub fn log(id: TaskId, attempt: u32, stream: LogStream, data: &[u8]) -> Write {
    Write::Log(LogChunk {
        task_id: id,
        attempt,
        stream,
        data: data.to_vec(),
    })
}

/// A leased, running task with every nullable field set.
pub fn full_running(id: TaskId, seq: u64) -> TaskRecord {
    TaskRecord {
        state: TaskState::Running,
        attempt: 3,
        lost: 2,
        not_before: Some(-42),
        worker: Some("worker-ü".into()),
        lease: Some(LeaseToken(u128::MAX - 12345)),
        started_at: Some(i64::MAX),
        finished_at: Some(i64::MIN),
        exit_code: Some(-9),
        error: Some("boom\nline 2".into()),
        ..task(id, seq, exec_def("q-exec"), TaskState::Running)
    }
}

// ---- cases ----

pub mod cases {
    use super::*;

    pub async fn task_round_trip<S: Store>(s: &S) {
        let a = full_running(tid(1), 0);
        let b = task(tid(2), 1, noop_def(""), TaskState::Queued);
        let mut c = task(tid(3), 2, exec_def("q"), TaskState::Pending);
        c.def = Arc::new(TaskDef {
            spec: TaskSpec::Exec {
                argv: vec![],
                env: vec![],
                cwd: None,
                secret_env: vec![],
            },
            timeout_ms: Some(0),
            ..exec_def("q")
        });
        c.lease = Some(LeaseToken(0));
        s.commit(vec![new(&a), new(&b), new(&c)]).await.unwrap();
        assert_eq!(s.task(a.id).await.unwrap(), Some(a));
        assert_eq!(s.task(b.id).await.unwrap(), Some(b));
        assert_eq!(s.task(c.id).await.unwrap(), Some(c));
        assert_eq!(s.task(tid(4)).await.unwrap(), None);
        assert_eq!(s.task(TaskId(0)).await.unwrap(), None);
    }

    /// A handler task's payload (JSON text, kept byte for byte) and the result its finish
    /// writes; a later update without a result keeps it.
    pub async fn handler_payload_and_result_round_trip<S: Store>(s: &S) {
        let payload = r#"{"w":100,"name":"h\u00e9 \"q\"\n","nul":"\u0000","n":[1.5e300,null]}"#;
        let def = TaskDef {
            kind: "resize".into(),
            spec: TaskSpec::Handler {
                payload: payload.into(),
            },
            ..exec_def("q")
        };
        let t = task(tid(1), 0, def, TaskState::Queued);
        s.commit(vec![new(&t)]).await.unwrap();
        assert_eq!(s.task(t.id).await.unwrap(), Some(t.clone()));
        let mut done = t.clone();
        done.state = TaskState::Succeeded;
        done.result = Some(r#"{"ok":true,"s":"\u0000ü"}"#.into());
        s.commit(vec![upd(&done)]).await.unwrap();
        assert_eq!(s.task(t.id).await.unwrap(), Some(done.clone()));
        let mut later = done.clone();
        later.result = None;
        later.updated_at += 1;
        s.commit(vec![upd(&later)]).await.unwrap();
        let got = s.task(t.id).await.unwrap().unwrap();
        assert_eq!(got.result, done.result);
        let listed = s
            .list_tasks(&TaskQuery {
                limit: 10,
                ..TaskQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(listed[0].result, done.result);
    }

    pub async fn update_keeps_definition<S: Store>(s: &S) {
        let t = task(tid(1), 7, exec_def("q"), TaskState::Queued);
        s.commit(vec![new(&t)]).await.unwrap();

        // An update carries the whole record, but only the state is written.
        let mut u = full_running(t.id, 99);
        u.def = Arc::new(noop_def("other"));
        u.created_at = -1;
        s.commit(vec![upd(&u)]).await.unwrap();

        let got = s.task(t.id).await.unwrap().unwrap();
        let want = TaskRecord {
            seq: t.seq,
            def: t.def.clone(),
            created_at: t.created_at,
            ..u
        };
        assert_eq!(got, want);

        // And back to nulls.
        let back = TaskRecord {
            updated_at: 77,
            ..t.clone()
        };
        s.commit(vec![upd(&back)]).await.unwrap();
        assert_eq!(s.task(t.id).await.unwrap(), Some(back));
    }

    pub async fn attempts_round_trip_and_upsert<S: Store>(s: &S) {
        let id = tid(1);
        let other = tid(2);
        let mut t = task(id, 0, noop_def("q"), TaskState::Running);
        t.attempt = 10;
        let a10 = AttemptRecord {
            started_at: Some(101),
            finished_at: Some(102),
            outcome: Some(AttemptOutcome::TimedOut),
            exit_code: Some(137),
            error: Some("timed out".into()),
            ..attempt(id, 10, "w1")
        };
        let a2 = attempt(id, 2, "w2");
        let a9 = AttemptRecord {
            outcome: Some(AttemptOutcome::Lost),
            ..attempt(id, 9, "w9")
        };
        s.commit(vec![
            new(&t),
            Write::Attempt(a10.clone()),
            Write::Attempt(a2.clone()),
            Write::Attempt(attempt(other, 1, "x")),
            Write::Attempt(a9.clone()),
        ])
        .await
        .unwrap();
        assert_eq!(
            s.attempts(id).await.unwrap(),
            vec![a2.clone(), a9.clone(), a10.clone()],
            "oldest first, numerically"
        );

        // Upsert: the later record replaces the earlier one, nulls included.
        let a2b = AttemptRecord {
            worker: "w2b".into(),
            assigned_at: 20,
            started_at: Some(21),
            finished_at: Some(22),
            outcome: Some(AttemptOutcome::Succeeded),
            exit_code: Some(0),
            error: None,
            ..a2.clone()
        };
        let a10b = attempt(id, 10, "w1");
        s.commit(vec![
            Write::Attempt(a2b.clone()),
            Write::Attempt(a10b.clone()),
        ])
        .await
        .unwrap();
        assert_eq!(s.attempts(id).await.unwrap(), vec![a2b, a9, a10b]);
        assert_eq!(
            s.attempts(other).await.unwrap(),
            vec![attempt(other, 1, "x")]
        );
        assert!(s.attempts(tid(3)).await.unwrap().is_empty());

        for outcome in [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::TimedOut,
            AttemptOutcome::Cancelled,
            AttemptOutcome::Lost,
        ] {
            let a = AttemptRecord {
                outcome: Some(outcome),
                ..attempt(tid(4), 1, "w")
            };
            s.commit(vec![Write::Attempt(a.clone())]).await.unwrap();
            assert_eq!(s.attempts(tid(4)).await.unwrap(), vec![a]);
        }
    }

    pub async fn dedup_within_batch<S: Store>(s: &S) {
        let id = tid(1);
        let queued = task(id, 0, exec_def("q"), TaskState::Queued);
        let assigned = TaskRecord {
            state: TaskState::Assigned,
            attempt: 1,
            worker: Some("w".into()),
            lease: Some(LeaseToken(5)),
            updated_at: 2_000,
            ..queued.clone()
        };
        let running = TaskRecord {
            state: TaskState::Running,
            started_at: Some(2_100),
            updated_at: 2_100,
            ..assigned.clone()
        };
        let a1 = attempt(id, 1, "w");
        let a1_started = AttemptRecord {
            started_at: Some(2_100),
            ..a1.clone()
        };
        s.commit(vec![
            new(&queued),
            Write::Event(task_event(1, &queued, None)),
            upd(&assigned),
            Write::Attempt(a1.clone()),
            Write::Event(task_event(2, &assigned, None)),
            upd(&running),
            Write::Attempt(a1_started.clone()),
            Write::Event(task_event(3, &running, None)),
        ])
        .await
        .unwrap();
        assert_eq!(s.task(id).await.unwrap(), Some(running.clone()));
        assert_eq!(s.attempts(id).await.unwrap(), vec![a1_started.clone()]);
        assert_eq!(s.events_after(0, 10).await.unwrap().len(), 3);
        assert_eq!(
            s.count_by_state(None).await.unwrap(),
            BTreeMap::from([(TaskState::Running, 1)])
        );
        let snap = s.load_snapshot().await.unwrap();
        assert_eq!(snap.tasks, vec![(stand_in(&running), Some(a1_started))]);

        // Several updates of an existing task in one batch: the last wins.
        let done = TaskRecord {
            state: TaskState::Succeeded,
            lease: None,
            finished_at: Some(3_000),
            exit_code: Some(0),
            updated_at: 3_000,
            ..running.clone()
        };
        s.commit(vec![upd(&running), upd(&done)]).await.unwrap();
        assert_eq!(s.task(id).await.unwrap(), Some(done));
        assert_eq!(
            s.count_by_state(None).await.unwrap(),
            BTreeMap::from([(TaskState::Succeeded, 1)])
        );
    }

    pub async fn is_new_is_ored_within_batch<S: Store>(s: &S) {
        // The insert comes first, then an update: one insert of the final record.
        let a = task(tid(1), 0, exec_def("q"), TaskState::Queued);
        let a2 = TaskRecord {
            state: TaskState::Cancelled,
            ..a.clone()
        };
        // An update comes first (the flag is set by a later write of the same task).
        let b = task(tid(2), 1, noop_def("q"), TaskState::Pending);
        let b2 = TaskRecord {
            state: TaskState::Queued,
            ..b.clone()
        };
        s.commit(vec![new(&a), upd(&b), upd(&a2), new(&b2)])
            .await
            .unwrap();
        assert_eq!(s.task(a.id).await.unwrap(), Some(a2));
        assert_eq!(s.task(b.id).await.unwrap(), Some(b2.clone()));
        assert_eq!(
            s.count_by_state(None).await.unwrap(),
            BTreeMap::from([(TaskState::Queued, 1), (TaskState::Cancelled, 1)])
        );
        // Now it exists: inserting it again fails.
        assert!(s.commit(vec![new(&b2)]).await.is_err());
    }

    pub async fn snapshot_holds_exactly_the_active_tasks<S: Store>(s: &S) {
        let mut writes = Vec::new();
        let mut want = Vec::new();
        for (i, state) in TaskState::ALL.into_iter().enumerate() {
            let id = tid(100 - i as u128);
            let mut t = task(id, 10 * i as u64 + 3, exec_def("q"), state);
            let mut current = None;
            if i % 2 == 0 {
                // Two attempts; the current one is the second.
                t.attempt = 2;
                writes.push(Write::Attempt(AttemptRecord {
                    outcome: Some(AttemptOutcome::Failed),
                    ..attempt(id, 1, "old")
                }));
                let a2 = attempt(id, 2, "w");
                writes.push(Write::Attempt(a2.clone()));
                current = Some(a2);
            } else if i % 3 == 0 {
                // Its attempt number points at an attempt that was never written.
                t.attempt = 1;
            }
            writes.push(new(&t));
            if !state.is_terminal() {
                want.push((t, current));
            }
        }
        let extra = attempt(tid(999), 1, "stray");
        writes.push(Write::Attempt(extra));
        for seq in [4, 5, 6] {
            writes.push(Write::Event(Event {
                seq,
                at: 0,
                kind: EventKind::Worker {
                    name: "w".into(),
                    state: WorkerEventState::Joined,
                },
            }));
        }
        s.commit(writes).await.unwrap();

        let mut snap = s.load_snapshot().await.unwrap();
        snap.tasks.sort_by_key(|(t, _)| t.id);
        want.sort_by_key(|(t, _)| t.id);
        let want: Vec<_> = want.into_iter().map(|(t, a)| (stand_in(&t), a)).collect();
        assert_eq!(snap.tasks, want);
        assert_eq!(want.len(), 4);
        assert_eq!(snap.next_task_seq, 10 * 10 + 3 + 1);
        assert_eq!(snap.next_event_seq, 7);
    }

    pub async fn empty_snapshot<S: Store>(s: &S) {
        let snap = s.load_snapshot().await.unwrap();
        assert!(snap.tasks.is_empty());
        assert_eq!(snap.next_task_seq, 0);
        assert_eq!(snap.next_event_seq, 1);
        assert!(s.count_by_state(None).await.unwrap().is_empty());
        assert!(s.events_after(0, 10).await.unwrap().is_empty());
        let all = TaskQuery {
            namespaces: None,
            limit: 10,
            ..TaskQuery::default()
        };
        assert!(s.list_tasks(&all).await.unwrap().is_empty());

        // Only the seq of the first task counts, even when it is terminal.
        let t = task(tid(1), 0, noop_def("q"), TaskState::Succeeded);
        s.commit(vec![new(&t)]).await.unwrap();
        let snap = s.load_snapshot().await.unwrap();
        assert!(snap.tasks.is_empty());
        assert_eq!(snap.next_task_seq, 1);
        assert_eq!(snap.next_event_seq, 1);
    }

    pub async fn list_filters_and_pages<S: Store>(s: &S) {
        let states = [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
        ];
        let mut all = Vec::new();
        // Ids deliberately not in seq order, and spread over the whole u128 range.
        for i in 0..53u128 {
            let id = TaskId((i * 7919 % 53) << 100 | i);
            let queue = ["alpha", "beta", "gamma"][(i % 3) as usize];
            let state = states[(i % 4) as usize];
            all.push(task(id, i as u64, noop_def(queue), state));
        }
        // Across several batches, with later state changes.
        for chunk in all.chunks(10) {
            s.commit(chunk.iter().map(new).collect()).await.unwrap();
        }
        for t in all.iter_mut().filter(|t| t.seq % 5 == 0) {
            t.state = TaskState::Cancelled;
            t.updated_at += 1;
            s.commit(vec![upd(t)]).await.unwrap();
        }
        all.sort_by_key(|t| std::cmp::Reverse(t.id));

        let filters: Vec<(Option<TaskState>, Option<&str>)> = vec![
            (None, None),
            (Some(TaskState::Queued), None),
            (Some(TaskState::Cancelled), None),
            (None, Some("beta")),
            (Some(TaskState::Succeeded), Some("gamma")),
            (Some(TaskState::Dead), None),
            (None, Some("nope")),
        ];
        for (state, queue) in filters {
            let want: Vec<TaskRecord> = all
                .iter()
                .filter(|t| state.is_none_or(|st| t.state == st))
                .filter(|t| queue.is_none_or(|q| t.def.queue == q))
                .cloned()
                .collect();
            for limit in [1, 4, 7, 100] {
                let mut got = Vec::new();
                let mut before = None;
                loop {
                    let page = s
                        .list_tasks(&TaskQuery {
                            namespaces: None,
                            state,
                            queue: queue.map(str::to_owned),
                            before,
                            limit,
                        })
                        .await
                        .unwrap();
                    assert!(page.len() <= limit);
                    let full = page.len() == limit;
                    before = page.last().map(|t| t.id);
                    got.extend(page);
                    if !full {
                        break;
                    }
                }
                assert_eq!(got, want, "state {state:?} queue {queue:?} limit {limit}");
            }
            let none = TaskQuery {
                namespaces: None,
                state,
                queue: queue.map(str::to_owned),
                before: None,
                limit: 0,
            };
            assert!(s.list_tasks(&none).await.unwrap().is_empty());
        }
        // A cursor that is not an existing id still pages by id.
        let mid = TaskId(all[10].id.0 + 1);
        let page = s
            .list_tasks(&TaskQuery {
                namespaces: None,
                before: Some(mid),
                limit: 3,
                ..TaskQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page, all[10..13].to_vec());
    }

    pub async fn logs_in_write_order<S: Store>(s: &S) {
        let id = tid(1);
        let other = tid(2);
        let out = LogStream::Stdout;
        let err = LogStream::Stderr;
        s.commit(vec![
            log(id, 1, out, b"one "),
            log(id, 2, out, b"second attempt"),
            log(id, 1, err, &[0xff, 0x00, 0xfe]),
            log(other, 1, out, b"other"),
            log(id, 1, out, b"two "),
        ])
        .await
        .unwrap();
        s.commit(vec![log(id, 1, out, b""), log(id, 1, err, b"three")])
            .await
            .unwrap();
        let got: Vec<(LogStream, Vec<u8>)> = s
            .logs(id, 1)
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                assert_eq!((c.task_id, c.attempt), (id, 1));
                (c.stream, c.data)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (out, b"one ".to_vec()),
                (err, vec![0xff, 0x00, 0xfe]),
                (out, b"two ".to_vec()),
                (out, b"".to_vec()),
                (err, b"three".to_vec()),
            ]
        );
        assert_eq!(s.logs(id, 2).await.unwrap().len(), 1);
        assert_eq!(s.logs(other, 1).await.unwrap()[0].data, b"other");
        assert!(s.logs(id, 3).await.unwrap().is_empty());
        assert!(s.logs(tid(3), 1).await.unwrap().is_empty());
    }

    pub async fn events_after<S: Store>(s: &S) {
        let t = full_running(tid(1), 0);
        let q = task(tid(2), 1, noop_def("q"), TaskState::Queued);
        let events = vec![
            task_event(1, &q, None),
            task_event(2, &t, Some("reason ✓")),
            Event {
                seq: 3,
                at: -5,
                kind: EventKind::Worker {
                    name: "w-1".into(),
                    state: WorkerEventState::Joined,
                },
            },
            Event {
                seq: 4,
                at: i64::MAX,
                kind: EventKind::Worker {
                    name: String::new(),
                    state: WorkerEventState::Left,
                },
            },
            task_event(5, &q, Some("")),
        ];
        s.commit(events[..2].iter().cloned().map(Write::Event).collect())
            .await
            .unwrap();
        s.commit(events[2..].iter().cloned().map(Write::Event).collect())
            .await
            .unwrap();
        assert_eq!(s.events_after(0, 100).await.unwrap(), events);
        assert_eq!(s.events_after(1, 2).await.unwrap(), events[1..3].to_vec());
        assert_eq!(s.events_after(4, 100).await.unwrap(), events[4..].to_vec());
        assert!(s.events_after(5, 100).await.unwrap().is_empty());
        assert!(s.events_after(0, 0).await.unwrap().is_empty());
        assert!(s.events_after(u64::MAX, 10).await.unwrap().is_empty());
        assert_eq!(s.load_snapshot().await.unwrap().next_event_seq, 6);
    }

    /// Every variant of `EventKind`, with and without its optional fields.
    pub async fn every_event_kind_round_trips<S: Store>(s: &S) {
        let t = full_running(tid(1), 0);
        let mut kinds = vec![
            EventKind::Task {
                task_id: t.id,
                namespace: "default".into(),
                queue: "q".into(),
                state: TaskState::Running,
                attempt: 3,
                worker: Some("w-1".into()),
                reason: None,
                workflow: None,
                result_bytes: None,
            },
            EventKind::Task {
                task_id: tid(2),
                namespace: "team-b".into(),
                queue: String::new(),
                state: TaskState::Skipped,
                attempt: 0,
                worker: None,
                reason: Some("upstream failed".into()),
                workflow: Some("wf-ü 1".into()),
                result_bytes: None,
            },
            EventKind::Task {
                task_id: tid(3),
                namespace: "default".into(),
                queue: "q".into(),
                state: TaskState::Succeeded,
                attempt: 1,
                worker: Some("w-1".into()),
                reason: None,
                workflow: None,
                result_bytes: Some(1 << 20),
            },
        ];
        kinds.extend(
            WorkerEventState::ALL
                .iter()
                .map(|&state| EventKind::Worker {
                    name: format!("w-{}", state.as_str()),
                    state,
                }),
        );
        kinds.extend(WorkflowState::ALL.iter().map(|&state| EventKind::Workflow {
            workflow_id: format!("wf-{}", state.as_str()),
            namespace: "default".into(),
            state,
        }));
        for (i, &change) in ScheduleChange::ALL.iter().enumerate() {
            kinds.push(EventKind::Schedule {
                namespace: "default".into(),
                name: format!("nightly-{i}"),
                change,
                task_id: None,
                reason: None,
            });
            kinds.push(EventKind::Schedule {
                namespace: "team-b".into(),
                name: "every 5m".into(),
                change,
                task_id: Some(tid(10 + i as u128)),
                reason: Some(format!("slot {i} ✓")),
            });
        }
        let events: Vec<Event> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                seq: i as u64 + 1,
                at: 1_000 * i as i64 - 3,
                kind,
            })
            .collect();
        // Two commits: the second starts in the middle of the kinds.
        let half = events.len() / 2;
        s.commit(events[..half].iter().cloned().map(Write::Event).collect())
            .await
            .unwrap();
        s.commit(events[half..].iter().cloned().map(Write::Event).collect())
            .await
            .unwrap();
        assert_eq!(s.events_after(0, 1000).await.unwrap(), events);
        assert_eq!(
            s.events_after(half as u64, 3).await.unwrap(),
            events[half..half + 3].to_vec()
        );
        assert_eq!(
            s.load_snapshot().await.unwrap().next_event_seq,
            events.len() as u64 + 1
        );
    }

    fn worker_event(seq: u64, at: i64) -> Event {
        Event {
            seq,
            at,
            kind: EventKind::Worker {
                name: format!("w{seq}"),
                state: WorkerEventState::Joined,
            },
        }
    }

    pub async fn prune_events_keeps_the_newest<S: Store>(s: &S) {
        assert_eq!(s.prune_events(i64::MAX).await.unwrap(), 0);
        assert_eq!(s.last_event_seq().await.unwrap(), 0);
        // Times are mostly increasing; seq 4 is out of order and goes with its prefix.
        let ats = [10, 20, 30, 5, 40, 50];
        let events: Vec<Event> = ats
            .iter()
            .enumerate()
            .map(|(i, at)| worker_event(i as u64 + 1, *at))
            .collect();
        s.commit(events.iter().cloned().map(Write::Event).collect())
            .await
            .unwrap();
        assert_eq!(s.last_event_seq().await.unwrap(), 6);
        assert_eq!(s.prune_events(10).await.unwrap(), 0);
        assert_eq!(s.prune_events(25).await.unwrap(), 2);
        assert_eq!(s.events_after(0, 100).await.unwrap(), events[2..].to_vec());
        assert_eq!(s.prune_events(45).await.unwrap(), 3);
        assert_eq!(s.events_after(0, 100).await.unwrap(), events[5..].to_vec());
        // Everything is old: the newest stays, so numbering continues.
        assert_eq!(s.prune_events(i64::MAX).await.unwrap(), 0);
        assert_eq!(s.events_after(0, 100).await.unwrap(), events[5..].to_vec());
        assert_eq!(s.load_snapshot().await.unwrap().next_event_seq, 7);
        assert_eq!(s.last_event_seq().await.unwrap(), 6);
        s.commit(vec![Write::Event(worker_event(7, 60))])
            .await
            .unwrap();
        assert_eq!(s.prune_events(i64::MAX).await.unwrap(), 1);
        assert_eq!(s.events_after(0, 100).await.unwrap()[0].seq, 7);
    }

    fn hook(id: &str, created_at: i64) -> WebhookRecord {
        WebhookRecord {
            id: id.into(),
            url: format!("http://127.0.0.1:9/{id}?q=ü"),
            events: vec!["task.succeeded".into(), "worker.*".into()],
            secret: "s3cret \"quoted\"".into(),
            created_at,
            cursor: 41,
            namespace: "*".into(),
        }
    }

    pub async fn webhooks_round_trip<S: Store>(s: &S) {
        assert!(s.webhooks().await.unwrap().is_empty());
        let (a, b) = (hook("a", 2), hook("b", 1));
        s.insert_webhook(&a).await.unwrap();
        s.insert_webhook(&b).await.unwrap();
        assert!(s.insert_webhook(&a).await.is_err());
        let all = s.webhooks().await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.contains(&a) && all.contains(&b));
        assert!(s.delete_webhook("a").await.unwrap());
        assert!(!s.delete_webhook("a").await.unwrap());
        assert_eq!(s.webhooks().await.unwrap(), vec![b]);
    }

    fn token(name: &str, role: &str, byte: u8, expires_at: Option<i64>) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            role: role.into(),
            namespaces: if byte.is_multiple_of(2) {
                vec![]
            } else {
                vec!["ns-a".into(), "ns-b".into()]
            },
            hash: [byte; 32],
            created_at: 1_000 + byte as i64,
            expires_at,
            // Kept as given: the server writes and reads it.
            worker_limits: if byte.is_multiple_of(2) {
                "{}".into()
            } else {
                r#"{"names":"gpu-*","kinds":["render"]}"#.into()
            },
        }
    }

    /// Tokens by name; a taken name or hash stores nothing; deleting frees the name.
    pub async fn tokens_round_trip<S: Store>(s: &S) {
        assert!(s.tokens().await.unwrap().is_empty());
        let (b, a) = (
            token("b", "viewer", 1, None),
            token("a", "admin", 2, Some(9_000)),
        );
        assert!(s.insert_token(&b).await.unwrap());
        assert!(s.insert_token(&a).await.unwrap());
        assert_eq!(s.tokens().await.unwrap(), vec![a.clone(), b.clone()]);
        // Same name, or another name with the same hash: refused, nothing changes.
        assert!(!s
            .insert_token(&token("a", "worker", 3, None))
            .await
            .unwrap());
        assert!(!s
            .insert_token(&token("c", "worker", 1, None))
            .await
            .unwrap());
        assert_eq!(s.tokens().await.unwrap(), vec![a.clone(), b.clone()]);
        assert!(s.delete_token("a").await.unwrap());
        assert!(!s.delete_token("a").await.unwrap());
        assert_eq!(s.tokens().await.unwrap(), vec![b.clone()]);
        let again = token("a", "operator", 4, None);
        assert!(s.insert_token(&again).await.unwrap());
        assert_eq!(s.tokens().await.unwrap(), vec![again, b]);
    }

    fn delivery(id: &str, seq: u64, attempt: u32, at: i64) -> DeliveryRecord {
        DeliveryRecord {
            webhook_id: id.into(),
            seq,
            event: "task.succeeded".into(),
            attempt,
            status: (attempt > 1).then_some(500 + attempt as u16),
            error: (attempt == 1).then(|| "connection refused".to_string()),
            ok: attempt == 3,
            last: attempt == 3,
            at,
            duration_ms: 12,
        }
    }

    pub async fn deliveries_and_cursors<S: Store>(s: &S) {
        s.insert_webhook(&hook("a", 1)).await.unwrap();
        s.insert_webhook(&hook("b", 2)).await.unwrap();
        let first = vec![delivery("a", 42, 1, 100), delivery("b", 42, 1, 100)];
        s.record_deliveries(first, vec![("b".into(), 42), ("gone".into(), 9)])
            .await
            .unwrap();
        s.record_deliveries(
            vec![delivery("a", 42, 2, 200), delivery("a", 42, 3, 300)],
            vec![("a".into(), 42), ("b".into(), 7)],
        )
        .await
        .unwrap();
        s.record_deliveries(vec![], vec![]).await.unwrap();
        let a = s.deliveries("a", 10).await.unwrap();
        assert_eq!(
            a,
            vec![
                delivery("a", 42, 3, 300),
                delivery("a", 42, 2, 200),
                delivery("a", 42, 1, 100)
            ]
        );
        assert_eq!(s.deliveries("a", 1).await.unwrap().len(), 1);
        assert!(s.deliveries("zzz", 10).await.unwrap().is_empty());
        // Cursors only move forward.
        let cursors: BTreeMap<String, u64> = s
            .webhooks()
            .await
            .unwrap()
            .into_iter()
            .map(|w| (w.id, w.cursor))
            .collect();
        assert_eq!(cursors["a"], 42);
        assert_eq!(cursors["b"], 42);
        assert_eq!(s.prune_deliveries(150).await.unwrap(), 2);
        assert_eq!(s.deliveries("a", 10).await.unwrap().len(), 2);
        assert!(s.delete_webhook("a").await.unwrap());
        assert!(s.deliveries("a", 10).await.unwrap().is_empty());
    }

    pub async fn count_by_state<S: Store>(s: &S) {
        let mut tasks: Vec<TaskRecord> = (0..20u128)
            .map(|i| task(tid(i + 1), i as u64, noop_def("q"), TaskState::Queued))
            .collect();
        s.commit(tasks.iter().map(new).collect()).await.unwrap();
        assert_eq!(
            s.count_by_state(None).await.unwrap(),
            BTreeMap::from([(TaskState::Queued, 20)])
        );
        // Walk them through different paths, in several batches.
        for (i, t) in tasks.iter_mut().enumerate() {
            let path: &[TaskState] = match i % 4 {
                0 => &[
                    TaskState::Assigned,
                    TaskState::Running,
                    TaskState::Succeeded,
                ],
                1 => &[TaskState::Assigned, TaskState::Running],
                2 => &[TaskState::Cancelled],
                _ => &[],
            };
            for (step, st) in path.iter().enumerate() {
                t.state = *st;
                if step % 2 == 0 {
                    s.commit(vec![upd(t)]).await.unwrap();
                } else {
                    // The same state written twice is not counted twice.
                    s.commit(vec![upd(t), upd(t)]).await.unwrap();
                }
            }
        }
        let mut want = BTreeMap::new();
        for t in &tasks {
            *want.entry(t.state).or_insert(0u64) += 1;
        }
        assert_eq!(s.count_by_state(None).await.unwrap(), want);
        assert_eq!(
            want,
            BTreeMap::from([
                (TaskState::Queued, 5),
                (TaskState::Running, 5),
                (TaskState::Succeeded, 5),
                (TaskState::Cancelled, 5)
            ])
        );
    }

    /// Everything a batch would change, to compare before and after a failed commit.
    async fn dump<S: Store>(s: &S, ids: &[TaskId]) -> String {
        let mut out = String::new();
        for id in ids {
            out += &format!(
                "{:?}\n{:?}\n{:?}\n",
                s.task(*id).await.unwrap(),
                s.attempts(*id).await.unwrap(),
                s.logs(*id, 1).await.unwrap()
            );
        }
        let all = TaskQuery {
            namespaces: None,
            limit: 1000,
            ..TaskQuery::default()
        };
        out += &format!(
            "{:?}\n{:?}\n{:?}\n",
            s.list_tasks(&all).await.unwrap(),
            s.events_after(0, 1000).await.unwrap(),
            s.count_by_state(None).await.unwrap()
        );
        let snap = s.load_snapshot().await.unwrap();
        out += &format!(
            "{:?} {} {}",
            snap.tasks, snap.next_task_seq, snap.next_event_seq
        );
        out
    }

    pub async fn failed_batch_changes_nothing<S: Store>(s: &S) {
        let x = task(tid(1), 0, noop_def("q"), TaskState::Queued);
        s.commit(vec![new(&x), Write::Event(task_event(1, &x, None))])
            .await
            .unwrap();
        let y = task(tid(2), 1, exec_def("q"), TaskState::Queued);
        let x_running = TaskRecord {
            state: TaskState::Running,
            attempt: 1,
            ..x.clone()
        };
        let ids = [x.id, y.id, tid(3)];
        let before = dump(s, &ids).await;

        // Every write comes before the failing one, and several kinds follow it.
        let failing: Vec<Vec<Write>> = vec![
            // Insert of a task that exists.
            vec![
                new(&y),
                upd(&x_running),
                Write::Attempt(attempt(x.id, 1, "w")),
                Write::Event(task_event(2, &y, None)),
                log(x.id, 1, LogStream::Stdout, b"lost"),
                new(&x),
                Write::Event(task_event(3, &x, None)),
            ],
            // Update of a task that does not exist.
            vec![
                new(&y),
                Write::Attempt(attempt(y.id, 1, "w")),
                Write::Event(task_event(2, &y, None)),
                upd(&task(tid(3), 2, noop_def("q"), TaskState::Running)),
                log(y.id, 1, LogStream::Stdout, b"lost"),
            ],
            // An event sequence number already used.
            vec![
                new(&y),
                upd(&x_running),
                Write::Event(task_event(2, &y, None)),
                Write::Event(task_event(1, &y, None)),
            ],
            // The same one twice in the batch.
            vec![
                new(&y),
                Write::Event(task_event(2, &y, None)),
                Write::Event(task_event(2, &y, None)),
            ],
        ];
        for (i, batch) in failing.into_iter().enumerate() {
            let err = s.commit(batch).await.expect_err("the batch must fail");
            assert!(
                matches!(err, StoreError::Backend(_)),
                "batch {i}: unexpected error {err:?}"
            );
            assert_eq!(
                dump(s, &ids).await,
                before,
                "batch {i} left something behind"
            );
        }

        // The store is still usable afterwards.
        s.commit(vec![new(&y), Write::Event(task_event(2, &y, None))])
            .await
            .unwrap();
        assert_eq!(s.task(y.id).await.unwrap(), Some(y));
    }

    pub async fn empty_commit<S: Store>(s: &S) {
        s.commit(Vec::new()).await.unwrap();
        assert!(s.load_snapshot().await.unwrap().tasks.is_empty());
    }

    pub async fn concurrent_reads_and_commits<S: Store>(s: Arc<S>) {
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                for b in 0..50u128 {
                    let batch: Vec<Write> = (0..20u128)
                        .map(|i| {
                            let n = b * 20 + i + 1;
                            new(&task(tid(n), n as u64, noop_def("q"), TaskState::Queued))
                        })
                        .collect();
                    s.commit(batch).await.unwrap();
                }
            })
        };
        let mut readers = Vec::new();
        for r in 0..16 {
            let s = s.clone();
            readers.push(tokio::spawn(async move {
                let mut last = 0;
                for _ in 0..30 {
                    let q = TaskQuery {
                        namespaces: None,
                        limit: 5,
                        ..TaskQuery::default()
                    };
                    let page = s.list_tasks(&q).await.unwrap();
                    assert!(page.windows(2).all(|w| w[0].id > w[1].id));
                    // Commits are atomic: counts only ever move by whole batches.
                    let n = s
                        .count_by_state(None)
                        .await
                        .unwrap()
                        .get(&TaskState::Queued)
                        .copied()
                        .unwrap_or(0);
                    assert_eq!(n % 20, 0, "reader {r} saw a partial batch");
                    assert!(n >= last, "reader {r} went back in time");
                    last = n;
                    tokio::task::yield_now().await;
                }
            }));
        }
        writer.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
        assert_eq!(
            s.count_by_state(None).await.unwrap(),
            BTreeMap::from([(TaskState::Queued, 1000)])
        );
    }
}

// ---- serial and parallel execution (schema 0003) ----

pub mod flow_cases {
    use super::*;
    use drover_core::dag::{WorkflowNode, WorkflowRecord};
    use drover_core::{FlowRecord, FlowSpec, QueueConfig, Strategy, UpstreamPolicy};

    pub async fn flow_round_trip_and_snapshot<S: Store>(s: &S) {
        let up = task(tid(1), 0, exec_def("q"), TaskState::Running);
        let mut keyed_def = exec_def("q");
        keyed_def.idempotency_key = Some("k-1".into());
        let down = task(tid(2), 1, keyed_def, TaskState::Pending);
        let done = task(tid(3), 2, exec_def("q"), TaskState::Succeeded);
        let f = FlowRecord {
            task_id: tid(2),
            spec: FlowSpec {
                after: vec![tid(1), tid(3)],
                on_upstream_failure: UpstreamPolicy::Run,
                serial_key: Some("key".into()),
                deadline: Some(123),
                workflow: Some(("wf1".into(), "b".into())),
            },
            waiting: vec![tid(1)],
            upstream_failed: Some((tid(9), TaskState::Failed)),
            upstream_outputs: vec![("a".into(), "42".into())],
        };
        let done_flow = FlowRecord {
            task_id: tid(3),
            spec: FlowSpec::default(),
            waiting: vec![],
            upstream_failed: None,
            upstream_outputs: vec![],
        };
        let mut f_old = f.clone();
        f_old.waiting = vec![tid(1), tid(3)];
        let q = QueueConfig {
            namespace: "team-a".into(),
            name: "q".into(),
            concurrency: Some(3),
            paused: true,
            strategy: Some(Strategy::RoundRobin),
            weight: 7,
            rate: Some("250/m".parse().unwrap()),
            max_queued: Some(5_000),
        };
        let wf = WorkflowRecord {
            id: "wf1".into(),
            namespace: "team-a".into(),
            name: "build".into(),
            created_at: 77,
            nodes: vec![
                WorkflowNode {
                    name: "a".into(),
                    task_id: tid(1),
                    after: vec![],
                },
                WorkflowNode {
                    name: "b".into(),
                    task_id: tid(2),
                    after: vec!["a".into()],
                },
            ],
        };
        s.commit(vec![
            new(&up),
            new(&down),
            new(&done),
            // Later writes of the same task's flow replace earlier ones.
            Write::Flow(f_old),
            Write::Flow(f.clone()),
            Write::Flow(done_flow.clone()),
            Write::Queue(q.clone()),
            Write::Workflow(wf.clone()),
        ])
        .await
        .unwrap();
        assert_eq!(s.flow(tid(2)).await.unwrap(), Some(f.clone()));
        assert_eq!(s.flow(tid(3)).await.unwrap(), Some(done_flow));
        assert_eq!(s.flow(tid(4)).await.unwrap(), None);
        assert_eq!(s.queue_configs().await.unwrap(), vec![q.clone()]);
        assert_eq!(s.workflow("wf1").await.unwrap(), Some(wf.clone()));
        assert_eq!(s.workflow("nope").await.unwrap(), None);
        assert_eq!(s.workflows(10, None).await.unwrap(), vec![wf]);
        let snap = s.load_snapshot().await.unwrap();
        // Only flow records of active tasks.
        assert_eq!(snap.flows, vec![f]);
        assert_eq!(snap.queues, vec![q]);
        // Every stored key, in submission order (the core keeps the first of a key).
        assert_eq!(
            snap.idempotency_keys,
            vec![
                (Scoped::default_ns("key-1"), tid(1)),
                (Scoped::default_ns("k-1"), tid(2)),
                (Scoped::default_ns("key-1"), tid(3)),
            ]
        );
    }

    // ---- task retention ----

    /// Finish times in these tests are offsets from here: after every `tid`'s creation time
    /// (its UUIDv7 milliseconds), as for real tasks.
    const T0: i64 = 1_000_000_000;

    fn finished(id: TaskId, seq: u64, state: TaskState, at: i64) -> TaskRecord {
        TaskRecord {
            attempt: 1,
            finished_at: Some(T0 + at),
            ..task(id, seq, noop_def("q"), state)
        }
    }

    fn flow_of(id: TaskId, workflow: Option<(&str, &str)>) -> Write {
        Write::Flow(FlowRecord {
            task_id: id,
            spec: FlowSpec {
                serial_key: Some("k".into()),
                workflow: workflow.map(|(w, n)| (w.to_string(), n.to_string())),
                ..FlowSpec::default()
            },
            waiting: vec![],
            upstream_failed: None,
            upstream_outputs: vec![],
        })
    }

    fn ids_of(tasks: Vec<TaskRecord>) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = tasks.into_iter().map(|t| t.id).collect();
        ids.sort();
        ids
    }

    async fn all_ids<S: Store>(s: &S) -> Vec<TaskId> {
        ids_of(
            s.list_tasks(&TaskQuery {
                namespaces: None,
                limit: 1000,
                ..TaskQuery::default()
            })
            .await
            .unwrap(),
        )
    }

    pub async fn prune_tasks_removes_old_terminal_tasks_and_their_history<S: Store>(s: &S) {
        let old = finished(tid(1), 0, TaskState::Succeeded, 100);
        let recent = finished(tid(2), 1, TaskState::Failed, 10_000);
        // Active tasks stay whatever their times say (a retried task keeps `finished_at`).
        let running = full_running(tid(3), 2);
        assert!(running.finished_at < Some(T0 + 100));
        let pending = finished(tid(4), 3, TaskState::Pending, 50);
        let mut writes = vec![new(&old), new(&recent), new(&running), new(&pending)];
        for t in [&old, &recent, &running] {
            for n in 1..=2 {
                writes.push(Write::Attempt(attempt(t.id, n, "w")));
                writes.push(log(t.id, n, LogStream::Stdout, b"out"));
                writes.push(log(t.id, n, LogStream::Stderr, b"err"));
            }
            writes.push(flow_of(t.id, None));
        }
        writes.push(Write::Event(task_event(1, &old, None)));
        s.commit(writes).await.unwrap();

        assert_eq!(s.prune_tasks(i64::MAX, 0).await.unwrap().tasks, 0);
        assert_eq!(
            s.prune_tasks(T0 + 100, 10).await.unwrap().tasks,
            0,
            "strictly before"
        );
        assert_eq!(s.prune_tasks(T0 + 1_000, 10).await.unwrap().tasks, 1);
        assert_eq!(s.task(old.id).await.unwrap(), None);
        assert!(s.attempts(old.id).await.unwrap().is_empty());
        for n in 1..=2 {
            assert!(s.logs(old.id, n).await.unwrap().is_empty());
        }
        assert_eq!(s.flow(old.id).await.unwrap(), None);
        // Everything else is untouched.
        assert_eq!(s.task(recent.id).await.unwrap(), Some(recent.clone()));
        assert_eq!(s.task(running.id).await.unwrap(), Some(running.clone()));
        assert_eq!(s.task(pending.id).await.unwrap(), Some(pending.clone()));
        for t in [&recent, &running] {
            assert_eq!(s.attempts(t.id).await.unwrap().len(), 2);
            assert_eq!(s.logs(t.id, 1).await.unwrap().len(), 2);
            assert!(s.flow(t.id).await.unwrap().is_some());
        }
        assert_eq!(
            all_ids(s).await,
            vec![recent.id, running.id, pending.id],
            "listing"
        );
        assert_eq!(
            s.count_by_state(None).await.unwrap(),
            BTreeMap::from([
                (TaskState::Pending, 1),
                (TaskState::Running, 1),
                (TaskState::Failed, 1),
            ])
        );
        // Events are the event retention's business.
        assert_eq!(s.events_after(0, 10).await.unwrap().len(), 1);
        assert_eq!(s.prune_tasks(T0 + 1_000, 10).await.unwrap().tasks, 0);

        // Everything due, active tasks still not.
        assert_eq!(s.prune_tasks(i64::MAX, 10).await.unwrap().tasks, 1);
        assert_eq!(s.task(recent.id).await.unwrap(), None);
        assert!(s.logs(recent.id, 2).await.unwrap().is_empty());
        assert_eq!(all_ids(s).await, vec![running.id, pending.id]);
        let snap = s.load_snapshot().await.unwrap();
        assert_eq!(snap.tasks.len(), 2);
        assert_eq!(snap.next_task_seq, 4);
    }

    pub async fn prune_tasks_within_the_limit_until_none_is_due<S: Store>(s: &S) {
        // One task per terminal state; all but the first finished before 45. They go by
        // state, then oldest created first.
        let at = [50, 10, 40, 20, 30, 20];
        let tasks: Vec<TaskRecord> = at
            .iter()
            .enumerate()
            .map(|(i, &at)| {
                let state = TaskState::ALL
                    .into_iter()
                    .filter(|s| s.is_terminal())
                    .nth(i % 7);
                finished(tid(i as u128 + 1), i as u64, state.unwrap(), at)
            })
            .collect();
        s.commit(tasks.iter().map(new).collect()).await.unwrap();
        let remaining = |ix: &[usize]| {
            let mut v: Vec<TaskId> = ix.iter().map(|&i| tasks[i].id).collect();
            v.sort();
            v
        };
        assert_eq!(s.prune_tasks(T0 + 45, 2).await.unwrap().tasks, 2);
        assert_eq!(all_ids(s).await, remaining(&[0, 3, 4, 5]));
        assert_eq!(s.prune_tasks(T0 + 45, 2).await.unwrap().tasks, 2);
        assert_eq!(all_ids(s).await, remaining(&[0, 5]));
        // Fewer than the limit are due: the caller's signal to stop.
        assert_eq!(s.prune_tasks(T0 + 45, 2).await.unwrap().tasks, 1);
        assert_eq!(all_ids(s).await, remaining(&[0]));
        assert_eq!(s.prune_tasks(T0 + 45, 2).await.unwrap().tasks, 0);
        assert_eq!(s.prune_tasks(T0 + 51, usize::MAX).await.unwrap().tasks, 1);
        assert!(all_ids(s).await.is_empty());
        assert!(s
            .count_by_state(None)
            .await
            .unwrap()
            .values()
            .all(|n| *n == 0));
        // Numbering continues after the newest task is gone.
        assert_eq!(s.load_snapshot().await.unwrap().next_task_seq, 6);
    }

    pub async fn drained_workers_survive_in_the_snapshot<S: Store>(s: &S) {
        let drain = |name: &str, drained| Write::WorkerDrain {
            name: name.into(),
            drained,
        };
        s.commit(vec![drain("a", true), drain("b", true), drain("b", true)])
            .await
            .unwrap();
        s.commit(vec![drain("a", false), drain("c", true), drain("c", false)])
            .await
            .unwrap();
        let snap = s.load_snapshot().await.unwrap();
        assert_eq!(snap.drained_workers, vec!["b".to_string()]);
    }

    pub async fn prune_tasks_reports_idempotency_keys<S: Store>(s: &S) {
        let mut keyed = finished(tid(1), 0, TaskState::Succeeded, 10);
        keyed.def = Arc::new(TaskDef {
            idempotency_key: Some("order-42".into()),
            ..(*keyed.def).clone()
        });
        let plain = finished(tid(2), 1, TaskState::Failed, 10);
        s.commit(vec![new(&keyed), new(&plain)]).await.unwrap();
        let pruned = s.prune_tasks(T0 + 100, 10).await.unwrap();
        assert_eq!(pruned.tasks, 2);
        assert_eq!(
            pruned.keys,
            vec![(Scoped::default_ns("order-42"), keyed.id)]
        );
    }

    fn node(name: &str, id: TaskId) -> WorkflowNode {
        WorkflowNode {
            name: name.into(),
            task_id: id,
            after: vec![],
        }
    }

    /// The same queue, schedule and idempotency key in two namespaces are two things; reads
    /// filter by namespace.
    pub async fn namespaces_keep_names_apart<S: Store>(s: &S) {
        use drover_core::schedule::{Misfire, Overlap, ScheduleRecord, ScheduleSpec, Trigger};
        let def_in = |ns: &str| TaskDef {
            namespace: ns.into(),
            idempotency_key: Some("k".into()),
            ..exec_def("q")
        };
        let a = task(tid(1), 0, def_in("team-a"), TaskState::Queued);
        let b = task(tid(2), 1, def_in("team-b"), TaskState::Succeeded);
        let queue = |ns: &str, paused| QueueConfig {
            namespace: ns.into(),
            name: "q".into(),
            paused,
            ..QueueConfig::default()
        };
        let schedule = |ns: &str, every_ms| ScheduleRecord {
            spec: ScheduleSpec {
                name: "nightly".into(),
                trigger: Trigger::Every {
                    every_ms,
                    anchor: 0,
                },
                overlap: Overlap::Allow,
                misfire: Misfire::Skip,
                max_catch_up: 1,
                template: Arc::new(TaskDef {
                    namespace: ns.into(),
                    ..exec_def("q")
                }),
            },
            paused: false,
            created_at: 1,
            last_slot: None,
            last_task: None,
            next_at: None,
        };
        let wf = |id: &str, ns: &str| WorkflowRecord {
            namespace: ns.into(),
            ..workflow(id, 5, vec![])
        };
        s.commit(vec![
            new(&a),
            new(&b),
            Write::Queue(queue("team-a", true)),
            Write::Queue(queue("team-b", false)),
            Write::Schedule(schedule("team-a", 1_000)),
            Write::Schedule(schedule("team-b", 2_000)),
            Write::Workflow(wf("wf-a", "team-a")),
            Write::Workflow(wf("wf-b", "team-b")),
        ])
        .await
        .unwrap();
        s.commit(vec![Write::ScheduleDeleted(Scoped::new(
            "team-a", "nightly",
        ))])
        .await
        .unwrap();
        let snap = s.load_snapshot().await.unwrap();
        assert_eq!(
            snap.queues,
            vec![queue("team-a", true), queue("team-b", false)]
        );
        assert_eq!(snap.schedules, vec![schedule("team-b", 2_000)]);
        assert_eq!(
            snap.idempotency_keys,
            vec![
                (Scoped::new("team-a", "k"), a.id),
                (Scoped::new("team-b", "k"), b.id)
            ]
        );
        let only_b = Some(vec!["team-b".to_string()]);
        let listed = s
            .list_tasks(&TaskQuery {
                namespaces: only_b.clone(),
                limit: 10,
                ..TaskQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(listed, vec![b.clone()]);
        let counts = s.count_by_state(only_b.as_deref()).await.unwrap();
        assert_eq!(counts, BTreeMap::from([(TaskState::Succeeded, 1)]));
        assert_eq!(s.count_by_state(None).await.unwrap().len(), 2);
        let wfs = s.workflows(10, only_b.as_deref()).await.unwrap();
        assert_eq!(wfs, vec![wf("wf-b", "team-b")]);
        assert_eq!(s.task(a.id).await.unwrap().unwrap().def.namespace, "team-a");
    }

    fn workflow(id: &str, created_at: i64, nodes: Vec<WorkflowNode>) -> WorkflowRecord {
        WorkflowRecord {
            id: id.into(),
            namespace: "default".into(),
            name: format!("{id} name"),
            created_at,
            nodes,
        }
    }

    /// A task with two attempts, their logs, and its flow record (node `node` of `wf`).
    fn with_history(t: &TaskRecord, wf: Option<(&str, &str)>) -> Vec<Write> {
        let mut w = vec![new(t), flow_of(t.id, wf)];
        for n in 1..=2 {
            w.push(Write::Attempt(attempt(t.id, n, "w")));
            w.push(log(t.id, n, LogStream::Stdout, b"out"));
        }
        w
    }

    async fn assert_kept<S: Store>(s: &S, t: &TaskRecord) {
        assert_eq!(
            s.task(t.id).await.unwrap().as_ref(),
            Some(t),
            "task {}",
            t.id
        );
        assert_eq!(
            s.attempts(t.id).await.unwrap().len(),
            2,
            "attempts {}",
            t.id
        );
        assert_eq!(s.logs(t.id, 1).await.unwrap().len(), 1, "logs {}", t.id);
        assert!(s.flow(t.id).await.unwrap().is_some(), "flow {}", t.id);
    }

    async fn assert_gone<S: Store>(s: &S, id: TaskId) {
        assert_eq!(s.task(id).await.unwrap(), None, "task {id}");
        assert!(s.attempts(id).await.unwrap().is_empty(), "attempts {id}");
        for n in 1..=2 {
            assert!(s.logs(id, n).await.unwrap().is_empty(), "logs {id}");
        }
        assert_eq!(s.flow(id).await.unwrap(), None, "flow {id}");
    }

    pub async fn prune_tasks_keeps_a_workflow_until_every_node_is_due<S: Store>(s: &S) {
        let a = finished(tid(1), 0, TaskState::Succeeded, 10);
        let b = finished(tid(2), 1, TaskState::Failed, 5_000);
        let plain = finished(tid(3), 2, TaskState::Succeeded, 10);
        let wf = workflow("wf", 1, vec![node("a", a.id), node("b", b.id)]);
        let mut writes = with_history(&a, Some(("wf", "a")));
        writes.extend(with_history(&b, Some(("wf", "b"))));
        writes.extend(with_history(&plain, None));
        writes.push(Write::Workflow(wf.clone()));
        s.commit(writes).await.unwrap();

        // a is past the cutoff, b is not: only the task of no workflow goes.
        assert_eq!(s.prune_tasks(T0 + 1_000, 100).await.unwrap().tasks, 1);
        assert_gone(s, plain.id).await;
        assert_kept(s, &a).await;
        assert_kept(s, &b).await;
        assert_eq!(s.workflow("wf").await.unwrap(), Some(wf.clone()));
        assert_eq!(s.prune_tasks(T0 + 5_000, 100).await.unwrap().tasks, 0);
        assert_eq!(s.workflow("wf").await.unwrap(), Some(wf));

        // Both are: the workflow goes, whole.
        let pruned = s.prune_tasks(T0 + 5_001, 100).await.unwrap();
        assert_eq!(pruned.tasks, 2);
        assert_gone(s, a.id).await;
        assert_gone(s, b.id).await;
        assert_eq!(s.workflow("wf").await.unwrap(), None);
        assert!(s.workflows(10, None).await.unwrap().is_empty());
        assert!(all_ids(s).await.is_empty());
        assert_eq!(s.prune_tasks(i64::MAX, 100).await.unwrap().tasks, 0);
    }

    pub async fn prune_tasks_never_prunes_a_workflow_with_an_active_node<S: Store>(s: &S) {
        let old = finished(tid(1), 0, TaskState::Succeeded, 10);
        // A retried task keeps its old `finished_at`.
        let running = full_running(tid(2), 1);
        let queued = task(tid(3), 2, noop_def("q"), TaskState::Queued);
        let w1 = workflow(
            "wf-1",
            1,
            vec![node("old", old.id), node("run", running.id)],
        );
        let old2 = finished(tid(4), 3, TaskState::Failed, 10);
        let w2 = workflow("wf-2", 2, vec![node("old", old2.id), node("q", queued.id)]);
        // Every current node of wf-3 is due, but another task of it (not in the doc) is active.
        let old3 = finished(tid(5), 4, TaskState::Succeeded, 10);
        let other = task(tid(6), 5, noop_def("q"), TaskState::Pending);
        let w3 = workflow("wf-3", 3, vec![node("old", old3.id)]);
        // And the other way round: a current node of wf-4 is active, though no flow record
        // names wf-4 for it.
        let old4 = finished(tid(7), 6, TaskState::Succeeded, 10);
        let unnamed = task(tid(8), 7, noop_def("q"), TaskState::Queued);
        let w4 = workflow("wf-4", 4, vec![node("old", old4.id), node("q", unnamed.id)]);
        let mut writes = with_history(&old, Some(("wf-1", "old")));
        writes.extend(with_history(&running, Some(("wf-1", "run"))));
        writes.extend(with_history(&old2, Some(("wf-2", "old"))));
        writes.extend(with_history(&queued, Some(("wf-2", "q"))));
        writes.extend(with_history(&old3, Some(("wf-3", "old"))));
        writes.extend(with_history(&other, Some(("wf-3", "old"))));
        writes.extend(with_history(&old4, Some(("wf-4", "old"))));
        writes.extend(with_history(&unnamed, None));
        writes.extend([w1.clone(), w2.clone(), w3.clone(), w4.clone()].map(Write::Workflow));
        s.commit(writes).await.unwrap();

        assert_eq!(
            s.prune_tasks(i64::MAX, 100).await.unwrap(),
            Default::default()
        );
        for t in [
            &old, &running, &old2, &queued, &old3, &other, &old4, &unnamed,
        ] {
            assert_kept(s, t).await;
        }
        assert_eq!(s.workflows(10, None).await.unwrap(), vec![w4, w3, w2, w1]);
    }

    pub async fn prune_tasks_prunes_a_rerun_workflow_with_its_earlier_runs<S: Store>(s: &S) {
        // Node x failed (x1) and was rerun (x2); node y succeeded and was kept by the rerun.
        let mut x1 = finished(tid(1), 0, TaskState::Failed, 10);
        x1.def = Arc::new(TaskDef {
            idempotency_key: Some("first-run".into()),
            ..(*x1.def).clone()
        });
        let y = finished(tid(2), 1, TaskState::Succeeded, 20);
        let x2 = finished(tid(3), 2, TaskState::Succeeded, 3_000);
        let wf = workflow("wf", 1, vec![node("x", x2.id), node("y", y.id)]);
        let mut writes = with_history(&x1, Some(("wf", "x")));
        writes.extend(with_history(&y, Some(("wf", "y"))));
        writes.extend(with_history(&x2, Some(("wf", "x"))));
        writes.push(Write::Workflow(wf.clone()));
        s.commit(writes).await.unwrap();

        // x1 and y are past the cutoff but x2 is not: none goes, not even the replaced x1.
        assert_eq!(
            s.prune_tasks(T0 + 1_000, 100).await.unwrap(),
            Default::default()
        );
        for t in [&x1, &y, &x2] {
            assert_kept(s, t).await;
        }
        assert_eq!(s.workflow("wf").await.unwrap(), Some(wf));

        let pruned = s.prune_tasks(T0 + 3_001, 100).await.unwrap();
        assert_eq!(pruned.tasks, 3);
        assert_eq!(pruned.keys, vec![(Scoped::default_ns("first-run"), x1.id)]);
        for t in [&x1, &y, &x2] {
            assert_gone(s, t.id).await;
        }
        assert_eq!(s.workflow("wf").await.unwrap(), None);
    }

    pub async fn prune_tasks_prunes_workflows_whole<S: Store>(s: &S) {
        // wf-done: both nodes old and terminal. wf-live: one node still active.
        // wf-rerun: an old run's node was replaced by a recent one.
        let a = finished(tid(1), 0, TaskState::Succeeded, 10);
        let b = finished(tid(2), 1, TaskState::Failed, 20);
        let c = finished(tid(3), 2, TaskState::Succeeded, 30);
        let d = task(tid(4), 3, noop_def("q"), TaskState::Queued);
        let e = finished(tid(5), 4, TaskState::Failed, 40);
        let f = finished(tid(6), 5, TaskState::Succeeded, 5_000);
        let plain = finished(tid(7), 6, TaskState::Cancelled, 50);
        let done = workflow("wf-done", 1, vec![node("a", a.id), node("b", b.id)]);
        let live = workflow("wf-live", 1, vec![node("c", c.id), node("d", d.id)]);
        let rerun = workflow("wf-rerun", 1, vec![node("e", f.id)]);
        s.commit(vec![
            new(&a),
            new(&b),
            new(&c),
            new(&d),
            new(&e),
            new(&f),
            new(&plain),
            flow_of(a.id, Some(("wf-done", "a"))),
            flow_of(b.id, Some(("wf-done", "b"))),
            flow_of(c.id, Some(("wf-live", "c"))),
            flow_of(d.id, Some(("wf-live", "d"))),
            flow_of(e.id, Some(("wf-rerun", "e"))),
            flow_of(f.id, Some(("wf-rerun", "e"))),
            flow_of(plain.id, None),
            Write::Workflow(done.clone()),
            Write::Workflow(live.clone()),
            Write::Workflow(rerun.clone()),
        ])
        .await
        .unwrap();
        // wf-done goes whole although that takes the count past the limit; the rest waits
        // for the next call.
        assert_eq!(s.prune_tasks(T0 + 1_000, 1).await.unwrap().tasks, 2);
        assert_eq!(all_ids(s).await, vec![c.id, d.id, e.id, f.id, plain.id]);
        assert_eq!(s.workflow("wf-done").await.unwrap(), None);
        // Of the old tasks that are left only the one of no workflow is due.
        assert_eq!(s.prune_tasks(T0 + 1_000, 100).await.unwrap().tasks, 1);
        assert_eq!(all_ids(s).await, vec![c.id, d.id, e.id, f.id]);
        assert_eq!(s.workflow("wf-live").await.unwrap(), Some(live.clone()));
        assert_eq!(s.workflow("wf-rerun").await.unwrap(), Some(rerun.clone()));
        assert_eq!(s.workflows(10, None).await.unwrap().len(), 2);
        assert_eq!(s.prune_tasks(T0 + 10_000, 100).await.unwrap().tasks, 2);
        assert_eq!(all_ids(s).await, vec![c.id, d.id]);
        assert_eq!(s.workflow("wf-rerun").await.unwrap(), None);
        assert_eq!(s.flow(e.id).await.unwrap(), None);
        assert_eq!(s.workflows(10, None).await.unwrap(), vec![live]);
    }

    pub async fn prune_tasks_shares_the_limit_with_whole_workflows<S: Store>(s: &S) {
        // wf-empty: its nodes are gone already (pruned one by one by an earlier build).
        let empty = workflow("wf-empty", 1, vec![node("x", tid(99))]);
        let w1 = [1, 2, 3].map(|n| finished(tid(n), n as u64, TaskState::Succeeded, 10));
        let w2 = [4, 5].map(|n| finished(tid(n), n as u64, TaskState::Failed, 10));
        let wf1 = workflow(
            "wf-1",
            2,
            w1.iter().map(|t| node(&t.id.to_string(), t.id)).collect(),
        );
        let wf2 = workflow(
            "wf-2",
            3,
            w2.iter().map(|t| node(&t.id.to_string(), t.id)).collect(),
        );
        // A flow record naming a workflow that is not stored: a task of no workflow.
        let orphan = finished(tid(6), 6, TaskState::Succeeded, 10);
        let plain = finished(tid(7), 7, TaskState::Succeeded, 10);
        let mut writes = vec![
            Write::Workflow(empty),
            Write::Workflow(wf1),
            Write::Workflow(wf2),
            new(&orphan),
            flow_of(orphan.id, Some(("wf-unknown", "o"))),
            new(&plain),
        ];
        for t in &w1 {
            writes.push(new(t));
            writes.push(flow_of(t.id, Some(("wf-1", "n"))));
        }
        for t in &w2 {
            writes.push(new(t));
            writes.push(flow_of(t.id, Some(("wf-2", "n"))));
        }
        s.commit(writes).await.unwrap();
        let workflow_ids = |v: Vec<WorkflowRecord>| {
            let mut ids: Vec<String> = v.into_iter().map(|w| w.id).collect();
            ids.sort();
            ids
        };

        // Oldest first: wf-empty (no task), then wf-1 whole.
        assert_eq!(s.prune_tasks(T0 + 100, 2).await.unwrap().tasks, 3);
        assert_eq!(
            workflow_ids(s.workflows(10, None).await.unwrap()),
            vec!["wf-2"]
        );
        assert_eq!(all_ids(s).await, vec![tid(4), tid(5), tid(6), tid(7)]);
        assert_eq!(s.prune_tasks(T0 + 100, 2).await.unwrap().tasks, 2);
        assert!(s.workflows(10, None).await.unwrap().is_empty());
        assert_eq!(all_ids(s).await, vec![tid(6), tid(7)]);
        assert_eq!(s.prune_tasks(T0 + 100, 1).await.unwrap().tasks, 1);
        assert_eq!(s.prune_tasks(T0 + 100, 2).await.unwrap().tasks, 1);
        assert!(all_ids(s).await.is_empty());
        assert_eq!(s.flow(orphan.id).await.unwrap(), None);
        assert_eq!(s.prune_tasks(T0 + 100, 2).await.unwrap().tasks, 0);
    }
}

// ---- leadership ----

pub mod leadership_cases {
    use super::*;
    use std::time::Duration;

    /// One member, every store: election, renewal, resignation and the fence on `commit`
    /// and the pruning paths. (Several members on one PostgreSQL: tests/leadership.rs.)
    pub async fn leadership_fences_writes<S: Store>(s: &S) {
        let me = Member {
            name: "a".into(),
            address: "https://a:7070".into(),
        };
        let lease = Duration::from_secs(30);
        // Nobody ever led: writes are not fenced (a server that does not use leadership).
        let t1 = task(tid(1), 0, noop_def("q"), TaskState::Queued);
        s.commit(vec![new(&t1), Write::Event(task_event(1, &t1, None))])
            .await
            .unwrap();
        let v = s.cluster().await.unwrap();
        assert_eq!((v.epoch, v.leader, v.members.len()), (0, None, 0));

        s.heartbeat(&me).await.unwrap();
        let e1 = s.elect(&me, lease).await.unwrap().expect("a free lease");
        assert!(e1 >= 1);
        let v = s.cluster().await.unwrap();
        assert_eq!((v.epoch, v.leader.as_deref()), (e1, Some("a")));
        let left = v.lease_expires_in.unwrap();
        assert!(left > Duration::from_secs(20) && left <= lease, "{v:?}");
        assert!(v.lease_age.unwrap() < Duration::from_secs(10), "{v:?}");
        assert!(v.leader_for.unwrap() < Duration::from_secs(10), "{v:?}");
        assert_eq!(v.members.len(), 1);
        let m = &v.members[0];
        assert_eq!(
            (m.name.as_str(), m.address.as_str()),
            ("a", "https://a:7070")
        );
        assert_eq!((m.role, m.stale), (Role::Leader, false));
        assert!(m.last_seen < Duration::from_secs(10) && m.up_for < Duration::from_secs(10));

        let t2 = task(tid(2), 1, noop_def("q"), TaskState::Queued);
        s.commit(vec![new(&t2)]).await.unwrap();
        assert!(s.renew(e1, lease).await.unwrap());
        assert!(!s.renew(e1 + 1, lease).await.unwrap());

        // Resigned: the lease is free, and this store's writes are fenced.
        s.resign(e1).await.unwrap();
        assert!(!s.renew(e1, lease).await.unwrap());
        let v = s.cluster().await.unwrap();
        assert_eq!((v.epoch, v.leader, v.lease_expires_in), (e1, None, None));
        assert_eq!(v.members[0].role, Role::Standby);
        let t3 = task(tid(3), 2, noop_def("q"), TaskState::Queued);
        let fenced = |r: Result<_, StoreError>| match r {
            Err(StoreError::Fenced { ours, current }) => assert_eq!((ours, current), (e1, e1)),
            other => panic!("not fenced: {other:?}"),
        };
        fenced(s.commit(vec![new(&t3)]).await);
        fenced(s.prune_events(i64::MAX).await.map(|_| ()));
        fenced(s.prune_tasks(i64::MAX, 10).await.map(|_| ()));
        assert_eq!(s.task(t3.id).await.unwrap(), None);
        assert_eq!(s.events_after(0, 10).await.unwrap().len(), 1);

        // Elected again: a newer epoch, and writes go through.
        let e2 = s.elect(&me, lease).await.unwrap().expect("a free lease");
        assert!(e2 > e1);
        s.commit(vec![new(&t3)]).await.unwrap();
        assert_eq!(s.task(t3.id).await.unwrap(), Some(t3));
        assert_eq!(s.cluster().await.unwrap().epoch, e2);
    }
}

// ---- SQLite only ----

mod sqlite_only {
    use super::*;

    /// A database at schema 4 from a build whose 0004 lacked `task_flow.upstream_outputs`
    /// gets the column when opened.
    #[tokio::test]
    async fn a_missing_upstream_outputs_column_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("ALTER TABLE task_flow DROP COLUMN upstream_outputs")
            .unwrap();
        drop(c);
        let s = SqliteStore::open(&path).unwrap();
        let t = task(tid(1), 0, exec_def("q"), TaskState::Pending);
        let f = drover_core::FlowRecord {
            task_id: tid(1),
            spec: drover_core::FlowSpec::default(),
            waiting: vec![],
            upstream_failed: None,
            upstream_outputs: vec![("a".into(), "1".into())],
        };
        s.commit(vec![new(&t), Write::Flow(f.clone())])
            .await
            .unwrap();
        assert_eq!(s.flow(tid(1)).await.unwrap(), Some(f));
    }

    #[tokio::test]
    async fn durable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        let t = full_running(tid(1), 41);
        let done = task(tid(2), 42, exec_def("q"), TaskState::Failed);
        let a = AttemptRecord {
            outcome: None,
            ..attempt(t.id, 3, "w")
        };
        let ev = task_event(9, &t, Some("why"));
        {
            let s = SqliteStore::open(&path).unwrap();
            s.commit(vec![
                new(&t),
                new(&done),
                Write::Attempt(a.clone()),
                Write::Event(ev.clone()),
                log(t.id, 3, LogStream::Stderr, b"err"),
            ])
            .await
            .unwrap();
        }
        // Reopen twice: migrations are idempotent.
        for _ in 0..2 {
            let s = SqliteStore::open(&path).unwrap();
            let snap = s.load_snapshot().await.unwrap();
            assert_eq!(snap.tasks, vec![(stand_in(&t), Some(a.clone()))]);
            assert_eq!(snap.next_task_seq, 43);
            assert_eq!(snap.next_event_seq, 10);
            assert_eq!(s.task(done.id).await.unwrap(), Some(done.clone()));
            assert_eq!(s.events_after(0, 10).await.unwrap(), vec![ev.clone()]);
            assert_eq!(s.logs(t.id, 3).await.unwrap().len(), 1);
            assert_eq!(
                s.count_by_state(None).await.unwrap(),
                BTreeMap::from([(TaskState::Running, 1), (TaskState::Failed, 1)])
            );
        }
    }

    #[tokio::test]
    async fn pragmas_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        let mode: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        // Every migration script is applied.
        let scripts = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/sqlite/migrations"
        ))
        .unwrap()
        .count();
        assert_eq!(v as usize, scripts);

        // A database from a newer build is refused, not silently used.
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[tokio::test]
    async fn undecodable_rows_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        let s = SqliteStore::open(&path).unwrap();
        let t = task(tid(1), 0, exec_def("q"), TaskState::Queued);
        let u = task(tid(2), 1, exec_def("q"), TaskState::Queued);
        s.commit(vec![new(&t), new(&u)]).await.unwrap();
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "UPDATE tasks SET state = 'sleeping' WHERE id = ?1",
            [&t.id.0.to_be_bytes()[..]],
        )
        .unwrap();
        c.execute(
            "UPDATE tasks SET spec = '{\"type\":\"shell\"}' WHERE id = ?1",
            [&u.id.0.to_be_bytes()[..]],
        )
        .unwrap();
        for id in [t.id, u.id] {
            let err = s.task(id).await.unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        }
        // Events of unknown states, and of a kind without its required column.
        for (seq, sql) in [
            (
                1,
                "UPDATE events SET worker_state = 'sleeping' WHERE seq = 1",
            ),
            (2, "UPDATE events SET state = 'sleeping' WHERE seq = 2"),
            (3, "UPDATE events SET state = 'rescheduled' WHERE seq = 3"),
            (4, "UPDATE events SET schedule = NULL WHERE seq = 4"),
        ] {
            let kind = match seq {
                1 => EventKind::Worker {
                    name: "w".into(),
                    state: WorkerEventState::Suspect,
                },
                2 => EventKind::Workflow {
                    workflow_id: "wf".into(),
                    namespace: "default".into(),
                    state: WorkflowState::Running,
                },
                _ => EventKind::Schedule {
                    namespace: "default".into(),
                    name: "s".into(),
                    change: ScheduleChange::Fired,
                    task_id: Some(t.id),
                    reason: None,
                },
            };
            let ev = Event { seq, at: 1, kind };
            s.commit(vec![Write::Event(ev.clone())]).await.unwrap();
            assert_eq!(s.events_after(seq - 1, 1).await.unwrap(), vec![ev]);
            c.execute(sql, []).unwrap();
            let err = s.events_after(seq - 1, 1).await.unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{sql}: {err:?}");
        }
        assert!(matches!(
            s.load_snapshot().await.unwrap_err(),
            StoreError::Corrupt(_)
        ));
    }

    #[tokio::test]
    async fn reads_do_not_wait_for_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        let s = SqliteStore::open(&path).unwrap();
        let t = task(tid(1), 0, noop_def("q"), TaskState::Queued);
        s.commit(vec![new(&t)]).await.unwrap();
        // Another connection holds the write lock: a commit would have to wait, reads not.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("BEGIN IMMEDIATE; UPDATE tasks SET attempt = 5;")
            .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(s.task(t.id).await.unwrap(), Some(t.clone()));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        c.execute_batch("ROLLBACK").unwrap();
    }
}

mod audit_cases {
    use drover_store::{AuditQuery, AuditRecord, Store};

    fn rec(at: i64, token: Option<&str>, status: u16) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at,
            token: token.map(str::to_string),
            role: token.map(|_| "admin".to_string()),
            remote: "127.0.0.1:5000".into(),
            operation: "POST /v1/tasks/{id}/cancel".into(),
            object: format!("/v1/tasks/{at}/cancel"),
            status,
        }
    }

    pub async fn audit_log_filters_pages_and_prunes<S: Store>(s: &S) {
        s.append_audit(vec![]).await.unwrap();
        let batch = vec![
            rec(100, Some("ci"), 200),
            rec(200, None, 401),
            rec(300, Some("ci"), 403),
        ];
        s.append_audit(batch).await.unwrap();
        s.append_audit(vec![rec(400, Some("ops"), 201)])
            .await
            .unwrap();
        let all = |limit| AuditQuery {
            limit,
            ..AuditQuery::default()
        };
        let got = s.audit(&all(10)).await.unwrap();
        let ats: Vec<i64> = got.iter().map(|r| r.at).collect();
        assert_eq!(ats, vec![400, 300, 200, 100], "newest first");
        assert!(got.windows(2).all(|w| w[0].seq > w[1].seq), "seqs increase");
        assert_eq!(got[2].token, None);
        assert_eq!(got[2].status, 401);
        assert_eq!(got[3].object, "/v1/tasks/100/cancel");
        let ci = AuditQuery {
            token: Some("ci".into()),
            ..all(10)
        };
        let ci: Vec<i64> = s.audit(&ci).await.unwrap().iter().map(|r| r.at).collect();
        assert_eq!(ci, vec![300, 100]);
        let since = AuditQuery {
            since: Some(250),
            ..all(10)
        };
        assert_eq!(s.audit(&since).await.unwrap().len(), 2);
        let page = s.audit(&all(2)).await.unwrap();
        let next = AuditQuery {
            before: Some(page[1].seq),
            ..all(2)
        };
        let next: Vec<i64> = s.audit(&next).await.unwrap().iter().map(|r| r.at).collect();
        assert_eq!(next, vec![200, 100]);
        assert_eq!(s.prune_audit(250).await.unwrap(), 2);
        let left: Vec<i64> = s
            .audit(&all(10))
            .await
            .unwrap()
            .iter()
            .map(|r| r.at)
            .collect();
        assert_eq!(left, vec![400, 300]);
    }
}

// ---- PostgreSQL only ----

mod postgres_only {
    use super::*;

    /// A connection of the test's own to the scratch schema, for what the store does not do.
    async fn psql(url: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    fn scripts() -> usize {
        std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/postgres/migrations"
        ))
        .unwrap()
        .count()
    }

    /// Servers starting at once on a fresh schema: every one opens it, and it is migrated
    /// exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_starts_migrate_once() {
        let Some(base) = pg_base_url() else { return };
        let schema = TempSchema::create(&base).await.unwrap();
        let url = schema.url().to_string();
        let opens = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect_with(&url, 1).await })
        });
        let stores: Vec<PgStore> = futures::future::join_all(opens)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        let c = psql(&url).await;
        let versions: Vec<i64> = c
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, (1..=scripts() as i64).collect::<Vec<_>>());
        // Each one works on the same tables.
        for (i, s) in stores.iter().enumerate() {
            let t = task(
                tid(i as u128 + 1),
                i as u64,
                noop_def("q"),
                TaskState::Queued,
            );
            s.commit(vec![new(&t)]).await.unwrap();
        }
        assert_eq!(
            stores[0].count_by_state(None).await.unwrap(),
            BTreeMap::from([(TaskState::Queued, 4)])
        );
        drop((stores, c));
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn durable_across_reopen_and_newer_schemas_refused() {
        let Some(base) = pg_base_url() else { return };
        let schema = TempSchema::create(&base).await.unwrap();
        let t = full_running(tid(1), 41);
        let done = task(tid(2), 42, exec_def("q"), TaskState::Failed);
        let a = AttemptRecord {
            outcome: None,
            ..attempt(t.id, 3, "w")
        };
        let ev = task_event(9, &t, Some("why"));
        {
            let s = PgStore::connect_with(schema.url(), 1).await.unwrap();
            s.commit(vec![
                new(&t),
                new(&done),
                Write::Attempt(a.clone()),
                Write::Event(ev.clone()),
                log(t.id, 3, LogStream::Stderr, b"err"),
            ])
            .await
            .unwrap();
        }
        // Reopen twice: migrations are idempotent.
        for _ in 0..2 {
            let s = PgStore::connect_with(schema.url(), 1).await.unwrap();
            let snap = s.load_snapshot().await.unwrap();
            assert_eq!(snap.tasks, vec![(stand_in(&t), Some(a.clone()))]);
            assert_eq!(snap.next_task_seq, 43);
            assert_eq!(snap.next_event_seq, 10);
            assert_eq!(s.task(done.id).await.unwrap(), Some(done.clone()));
            assert_eq!(s.events_after(0, 10).await.unwrap(), vec![ev.clone()]);
            assert_eq!(s.logs(t.id, 3).await.unwrap().len(), 1);
            assert_eq!(
                s.count_by_state(None).await.unwrap(),
                BTreeMap::from([(TaskState::Running, 1), (TaskState::Failed, 1)])
            );
        }
        // A database from a newer build is refused, not silently used.
        let c = psql(schema.url()).await;
        c.execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
            .await
            .unwrap();
        let err = PgStore::connect_with(schema.url(), 1).await.unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        drop(c);
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_schema_is_explained() {
        let Some(base) = pg_base_url() else { return };
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3Ddrover_no_such_schema");
        let err = PgStore::connect_with(&url, 1).await.unwrap_err();
        assert!(err.to_string().contains("CREATE SCHEMA"), "{err}");
        let err = PgStore::connect("postgres://127.0.0.1:1/x")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn undecodable_rows_are_corrupt() {
        let Some(f) = pg_store().await else { return };
        let url = f.schema.as_ref().unwrap().url().to_string();
        run(f, |s| async move {
            let t = task(tid(1), 0, exec_def("q"), TaskState::Queued);
            let u = task(tid(2), 1, exec_def("q"), TaskState::Queued);
            s.commit(vec![new(&t), new(&u)]).await.unwrap();
            let c = psql(&url).await;
            let id = |t: &TaskRecord| uuid::Uuid::from_u128(t.id.0);
            c.execute(
                "UPDATE tasks SET state = 'sleeping' WHERE id = $1",
                &[&id(&t)],
            )
            .await
            .unwrap();
            c.execute(
                "UPDATE tasks SET spec = '{\"type\":\"shell\"}' WHERE id = $1",
                &[&id(&u)],
            )
            .await
            .unwrap();
            for id in [t.id, u.id] {
                let err = s.task(id).await.unwrap_err();
                assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
            }
            let ev = Event {
                seq: 1,
                at: 1,
                kind: EventKind::Worker {
                    name: "w".into(),
                    state: WorkerEventState::Suspect,
                },
            };
            s.commit(vec![Write::Event(ev)]).await.unwrap();
            c.execute("UPDATE events SET worker_state = 'sleeping'", &[])
                .await
                .unwrap();
            let err = s.events_after(0, 1).await.unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
            assert!(matches!(
                s.load_snapshot().await.unwrap_err(),
                StoreError::Corrupt(_)
            ));
        })
        .await;
    }

    /// PostgreSQL's text holds no NUL: free text a worker reported keeps a U+FFFD in its
    /// place, and the commit goes through.
    #[tokio::test]
    async fn a_nul_in_free_text_does_not_fail_the_commit() {
        let Some(f) = pg_store().await else { return };
        run(f, |s| async move {
            let t = TaskRecord {
                error: Some("bad\0byte".into()),
                ..task(tid(1), 0, noop_def("q"), TaskState::Failed)
            };
            let a = AttemptRecord {
                error: Some("\0".into()),
                ..attempt(t.id, 1, "w")
            };
            let ev = task_event(1, &t, Some("why\0"));
            s.commit(vec![new(&t), Write::Attempt(a), Write::Event(ev)])
                .await
                .unwrap();
            let got = s.task(t.id).await.unwrap().unwrap();
            assert_eq!(got.error.as_deref(), Some("bad\u{fffd}byte"));
            assert_eq!(
                s.attempts(t.id).await.unwrap()[0].error.as_deref(),
                Some("\u{fffd}")
            );
            let EventKind::Task { reason, .. } = &s.events_after(0, 1).await.unwrap()[0].kind
            else {
                panic!("not a task event");
            };
            assert_eq!(reason.as_deref(), Some("why\u{fffd}"));
        })
        .await;
    }

    /// The statements of a commit are pipelined: the error is the one that failed it, not
    /// the "transaction is aborted" of those sent after it.
    #[tokio::test]
    async fn a_failed_batch_names_its_cause() {
        let Some(f) = pg_store().await else { return };
        run(f, |s| async move {
            let x = task(tid(1), 0, noop_def("q"), TaskState::Queued);
            s.commit(vec![new(&x), Write::Event(task_event(1, &x, None))])
                .await
                .unwrap();
            let y = task(tid(2), 1, noop_def("q"), TaskState::Queued);
            let err = s
                .commit(vec![
                    new(&y),
                    Write::Event(task_event(1, &y, None)),
                    log(y.id, 1, LogStream::Stdout, b"x"),
                    Write::Attempt(attempt(y.id, 1, "w")),
                ])
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("events") && err.contains("23505"), "{err}");
            let ghost = task(tid(3), 2, noop_def("q"), TaskState::Running);
            let err = s
                .commit(vec![upd(&ghost), Write::Event(task_event(2, &ghost, None))])
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown task"), "{err}");
        })
        .await;
    }

    /// Readers see the last committed state and never wait for a transaction in progress.
    #[tokio::test]
    async fn reads_do_not_wait_for_a_commit() {
        let Some(f) = pg_store().await else { return };
        let url = f.schema.as_ref().unwrap().url().to_string();
        run(f, |s| async move {
            let t = task(tid(1), 0, noop_def("q"), TaskState::Queued);
            s.commit(vec![new(&t)]).await.unwrap();
            let c = psql(&url).await;
            c.batch_execute("BEGIN; UPDATE tasks SET attempt = 5;")
                .await
                .unwrap();
            let started = std::time::Instant::now();
            assert_eq!(s.task(t.id).await.unwrap(), Some(t.clone()));
            assert_eq!(
                s.list_tasks(&TaskQuery {
                    limit: 5,
                    ..TaskQuery::default()
                })
                .await
                .unwrap()
                .len(),
                1
            );
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            c.batch_execute("ROLLBACK").await.unwrap();
        })
        .await;
    }
}

/// The core keeps no task body: its writes after a task's insert carry the stand-in, and
/// broadcast copies made later are inserted with it.
pub mod body_cases {
    use super::*;
    use drover_core::Shard;

    fn lean(t: &TaskRecord) -> TaskRecord {
        TaskRecord {
            def: Arc::new(t.def.lean()),
            ..t.clone()
        }
    }

    pub async fn lean_updates_keep_the_body<S: Store>(s: &S) {
        // Inserted and updated in one batch, then updated in another.
        let t = task(tid(1), 0, exec_def("q"), TaskState::Queued);
        let assigned = TaskRecord {
            state: TaskState::Assigned,
            attempt: 1,
            worker: Some("w".into()),
            lease: Some(LeaseToken(9)),
            ..lean(&t)
        };
        s.commit(vec![new(&t), upd(&assigned)]).await.unwrap();
        let running = TaskRecord {
            state: TaskState::Running,
            ..assigned.clone()
        };
        s.commit(vec![upd(&running)]).await.unwrap();
        let want = TaskRecord {
            def: t.def.clone(),
            ..running
        };
        assert_eq!(s.task(tid(1)).await.unwrap(), Some(want));
    }

    fn copy_of(group: &TaskRecord, id: TaskId, index: u32) -> TaskRecord {
        let mut def = group.def.lean();
        def.placement.shard = Some(Shard {
            group: group.id,
            index,
            count: 3,
            worker: format!("w{index}"),
        });
        task(id, u64::from(index) + 10, def, TaskState::Queued)
    }

    pub async fn copies_take_their_tasks_body<S: Store>(s: &S) {
        let parent = task(tid(1), 0, exec_def("q"), TaskState::Queued);
        // A copy in the batch of its task's insert, and one in a later batch.
        let first = copy_of(&parent, tid(2), 1);
        s.commit(vec![new(&parent), new(&first)]).await.unwrap();
        let second = copy_of(&parent, tid(3), 2);
        s.commit(vec![new(&second)]).await.unwrap();
        for copy in [first, second] {
            let stored = s.task(copy.id).await.unwrap().expect("stored");
            assert_eq!(stored.def.spec, parent.def.spec);
            assert_eq!(stored.def.placement, copy.def.placement);
        }
        // A copy of a task the store does not have is refused, and nothing of its batch
        // is written.
        let stranger = task(tid(8), 5, exec_def("q"), TaskState::Queued);
        let orphan = copy_of(&stranger, tid(9), 1);
        let other = task(tid(4), 6, exec_def("q"), TaskState::Queued);
        assert!(s.commit(vec![new(&other), new(&orphan)]).await.is_err());
        assert_eq!(s.task(tid(4)).await.unwrap(), None);
        assert_eq!(s.task(tid(9)).await.unwrap(), None);
    }

    pub async fn task_defs_read_bodies<S: Store>(s: &S) {
        let a = task(tid(1), 0, exec_def("q"), TaskState::Queued);
        let b = task(tid(2), 1, noop_def("q"), TaskState::Queued);
        s.commit(vec![new(&a), new(&b)]).await.unwrap();
        let mut defs = s.task_defs(&[tid(2), tid(7), tid(1)]).await.unwrap();
        defs.sort_by_key(|(id, _)| *id);
        assert_eq!(defs, vec![(tid(1), a.def.clone()), (tid(2), b.def.clone())]);
        assert!(s.task_defs(&[]).await.unwrap().is_empty());
    }
}
