//! Measures durable single-task submits: C clients, each submitting one no-op task per
//! request (`POST /v1/tasks`), sequentially, each waiting for its acknowledgement (which
//! follows the commit). Prints tasks/s and the per-request latency.
//!
//! ```sh
//! cargo run --release -p drover-client --example submit_seq -- URL TOKEN [TASKS] [CLIENTS]
//! cargo run --release -p drover-client --example submit_seq -- --fsync DIR [N]
//! ```
//!
//! `--fsync DIR` instead times `fdatasync` of a 100-byte write in DIR (the floor of one
//! durable commit on that file system): median and p99 of N.

use std::io::Write as _;
use std::time::{Duration, Instant};

use drover_api::rest::SubmitRequest;
use drover_client::Client;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn fsync(dir: &str, n: usize) {
    let path = std::path::Path::new(dir).join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("open the probe file");
    let buf = [7u8; 100];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        times.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    times.sort();
    println!(
        "fdatasync of 100 B: n={n} p50={:.3} ms p99={:.3} ms",
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--fsync") {
        let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
        return fsync(&args[1], n);
    }
    let url = args
        .first()
        .cloned()
        .unwrap_or("http://127.0.0.1:7070".into());
    let token = args.get(1).cloned().filter(|t| !t.is_empty());
    let tasks: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let client = Client::new(url.as_str(), token).expect("client");
    let req = SubmitRequest {
        kind: Some("noop".into()),
        ..Default::default()
    };
    // Warm up the connections (and the server's caches).
    for _ in 0..20 {
        client.submit(&req).await.expect("warm-up submit");
    }
    let per = tasks / clients;
    let start = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let req = req.clone();
        joins.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                client.submit(&req).await.expect("submit");
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for j in joins {
        times.extend(j.await.expect("client task"));
    }
    let took = start.elapsed();
    times.sort();
    println!(
        "clients={clients} tasks={} tasks_per_sec={:.0} p50_ms={:.3} p99_ms={:.3}",
        times.len(),
        times.len() as f64 / took.as_secs_f64(),
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
}
