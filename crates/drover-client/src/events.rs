//! The event stream (`GET /v1/events`, Server-Sent Events) as an async iterator of
//! [`EventView`]s, optionally reconnecting from the last id seen (no gap, no duplicate).

use std::time::Duration;

use drover_api::events::EventView;

use crate::error::{self, ClientError};
use crate::{decode_error, Client};

/// With no byte for this long (the server sends a keep-alive every 10 s) the stream is taken
/// as broken.
const IDLE: Duration = Duration::from_secs(35);
/// Longest pause between two reconnection attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Filters of `GET /v1/events`. Empty fields match everything; `state` and `kind` take
/// comma-separated lists. The default follows live events from now on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this task's own events (task events only).
    pub task: Option<String>,
    /// Only task events of this queue.
    pub queue: Option<String>,
    /// Only this workflow's events and the task events of its nodes.
    pub workflow: Option<String>,
    /// Task states, worker states, workflow states or schedule changes.
    pub state: Option<String>,
    /// `task`, `worker`, `workflow` or `schedule`.
    pub kind: Option<String>,
    /// Replay the stored events after this seq first; `None`: only new events (with
    /// `follow`), or the newest 100 (without).
    pub after: Option<u64>,
    /// `false`: end once the stored events are sent.
    pub follow: bool,
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            task: None,
            queue: None,
            workflow: None,
            state: None,
            kind: None,
            after: None,
            follow: true,
        }
    }
}

impl EventQuery {
    fn params(&self, after: Option<u64>) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let fields = [
            ("task", &self.task),
            ("queue", &self.queue),
            ("workflow", &self.workflow),
            ("state", &self.state),
            ("type", &self.kind),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        if let Some(a) = after {
            q.push(("after", a.to_string()));
        }
        if !self.follow {
            q.push(("follow", "false".into()));
        }
        q
    }
}

/// An open event stream. [`EventStream::next`] yields events in sequence order.
pub struct EventStream {
    client: Client,
    query: EventQuery,
    resp: Option<reqwest::Response>,
    parser: Parser,
    last_seq: Option<u64>,
    reconnect: bool,
}

impl Client {
    /// Opens `GET /v1/events`. Returns once the server has subscribed: every event committed
    /// after this returns is delivered (with `follow`).
    pub async fn events(&self, query: &EventQuery) -> Result<EventStream, ClientError> {
        let query = query.clone();
        let resp = self.open_events(&query, query.after).await?;
        Ok(EventStream {
            client: self.clone(),
            query,
            resp: Some(resp),
            parser: Parser::default(),
            last_seq: None,
            reconnect: false,
        })
    }

    /// Opens the stream on the server that answered last, failing over like every request
    /// (a read: safe to repeat).
    async fn open_events(
        &self,
        query: &EventQuery,
        after: Option<u64>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut params = query.params(after);
        params.extend(self.ns_query());
        // No overall timeout: the stream lives as long as it is read (`exchange` bounds the
        // wait for the answer's headers).
        let (base, resp) = self
            .exchange(true, |base| {
                self.inner
                    .http
                    .get(format!("{base}/v1/events"))
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .query(&params)
            })
            .await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(decode_error(&base, resp).await)
    }
}

impl EventStream {
    /// After a broken connection (or a server restart), reconnect from the last event seen
    /// instead of failing; retries with a growing pause, up to 5 s, for as long as it takes.
    pub fn reconnecting(mut self, yes: bool) -> Self {
        self.reconnect = yes;
        self
    }

    /// The seq of the last event returned.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The next event; `None` when the server ended the stream (a non-following one, or a
    /// server shutting down without `reconnecting`).
    pub async fn next(&mut self) -> Result<Option<EventView>, ClientError> {
        let mut pause = Duration::from_millis(100);
        loop {
            if let Some(ev) = self.parser.next_event()? {
                if self.last_seq.is_some_and(|l| ev.seq <= l) {
                    continue;
                }
                self.last_seq = Some(ev.seq);
                return Ok(Some(ev));
            }
            let Some(resp) = self.resp.as_mut() else {
                // Reconnect from where we are.
                let after = self.last_seq.or(self.parser.start).or(self.query.after);
                match self.client.open_events(&self.query, after).await {
                    Ok(r) => {
                        self.resp = Some(r);
                        self.parser = Parser {
                            start: self.parser.start,
                            ..Parser::default()
                        };
                        pause = Duration::from_millis(100);
                    }
                    Err(e) if self.reconnect && !e.is_invalid_input() => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_PAUSE);
                    }
                    Err(e) => return Err(e),
                }
                continue;
            };
            let url = self.client.base_url().to_string();
            match tokio::time::timeout(IDLE, resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.parser.push(&bytes),
                Ok(Ok(None)) => {
                    self.resp = None;
                    if !self.reconnect || !self.query.follow {
                        return Ok(None);
                    }
                }
                Ok(Err(e)) => {
                    self.resp = None;
                    if !self.reconnect {
                        return Err(ClientError::Transport {
                            url,
                            detail: error::root_cause(&e),
                        });
                    }
                }
                Err(_) => {
                    self.resp = None;
                    if !self.reconnect {
                        return Err(ClientError::Transport {
                            url,
                            detail: format!("the event stream was silent for {}s", IDLE.as_secs()),
                        });
                    }
                }
            }
        }
    }
}

/// An incremental `text/event-stream` parser: bytes in, events (with JSON data) out.
#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
    /// The seq the server started after (its `: subscribed after=N` comment).
    start: Option<u64>,
}

impl Parser {
    fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The next complete event with data; comments and keep-alives are skipped.
    fn next_event(&mut self) -> Result<Option<EventView>, ClientError> {
        loop {
            let Some((end, sep)) = block_end(&self.buf) else {
                return Ok(None);
            };
            let block: Vec<u8> = self.buf.drain(..end + sep).take(end).collect();
            let text = String::from_utf8_lossy(&block);
            let mut data = String::new();
            for line in text.lines() {
                if let Some(n) = line.strip_prefix(": subscribed after=") {
                    if self.start.is_none() {
                        self.start = n.trim().parse().ok();
                    }
                }
                if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if data.is_empty() {
                continue;
            }
            return serde_json::from_str(&data)
                .map(Some)
                .map_err(|e| ClientError::Protocol {
                    url: String::new(),
                    status: 200,
                    detail: format!("an event is not the expected JSON ({e}): {data}"),
                });
        }
    }
}

/// Where the first event block ends, and the length of its blank-line separator.
fn block_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"\r\n\r\n") {
            return Some((i, 4));
        }
        if b[i..].starts_with(b"\n\n") || b[i..].starts_with(b"\r\r") {
            return Some((i, 2));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks_and_skips_comments() {
        let mut p = Parser::default();
        p.push(b": subscribed after=2\nretry: 1000\n\nid: 3\nevent: task\ndata: {\"seq\":3,\"type\":\"task\",");
        assert!(p.next_event().unwrap().is_none());
        p.push(b"\"at\":\"x\",\"event\":\"task.queued\",\"state\":\"queued\"}\n\n: keep-alive\n\n");
        let e = p.next_event().unwrap().unwrap();
        assert_eq!((e.seq, e.state.as_str()), (3, "queued"));
        assert_eq!(p.start, Some(2));
        assert!(p.next_event().unwrap().is_none());
        p.push(b"id: 4\r\ndata: {\"seq\":4,\"type\":\"worker\",\"at\":\"x\",\"event\":\"worker.left\",\"state\":\"left\",\"worker\":\"w\"}\r\n\r\n");
        assert_eq!(
            p.next_event().unwrap().unwrap().worker.as_deref(),
            Some("w")
        );
    }

    #[test]
    fn parses_workflow_and_schedule_events() {
        let mut p = Parser::default();
        p.push(b"id: 9\nevent: workflow\ndata: {\"seq\":9,\"type\":\"workflow\",\"at\":\"x\",\"event\":\"workflow.succeeded\",\"state\":\"succeeded\",\"worker\":null,\"reason\":null,\"workflow\":\"wf-1\"}\n\n");
        p.push(b"id: 10\nevent: schedule\ndata: {\"seq\":10,\"type\":\"schedule\",\"at\":\"x\",\"event\":\"schedule.fired\",\"state\":\"fired\",\"task_id\":\"t\",\"worker\":null,\"reason\":null,\"schedule\":\"nightly\"}\n\n");
        let w = p.next_event().unwrap().unwrap();
        assert_eq!(
            (w.kind.as_str(), w.workflow.as_deref()),
            ("workflow", Some("wf-1"))
        );
        assert!(w.is_terminal_workflow_event());
        let s = p.next_event().unwrap().unwrap();
        assert_eq!(s.schedule.as_deref(), Some("nightly"));
        assert_eq!(s.task_id.as_deref(), Some("t"));
        assert!(!s.is_terminal_task_event());
    }

    #[test]
    fn query_parameters() {
        let q = EventQuery {
            task: Some("t".into()),
            state: Some("succeeded,failed".into()),
            follow: false,
            ..Default::default()
        };
        assert_eq!(
            q.params(Some(7)),
            [
                ("task", "t".to_string()),
                ("state", "succeeded,failed".to_string()),
                ("after", "7".to_string()),
                ("follow", "false".to_string()),
            ]
        );
        let q = EventQuery {
            workflow: Some("wf-1".into()),
            kind: Some("task,workflow".into()),
            ..Default::default()
        };
        assert_eq!(
            q.params(None),
            [
                ("workflow", "wf-1".to_string()),
                ("type", "task,workflow".to_string()),
            ]
        );
    }
}
