//! The driver's queues are bounded: a full inbox refuses a state-changing request after its
//! wait (nothing sent, nothing stored), and a worker whose outbox fills up is cut off.

use drover_core::{AttemptRef, CoreConfig, LeaseToken, QueueConfig, Snapshot, TaskId, WorkerInfo};
use drover_store::MemStore;

use super::*;

fn driver(inbox: usize, wait: Duration) -> (Driver, DriverHandle, Arc<MemStore>, Arc<Metrics>) {
    let store = Arc::new(MemStore::new());
    let core = Coordinator::new(
        CoreConfig::default(),
        [9; 32],
        now_micros(),
        Snapshot::default(),
    );
    let metrics = Arc::new(Metrics::new());
    let (events, _) = broadcast::channel(16);
    let (d, h) = Driver::with_inbox(core, store.clone(), metrics.clone(), events, inbox, wait);
    (d, h, store, metrics)
}

#[tokio::test]
async fn a_full_inbox_refuses_a_request_after_its_wait_and_changes_nothing() {
    let (d, handle, store, _) = driver(1, Duration::from_millis(50));
    // The driver is not running: one command fills its inbox.
    handle.send(Command::Query(Box::new(|_| {}))).await.unwrap();
    let config = QueueConfig {
        name: "q".into(),
        ..QueueConfig::default()
    };
    let started = Instant::now();
    let r = handle
        .request(|req| Input::ConfigureQueue { req, config })
        .await;
    assert_eq!(r.unwrap_err(), DriverError::Busy);
    assert!(started.elapsed() >= Duration::from_millis(50));
    // Once it runs, it takes requests again; the refused one never reached it.
    let run = tokio::spawn(d.run());
    let config = QueueConfig {
        name: "p".into(),
        ..QueueConfig::default()
    };
    let r = handle
        .request(|req| Input::ConfigureQueue { req, config })
        .await;
    assert_eq!(r, Ok(Reply::Done));
    let names: Vec<String> = store
        .queue_configs()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["p"]);
    drop(handle);
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_worker_that_stops_reading_is_cut_off() {
    let (d, handle, _, metrics) = driver(64, ADMIT_WAIT);
    let run = tokio::spawn(d.run());
    // An outbox of two messages that nobody reads.
    let (tx, _rx) = mpsc::channel(2);
    let (cut_tx, mut cut) = watch::channel(false);
    handle
        .send(Command::Attach(1, Outbox::new(tx, cut_tx)))
        .await
        .unwrap();
    let info = WorkerInfo {
        name: "w".into(),
        slots: 1,
        ..WorkerInfo::default()
    };
    let joined = handle
        .request(|req| Input::WorkerJoin {
            req,
            session: 1,
            info,
            held: vec![],
        })
        .await;
    assert_eq!(joined, Ok(Reply::Joined(Ok(()))));
    // Each heartbeat naming an attempt the worker does not hold is answered with a cancel;
    // a read after it ends its batch, so each cancel is one more message.
    for i in 0..10u128 {
        let held = vec![AttemptRef {
            task_id: TaskId(i + 1),
            attempt: 1,
            lease: LeaseToken(i),
        }];
        let hb = Input::Heartbeat { session: 1, held };
        handle.send(Command::Input(hb, None)).await.unwrap();
        handle.query(|_| ()).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), cut.wait_for(|c| *c))
        .await
        .expect("cut off within 5 s")
        .unwrap();
    assert!(metrics
        .render()
        .contains("drover_worker_streams_cut_total 1"));
    drop(handle);
    run.await.unwrap().unwrap();
}
