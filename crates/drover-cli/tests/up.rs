//! `drover up`: one command starts the store, a server and local workers; SIGTERM stops it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn up_runs_tasks_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    provide_admin_token(&data);
    let mut child = drover()
        .args([
            "up",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let _ = tx.send(url.trim_end_matches(['.', ',']).to_string());
            }
        }
    });
    let mut up = Proc {
        child,
        name: "up".into(),
    };
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("up prints its URL");

    wait_for(Duration::from_secs(30), "two local workers", || {
        let ws = cli_json(&url, &["workers"]);
        (ws["workers"].as_array()?.len() == 2).then_some(())
    });
    let out = cli(&url, &["submit", "--wait", "--", "echo", "from up"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from up\n");
    assert!(
        data.join("drover.db").exists(),
        "the store is one file under the data dir"
    );

    up.signal(Signal::SIGTERM);
    let status = up
        .wait_exit(Duration::from_secs(15))
        .expect("up exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}
