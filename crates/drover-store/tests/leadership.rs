//! Leadership on PostgreSQL with several members (ARCHITECTURE.md, *Leadership*): one leader
//! at a time, elections by the database's clock, fenced commits, epochs that never commit in
//! overlapping time, and a leader frozen inside a commit. Each test makes a schema of its own
//! in the database named by `DROVER_TEST_POSTGRES_URL`; unset, they are skipped. (What every
//! store does with one member: `leadership_fences_writes` in tests/conformance.rs.)

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_core::{
    Event, EventKind, TaskDef, TaskId, TaskRecord, TaskSpec, TaskState, WorkerEventState, Write,
};
use drover_store::postgres::TempSchema;
use drover_store::{Epoch, Leadership, Member, PgStore, Role, Store, StoreError};

const PG_URL_VAR: &str = "DROVER_TEST_POSTGRES_URL";

fn pg_base_url() -> Option<String> {
    let url = std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: {PG_URL_VAR} not set (a PostgreSQL database to make schemas in)");
    }
    url
}

/// `n` stores (as `n` servers would have) on one fresh schema.
async fn stores(n: usize) -> Option<(TempSchema, Vec<Arc<PgStore>>)> {
    let schema = TempSchema::create(&pg_base_url()?).await.unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(
            PgStore::connect_with(schema.url(), 1).await.unwrap(),
        ));
    }
    Some((schema, out))
}

/// A connection of the test's own to the schema, for what the store does not do.
async fn psql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

fn member(name: &str) -> Member {
    Member {
        name: name.into(),
        address: format!("https://{name}:7070"),
    }
}

fn task(n: u128, state: TaskState) -> TaskRecord {
    TaskRecord {
        id: TaskId((n << 80) | 0x7000_8000_0000_0000_0000 | n),
        seq: n as u64,
        def: Arc::new(TaskDef {
            namespace: drover_core::DEFAULT_NAMESPACE.into(),
            queue: "q".into(),
            kind: "noop".into(),
            priority: 0,
            spec: TaskSpec::Noop,
            max_attempts: 1,
            backoff_ms: 0,
            timeout_ms: None,
            idempotency_key: None,
            placement: Default::default(),
            concurrency: None,
        }),
        state,
        attempt: 0,
        lost: 0,
        not_before: None,
        worker: None,
        lease: None,
        created_at: 1_000,
        updated_at: 1_000,
        started_at: None,
        finished_at: None,
        exit_code: None,
        error: None,
        result: None,
    }
}

fn write(t: &TaskRecord, is_new: bool) -> Write {
    Write::Task {
        record: t.clone(),
        is_new,
    }
}

/// Polls `f` every 10 ms until it gives `Some`, for at most `within`.
async fn until<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_fenced<T: std::fmt::Debug>(r: Result<T, StoreError>, ours: Epoch, current: Epoch) {
    match r {
        Err(StoreError::Fenced {
            ours: o,
            current: c,
        }) => assert_eq!((o, c), (ours, current)),
        other => panic!("expected Fenced {{ ours: {ours}, current: {current} }}: {other:?}"),
    }
}

/// Two servers: only one is elected; the other is once the lease expired by the database's
/// clock, with the next epoch; the first then can neither renew nor commit, and its fenced
/// commit changes nothing.
#[tokio::test]
async fn one_leads_until_its_lease_expires_then_it_is_fenced() {
    let Some((schema, s)) = stores(2).await else {
        return;
    };
    let (a, b) = (&s[0], &s[1]);
    let lease = Duration::from_millis(300);
    let e1 = a.elect(&member("a"), lease).await.unwrap().unwrap();
    let elected = Instant::now();
    assert_eq!(e1, 1);
    assert_eq!(b.elect(&member("b"), lease).await.unwrap(), None);
    let t1 = task(1, TaskState::Queued);
    a.commit(vec![write(&t1, true)]).await.unwrap();

    // `a` does not renew: `b` is elected once the lease ran out, not before.
    let e2 = until(Duration::from_secs(10), "b elected", || async move {
        b.elect(&member("b"), lease).await.unwrap()
    })
    .await;
    assert!(elected.elapsed() >= lease - Duration::from_millis(50));
    assert_eq!(e2, e1 + 1);
    let v = a.cluster().await.unwrap();
    assert_eq!((v.epoch, v.leader.as_deref()), (e2, Some("b")));

    // `a` lost it: no renewal, no election while `b` lives, and its writes are fenced.
    assert!(!a.renew(e1, lease).await.unwrap());
    assert_eq!(a.elect(&member("a"), lease).await.unwrap(), None);
    let before = a.count_by_state(None).await.unwrap();
    let t2 = task(2, TaskState::Queued);
    let t1_running = TaskRecord {
        state: TaskState::Running,
        ..t1.clone()
    };
    assert_fenced(
        a.commit(vec![write(&t2, true), write(&t1_running, false)])
            .await,
        e1,
        e2,
    );
    assert_fenced(a.prune_tasks(i64::MAX, 10).await, e1, e2);
    assert_fenced(a.prune_events(i64::MAX).await, e1, e2);
    assert_eq!(b.task(t2.id).await.unwrap(), None);
    assert_eq!(b.task(t1.id).await.unwrap(), Some(t1.clone()));
    assert_eq!(b.count_by_state(None).await.unwrap(), before);

    // `b` leads: it renews and commits.
    assert!(b.renew(e2, lease).await.unwrap());
    b.commit(vec![write(&t2, true)]).await.unwrap();
    drop(s);
    schema.drop_schema().await.unwrap();
}

/// A server restarted after a crash (the same name, a new store) leads at once instead of
/// waiting out its previous life's lease, and that life is fenced off.
#[tokio::test]
async fn a_member_restarted_under_its_name_leads_at_once() {
    let Some((schema, s)) = stores(2).await else {
        return;
    };
    let (old, new) = (&s[0], &s[1]);
    let lease = Duration::from_secs(60);
    let e1 = old.elect(&member("a"), lease).await.unwrap().unwrap();
    assert_eq!(new.elect(&member("b"), lease).await.unwrap(), None);
    let e2 = new.elect(&member("a"), lease).await.unwrap().unwrap();
    assert_eq!(e2, e1 + 1);
    let t1 = task(1, TaskState::Queued);
    assert_fenced(old.commit(vec![write(&t1, true)]).await, e1, e2);
    assert!(!old.renew(e1, lease).await.unwrap());
    new.commit(vec![write(&t1, true)]).await.unwrap();
    drop(s);
    schema.drop_schema().await.unwrap();
}

/// Members and roles, staleness and forgetting, on the database's clock.
#[tokio::test]
async fn cluster_shows_members_roles_and_stale_ones() {
    let Some((schema, s)) = stores(2).await else {
        return;
    };
    let (a, b) = (&s[0], &s[1]);
    a.heartbeat(&member("a")).await.unwrap();
    b.heartbeat(&member("b")).await.unwrap();
    let e = b
        .elect(&member("b"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(e, Some(1));
    let v = a.cluster().await.unwrap();
    let roles: Vec<_> = v
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.role))
        .collect();
    assert_eq!(roles, [("a", Role::Standby), ("b", Role::Leader)]);
    assert!(v.members.iter().all(|m| !m.stale));
    assert_eq!(v.members[1].address, "https://b:7070");

    // `a` went quiet 20 s ago: stale. Then two hours: forgotten at the next heartbeat.
    let c = psql(schema.url()).await;
    let age = |by: &'static str| {
        let c = &c;
        async move {
            c.execute(
                &format!(
                    "UPDATE members SET last_seen = last_seen - interval '{by}', \
                     started_at = started_at - interval '{by}' WHERE name = 'a'"
                ),
                &[],
            )
            .await
            .unwrap();
        }
    };
    age("20 seconds").await;
    let v = b.cluster().await.unwrap();
    assert!(v.members[0].stale && !v.members[1].stale, "{v:?}");
    assert!(v.members[0].last_seen >= Duration::from_secs(20));
    assert!(v.members[0].up_for >= Duration::from_secs(20));
    // Its heartbeat refreshes it; its start stays (the same store: the same process).
    a.heartbeat(&member("a")).await.unwrap();
    let v = b.cluster().await.unwrap();
    assert!(!v.members[0].stale && v.members[0].up_for >= Duration::from_secs(20));
    age("2 hours").await;
    b.heartbeat(&member("b")).await.unwrap();
    let names: Vec<_> = b.cluster().await.unwrap().members;
    let names: Vec<_> = names.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    drop((s, c));
    schema.drop_schema().await.unwrap();
}

/// An election waits for the old epoch's commits in flight, which then go through in their
/// epoch, before the new one begins; the new leader finds them committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_waits_for_the_commits_in_flight() {
    let Some((schema, s)) = stores(2).await else {
        return;
    };
    let (a, b) = (s[0].clone(), s[1].clone());
    let lease = Duration::from_millis(400);
    let e1 = a.elect(&member("a"), lease).await.unwrap().unwrap();
    let x = task(1, TaskState::Queued);
    a.commit(vec![write(&x, true)]).await.unwrap();

    // `a` commits while the test holds task x's row: the commit waits after its fence.
    let c = psql(schema.url()).await;
    c.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE",
        uuid::Uuid::from_u128(x.id.0)
    ))
    .await
    .unwrap();
    let x_running = TaskRecord {
        state: TaskState::Running,
        ..x.clone()
    };
    let y = task(2, TaskState::Queued);
    let in_flight = {
        let (a, w) = (a.clone(), vec![write(&y, true), write(&x_running, false)]);
        tokio::spawn(async move { a.commit(w).await })
    };
    let (cref, name) = (&c, schema.name());
    until(
        Duration::from_secs(2),
        "the commit holds the fence",
        || async move { lease_lock_holder(cref, name).await },
    )
    .await;

    // The lease runs out meanwhile: `b`'s election waits for the commit.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let mut election = tokio::spawn(async move { b.elect(&member("b"), lease).await });
    let waited = tokio::time::timeout(Duration::from_millis(200), &mut election).await;
    assert!(
        waited.is_err(),
        "elected while a commit was in flight: {waited:?}"
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    in_flight
        .await
        .unwrap()
        .expect("the commit in flight is of the current epoch");
    let e2 = election.await.unwrap().unwrap();
    assert_eq!(e2, Some(e1 + 1));
    assert_eq!(s[1].task(y.id).await.unwrap(), Some(y.clone()));
    assert_eq!(s[1].task(x.id).await.unwrap(), Some(x_running));
    assert_fenced(a.commit(vec![write(&y, false)]).await, e1, e1 + 1);
    drop((a, s, c));
    schema.drop_schema().await.unwrap();
}

/// What one member did while it believed it led.
#[derive(Debug)]
enum Attempted {
    Committed {
        epoch: Epoch,
        seqs: (u64, u64),
    },
    Fenced {
        epoch: Epoch,
        seqs: (u64, u64),
    },
    /// The store was unavailable (the database ended a session it found idle too long):
    /// unknown whether it committed, so only checked to be all or nothing. (A conflict with
    /// another epoch's seqs fails the test at once.)
    Failed {
        epoch: Epoch,
        seqs: (u64, u64),
    },
}

/// xorshift64*: the pauses, the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One member of the history test: elects, renews every lease / 3, commits events tagged with
/// its epoch (`at`) and its name, pauses now and then longer than the lease (a SIGSTOP), and
/// on resuming commits first, before it renews.
async fn member_loop(
    store: Arc<PgStore>,
    name: String,
    seed: u64,
    lease: Duration,
    stop_at: Instant,
) -> Vec<Attempted> {
    let mut rng = Rng(seed);
    let mut log = Vec::new();
    let mut leading: Option<(Epoch, u64, Instant)> = None; // epoch, next seq, last renewal
    while Instant::now() < stop_at {
        let Some((epoch, next, renewed)) = leading else {
            match store.elect(&member(&name), lease).await.unwrap() {
                Some(epoch) => {
                    let next = store.last_event_seq().await.unwrap() + 1;
                    leading = Some((epoch, next, Instant::now()));
                }
                None => tokio::time::sleep(Duration::from_millis(10 + rng.below(40))).await,
            }
            continue;
        };
        let frozen = rng.below(12) == 0;
        let pause = match frozen {
            true => lease + Duration::from_millis(100 + rng.below(400)),
            false => Duration::from_millis(rng.below(25)),
        };
        tokio::time::sleep(pause).await;
        if !frozen && renewed.elapsed() >= lease / 3 {
            if !store.renew(epoch, lease).await.unwrap() {
                leading = None;
                continue;
            }
            leading = Some((epoch, next, Instant::now()));
        }
        let n = 1 + rng.below(3);
        let seqs = (next, next + n - 1);
        let events = (next..next + n).map(|seq| {
            Write::Event(Event {
                seq,
                at: epoch as i64,
                kind: EventKind::Worker {
                    name: name.clone(),
                    state: WorkerEventState::Alive,
                },
            })
        });
        match store.commit(events.collect()).await {
            Ok(()) => {
                log.push(Attempted::Committed { epoch, seqs });
                let (_, _, renewed) = leading.unwrap();
                leading = Some((epoch, next + n, renewed));
            }
            Err(StoreError::Fenced { ours, current }) => {
                assert!(ours == epoch && current > epoch, "{ours} {current} {epoch}");
                log.push(Attempted::Fenced { epoch, seqs });
                leading = None;
            }
            // Another epoch wrote one of these seqs: two epochs committed at once.
            Err(e @ StoreError::Backend(_)) => panic!("{name}: epoch {epoch}: {e}"),
            Err(e) => {
                println!("{name}: epoch {epoch}: commit failed: {e}");
                log.push(Attempted::Failed { epoch, seqs });
                leading = None;
            }
        }
    }
    log
}

/// Three members race for the lease for a few seconds, each committing while it believes
/// it leads, some pausing past their lease. Each new leader continues the event sequence
/// from the last one it finds, so a commit of an old epoch after the new one began would
/// either reuse a seq (a conflict: the test fails) or leave an older epoch after a newer one.
/// The committed history: every event of every successful commit is there, nothing of a
/// fenced one, no gap, and epochs only grow along it: each epoch's commits form one block,
/// all after the previous epoch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn epochs_never_commit_in_overlapping_time() {
    let Some((schema, s)) = stores(3).await else {
        return;
    };
    let lease = Duration::from_millis(300);
    let stop_at = Instant::now() + Duration::from_secs(4);
    let runs = s.iter().enumerate().map(|(i, store)| {
        let store = store.clone();
        tokio::spawn(member_loop(
            store,
            format!("m{i}"),
            0x9e37_79b9 + i as u64,
            lease,
            stop_at,
        ))
    });
    let logs: Vec<Attempted> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();

    let events = s[0].events_after(0, 1_000_000).await.unwrap();
    let epoch_of: BTreeMap<u64, Epoch> = events.iter().map(|e| (e.seq, e.at as Epoch)).collect();
    assert_eq!(
        epoch_of.keys().copied().collect::<Vec<_>>(),
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "sequence numbers with a gap"
    );
    let epochs: Vec<Epoch> = epoch_of.values().copied().collect();
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "epochs interleave along the history: {epochs:?}"
    );
    let (mut committed, mut fenced, mut failed) = (0, 0, 0);
    for a in &logs {
        match *a {
            Attempted::Committed { epoch, seqs } => {
                committed += 1;
                for seq in seqs.0..=seqs.1 {
                    assert_eq!(epoch_of.get(&seq), Some(&epoch), "{a:?} is missing");
                }
            }
            Attempted::Fenced { epoch, seqs } => {
                fenced += 1;
                for seq in seqs.0..=seqs.1 {
                    assert_ne!(epoch_of.get(&seq), Some(&epoch), "{a:?} left a trace");
                }
            }
            Attempted::Failed { epoch, seqs } => {
                failed += 1;
                let kept = (seqs.0..=seqs.1).filter(|s| epoch_of.get(s) == Some(&epoch));
                assert!(
                    [0, seqs.1 - seqs.0 + 1].contains(&(kept.count() as u64)),
                    "{a:?}"
                );
            }
        }
    }
    let elections = s[0].cluster().await.unwrap().epoch;
    println!(
        "{elections} elections, {committed} commits, {fenced} fenced, {failed} failed, {} events",
        events.len()
    );
    assert!(elections >= 3, "too few elections to say anything");
    assert!(fenced >= 1, "no stale leader tried to commit");
    assert!(committed >= 20, "too few commits to say anything");
    drop(s);
    schema.drop_schema().await.unwrap();
}

/// The pid of the session that holds a lock on this schema's `leader_lease` (the fence's),
/// and what it is doing.
async fn lease_lock_holder(c: &tokio_postgres::Client, schema: &str) -> Option<(i32, String)> {
    let row = c
        .query_opt(
            "SELECT a.pid, coalesce(a.state, '') FROM pg_locks l \
             JOIN pg_class r ON r.oid = l.relation \
             JOIN pg_namespace n ON n.oid = r.relnamespace \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE n.nspname = $1 AND r.relname = 'leader_lease' AND l.granted \
             AND l.pid <> pg_backend_pid() LIMIT 1",
            &[&schema],
        )
        .await
        .unwrap()?;
    Some((row.get(0), row.get(1)))
}

/// A leader frozen inside a commit (its process stopped after the fence ran, before COMMIT)
/// holds the lease row's lock. The database ends that session a lease after it went idle,
/// so the next election still completes, soon after the lease; the frozen commit, resumed,
/// fails and changes nothing, and the old leader's next one is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_inside_a_commit_does_not_block_the_next() {
    let Some((schema, s)) = stores(2).await else {
        return;
    };
    let (a, b) = (&s[0], &s[1]);
    let lease = Duration::from_millis(500);
    let e1 = a.elect(&member("a"), lease).await.unwrap().unwrap();
    let x = task(1, TaskState::Queued);
    a.commit(vec![write(&x, true)]).await.unwrap();

    // Freeze `a` inside its next commit: hold task x's row, so that commit stops at its
    // update of x after the fence; then stop polling it and let the update through. Its
    // session now sits idle in its transaction, holding the fence's lock, as a stopped
    // process's would.
    let c = psql(schema.url()).await;
    c.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE",
        uuid::Uuid::from_u128(x.id.0)
    ))
    .await
    .unwrap();
    let x_running = TaskRecord {
        state: TaskState::Running,
        ..x.clone()
    };
    let y = task(2, TaskState::Queued);
    let mut frozen = a.commit(vec![write(&y, true), write(&x_running, false)]);
    let blocked = tokio::time::timeout(Duration::from_millis(300), &mut frozen).await;
    assert!(
        blocked.is_err(),
        "the commit should wait for the row: {blocked:?}"
    );
    let (pid, _) = lease_lock_holder(&c, schema.name())
        .await
        .expect("the commit holds the fence's lock");
    c.batch_execute("ROLLBACK").await.unwrap();
    let (cref, name) = (&c, schema.name());
    until(
        Duration::from_secs(2),
        "the frozen commit idle",
        || async move {
            let (p, state) = lease_lock_holder(cref, name).await?;
            (p == pid && state == "idle in transaction").then_some(())
        },
    )
    .await;

    // A new leader, within the lease and the database's idle timeout (both 500 ms) and a
    // bound for the election's own polling.
    let started = Instant::now();
    let e2 = until(Duration::from_secs(5), "b elected", || async move {
        b.elect(&member("b"), lease).await.unwrap()
    })
    .await;
    assert_eq!(e2, e1 + 1);
    let took = started.elapsed();
    println!("elected {took:?} after the commit froze");
    assert!(took < lease * 2 + Duration::from_millis(1500), "{took:?}");

    // Resumed: the frozen commit fails (its session was ended); nothing of it is stored.
    let err = frozen.await.expect_err("the frozen commit must fail");
    println!("the frozen commit: {err}");
    assert_eq!(b.task(y.id).await.unwrap(), None);
    assert_eq!(b.task(x.id).await.unwrap(), Some(x.clone()));
    assert_fenced(a.commit(vec![write(&y, true)]).await, e1, e2);
    b.commit(vec![write(&y, true)]).await.unwrap();
    drop((s, c));
    schema.drop_schema().await.unwrap();
}
