//! Follows `GET /v1/events` on the cluster's members for the whole run: one member at a
//! time, and when its stream ends (the member died, or stopped), the next one, resuming with
//! `after=<last seq>`. Every event is kept as it arrived, so gaps and duplicates show.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::check::Event;
use crate::common::bearer;

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<Event>>,
    /// Streams opened after the first.
    reconnects: AtomicUsize,
    /// Lines that did not parse.
    problems: Mutex<Vec<String>>,
    stop: AtomicBool,
}

pub struct Follower {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following from the first event, on `urls[start]` first.
    pub fn start(urls: Vec<String>, start: usize) -> Follower {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let handle = std::thread::spawn(move || follow(&urls, start, &s));
        Follower {
            shared,
            handle: Some(handle),
        }
    }

    /// The seq of the last event received (0: none yet).
    pub fn last_seq(&self) -> u64 {
        let events = self.shared.events.lock().unwrap();
        events.last().map_or(0, |e| e.seq)
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().clone()
    }

    pub fn reconnects(&self) -> usize {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    pub fn problems(&self) -> Vec<String> {
        self.shared.problems.lock().unwrap().clone()
    }

    /// Asks the thread to stop; it ends when its stream next yields or ends (the servers'
    /// stop ends it at the latest), and `join` waits for that.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }

    pub fn join(mut self) {
        self.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn follow(urls: &[String], start: usize, s: &Shared) {
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(None)
        .build()
        .unwrap();
    let mut i = start;
    let mut opened = 0usize;
    let mut pause = Duration::from_millis(20);
    while !s.stop.load(Ordering::Relaxed) {
        let after = s.events.lock().unwrap().last().map_or(0, |e| e.seq);
        let url = &urls[i % urls.len()];
        let resp = http
            .get(format!("{url}/v1/events?after={after}"))
            .header(reqwest::header::AUTHORIZATION, bearer())
            .send();
        if let Some(r) = resp.filter_ok() {
            if opened > 0 {
                s.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            opened += 1;
            pause = Duration::from_millis(20);
            read(r, s);
        }
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        i += 1;
        // Not a synchronisation: how fast a client tries the next member.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(400));
    }
}

trait FilterOk {
    fn filter_ok(self) -> Option<reqwest::blocking::Response>;
}

impl FilterOk for reqwest::Result<reqwest::blocking::Response> {
    fn filter_ok(self) -> Option<reqwest::blocking::Response> {
        self.ok().filter(|r| r.status() == 200)
    }
}

/// Reads one stream until it ends or breaks.
fn read(resp: reqwest::blocking::Response, s: &Shared) {
    for line in BufReader::new(resp).lines() {
        let Ok(line) = line else { return };
        if let Some(data) = line.strip_prefix("data:") {
            let data = data.strip_prefix(' ').unwrap_or(data);
            match Event::from_json(data) {
                Ok(e) => s.events.lock().unwrap().push(e),
                Err(e) => s.problems.lock().unwrap().push(e),
            }
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// The stored events after `after`, read once (`follow=false`) from `url`.
pub fn stored(url: &str, after: u64) -> Result<Vec<Event>, String> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = http
        .get(format!("{url}/v1/events?after={after}&follow=false"))
        .header(reqwest::header::AUTHORIZATION, bearer())
        .send()
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("{url}: {}", r.status()));
    }
    let text = r.text().map_err(|e| e.to_string())?;
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| Event::from_json(d.strip_prefix(' ').unwrap_or(d)))
        .collect()
}
