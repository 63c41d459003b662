//! How one request rides out a server going away or a leader changing, with several servers
//! (`Client::new("http://a:7070,http://b:7070", ..)`).
//!
//! A client sends to the server that answered it last. When a try misses, [`Plan::next`] says
//! where the next try goes and after what pause:
//!
//! - **Where**: to the leader a standby named in its 503 (`x-drover-leader`) when that address
//!   is one of the client's servers, else to the next server of the list (wrapping around); see
//!   [`drover_api::failover::next_server`]. A leader outside the list is not followed: the
//!   client never sends its token to a host it was not given. Nor is a leader this request
//!   could not reach since its last pause (a standby that has not yet noticed the leader's
//!   death still names it): the next server is tried instead.
//! - **When**: at once while some server of the list has not had its turn since the last pause;
//!   once every one has, after a pause of 200 ms doubling to 2 s, or the longest `Retry-After`
//!   of that round if longer. The whole request gives up after [`crate::UNAVAILABLE_RETRY`]
//!   (30 s, at most the client's timeout), with the last miss as its error: long enough for a
//!   standby to take over an expired lease (5 s by default, plus 2 s). It gives up at once
//!   when every try of a round broke the exchange (every server is up but the exchange fails:
//!   a wrong scheme, a proxy in the way): that is no failover to wait for.
//!
//! What may be tried again is [`Miss::retryable`]. With several servers, every request after
//! nothing was sent (no connection) or the server did nothing (any 503: a standby, a degraded
//! store, a server shutting down), submits included: another server may be, or become, the
//! leader. With one server, a 503 is waited out only for a request safe to repeat (a plain
//! write says at once that the server is unavailable, as before), and no connection is an
//! error at once. After the exchange broke once the request may have reached a server (reset,
//! truncated or late answer: a leader killed mid-request may have committed it), only a
//! request safe to repeat is sent again: reads, `PUT`, `DELETE`, and submits whose every task
//! carries an idempotency key (the repeat returns the task the first one created).

use std::time::Duration;

/// The first pause, once every server has had its turn.
pub const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause between two rounds (a `Retry-After` may ask for longer).
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Why one try of a request got no answer to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// No connection could be made: nothing was sent.
    Unreachable,
    /// 503: the server did nothing. `leader` is its `x-drover-leader` header (a standby
    /// naming the leader), `retry_after` its `Retry-After`.
    Unavailable {
        leader: Option<String>,
        retry_after: Option<Duration>,
    },
    /// The exchange failed once the request may have reached the server (connection reset,
    /// truncated or late answer).
    Broken,
    /// 429: a full backlog (or a rate limit) refused it, changing nothing; the same server is
    /// asked again after `Retry-After` (another one would only point back at it).
    Refused { retry_after: Option<Duration> },
}

impl Miss {
    /// Whether the request may be sent again. No connection or a 503 (nothing was done):
    /// given another server to try, always; with one server, a 503 only when `repeat_safe`
    /// and no connection never (a lone server that is down is an error at once). A broken
    /// exchange (it may have been done): only when `repeat_safe`.
    pub fn retryable(&self, repeat_safe: bool, servers: usize) -> bool {
        match self {
            Miss::Unreachable => servers > 1,
            Miss::Unavailable { .. } => servers > 1 || repeat_safe,
            Miss::Broken => repeat_safe,
            Miss::Refused { .. } => true,
        }
    }
}

/// Where the next try goes (an index into the client's servers) and how long to wait first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub server: usize,
    pub pause: Duration,
}

/// The retry plan of one request. Pure: no clock, no I/O (the caller sleeps and keeps the
/// deadline).
#[derive(Clone, Debug)]
pub struct Plan {
    /// Tries missed since the last pause.
    missed: usize,
    /// How many of them broke the exchange.
    broken: usize,
    /// The servers that could not be reached since the last pause: a standby still naming
    /// one of them as the leader (its view lags a leader's death) is not followed there.
    down: Vec<usize>,
    /// The longest `Retry-After` of those tries.
    asked: Duration,
    /// The next pause.
    backoff: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            missed: 0,
            broken: 0,
            down: Vec::new(),
            asked: Duration::ZERO,
            backoff: FIRST_PAUSE,
        }
    }
}

impl Plan {
    /// After `miss` on `servers[current]`: the next server and the pause before trying it;
    /// `None` when every try of a whole round broke the exchange (each server is up but the
    /// exchange fails: a wrong scheme, a proxy in the way; no failover to wait for).
    pub fn next(&mut self, servers: &[String], current: usize, miss: &Miss) -> Option<Next> {
        if let Miss::Refused { retry_after } = miss {
            let pause = self.backoff.max(retry_after.unwrap_or_default());
            self.backoff = (self.backoff * 2).min(MAX_PAUSE);
            return Some(Next {
                server: current % servers.len().max(1),
                pause,
            });
        }
        if *miss == Miss::Unreachable {
            self.down.push(current % servers.len().max(1));
        }
        let leader = match miss {
            Miss::Unavailable { leader, .. } => leader.as_deref().filter(|l| {
                drover_api::failover::position(servers, l).is_none_or(|i| !self.down.contains(&i))
            }),
            _ => None,
        };
        if let Miss::Unavailable {
            retry_after: Some(d),
            ..
        } = miss
        {
            self.asked = self.asked.max(*d);
        }
        let server = drover_api::failover::next_server(servers, current, leader);
        self.missed += 1;
        if *miss == Miss::Broken {
            self.broken += 1;
        }
        let pause = if self.missed >= servers.len() {
            if self.broken == self.missed {
                return None;
            }
            let pause = self.backoff.max(self.asked);
            self.backoff = (self.backoff * 2).min(MAX_PAUSE);
            self.missed = 0;
            self.broken = 0;
            self.down.clear();
            self.asked = Duration::ZERO;
            pause
        } else {
            Duration::ZERO
        };
        Some(Next { server, pause })
    }
}

/// A request moving on after a miss: [`crate::Client::on_retry`] hears of each one (the CLI
/// prints them on stderr).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retrying {
    /// The server that missed.
    pub from: String,
    /// The server tried next (`from` again when there is only one).
    pub to: String,
    /// What happened, e.g. `cannot connect (Connection refused (os error 111))`.
    pub reason: String,
    /// The wait before the next try.
    pub pause: Duration,
}

impl std::fmt::Display for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; ", self.from, self.reason)?;
        if self.to == self.from {
            f.write_str("retrying")?;
        } else {
            write!(f, "moving to {}", self.to)?;
        }
        if !self.pause.is_zero() {
            write!(f, " in {:.1}s", self.pause.as_secs_f64())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://s{i}:7070")).collect()
    }

    fn standby(leader: &str) -> Miss {
        Miss::Unavailable {
            leader: Some(leader.into()),
            retry_after: Some(Duration::from_secs(1)),
        }
    }

    #[test]
    fn unreachable_servers_are_tried_in_turn_then_paused_with_backoff() {
        let s = servers(3);
        let mut p = Plan::default();
        let mut at = 0;
        let mut seen = vec![];
        for _ in 0..9 {
            let n = p.next(&s, at, &Miss::Unreachable).unwrap();
            seen.push((n.server, n.pause.as_millis()));
            at = n.server;
        }
        assert_eq!(
            seen,
            [
                (1, 0),
                (2, 0),
                (0, 200),
                (1, 0),
                (2, 0),
                (0, 400),
                (1, 0),
                (2, 0),
                (0, 800)
            ]
        );
        let mut p = Plan::default();
        let pauses: Vec<_> = (0..6)
            .map(|_| {
                p.next(&servers(1), 0, &Miss::Unreachable)
                    .unwrap()
                    .pause
                    .as_millis()
            })
            .collect();
        assert_eq!(pauses, [200, 400, 800, 1600, 2000, 2000], "capped at 2 s");
    }

    #[test]
    fn a_standby_sends_the_client_to_the_leader_at_once_when_it_is_in_the_list() {
        let s = servers(3);
        let mut p = Plan::default();
        assert_eq!(
            p.next(&s, 0, &standby("http://s2:7070")),
            Some(Next {
                server: 2,
                pause: Duration::ZERO
            })
        );
        // Not in the list: the next server instead, never the stranger.
        let mut p = Plan::default();
        assert_eq!(
            p.next(&s, 0, &standby("http://elsewhere:7070"))
                .unwrap()
                .server,
            1
        );
        // No leader known (an election is on): the next server.
        let mut p = Plan::default();
        let none = Miss::Unavailable {
            leader: None,
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(p.next(&s, 1, &none).unwrap().server, 2);
    }

    #[test]
    fn a_standby_naming_a_dead_leader_is_not_followed_back_to_it() {
        // a was the leader and died; b has not noticed yet and still names it; c leads now.
        let s = servers(3);
        let mut p = Plan::default();
        assert_eq!(p.next(&s, 0, &Miss::Unreachable).unwrap().server, 1);
        let n = p.next(&s, 1, &standby("http://s0:7070")).unwrap();
        assert_eq!(n.server, 2, "on to c, not back to a");
        // After a pause a may be back: a hint to it is followed again.
        let n = p.next(&s, 2, &standby("http://s0:7070")).unwrap();
        assert_eq!((n.server, n.pause), (0, Duration::from_secs(1)));
        assert_eq!(p.next(&s, 1, &standby("http://s0:7070")).unwrap().server, 0);
    }

    #[test]
    fn a_round_of_503s_waits_for_the_longest_retry_after() {
        // Two servers pointing at each other (a leader change in progress): a pause every
        // round, at least the Retry-After asked, so the client never spins.
        let s = servers(2);
        let mut p = Plan::default();
        let a = p.next(&s, 0, &standby("http://s1:7070")).unwrap();
        assert_eq!((a.server, a.pause), (1, Duration::ZERO));
        let b = p.next(&s, 1, &standby("http://s0:7070")).unwrap();
        assert_eq!((b.server, b.pause), (0, Duration::from_secs(1)));
        // A lone degraded server: its Retry-After each time.
        let mut p = Plan::default();
        let degraded = Miss::Unavailable {
            leader: None,
            retry_after: Some(Duration::from_secs(1)),
        };
        for _ in 0..3 {
            assert_eq!(
                p.next(&servers(1), 0, &degraded),
                Some(Next {
                    server: 0,
                    pause: Duration::from_secs(1)
                })
            );
        }
    }

    #[test]
    fn a_round_of_broken_exchanges_ends_the_request() {
        // One server: its broken exchange is the answer (nothing to fail over to).
        assert_eq!(Plan::default().next(&servers(1), 0, &Miss::Broken), None);
        // Every server breaks it: not a failover, something in the way.
        let s = servers(2);
        let mut p = Plan::default();
        assert_eq!(p.next(&s, 0, &Miss::Broken).map(|n| n.server), Some(1));
        assert_eq!(p.next(&s, 1, &Miss::Broken), None);
        // A leader killed mid-request, the other server not leading yet: ridden out.
        let mut p = Plan::default();
        assert!(p.next(&s, 0, &Miss::Broken).is_some());
        let n = p.next(&s, 1, &standby("http://s0:7070")).unwrap();
        assert_eq!((n.server, n.pause), (0, Duration::from_secs(1)));
        assert!(p.next(&s, 0, &Miss::Unreachable).is_some());
    }

    #[test]
    fn what_may_be_sent_again() {
        // Nothing sent: another server may have it, even a plain submit.
        assert!(Miss::Unreachable.retryable(false, 2));
        // A lone server that is down: an error at once ("is it running?").
        assert!(!Miss::Unreachable.retryable(true, 1));
        // The server did nothing: another one may lead.
        assert!(standby("http://x:1").retryable(false, 2));
        // A lone server: its 503 is waited out only for what is safe to repeat (a plain
        // write says at once that the server is unavailable).
        assert!(standby("http://x:1").retryable(true, 1));
        assert!(!standby("http://x:1").retryable(false, 1));
        // It may have done it: only what is safe to repeat.
        assert!(!Miss::Broken.retryable(false, 3));
        assert!(Miss::Broken.retryable(true, 1));
    }

    #[test]
    fn retrying_reads_as_one_line() {
        let r = Retrying {
            from: "http://a:1".into(),
            to: "http://b:1".into(),
            reason: "cannot connect (Connection refused (os error 111))".into(),
            pause: Duration::ZERO,
        };
        assert_eq!(
            r.to_string(),
            "http://a:1: cannot connect (Connection refused (os error 111)); moving to http://b:1"
        );
        let r = Retrying {
            to: "http://a:1".into(),
            pause: Duration::from_millis(1500),
            ..r
        };
        assert!(r.to_string().ends_with("; retrying in 1.5s"), "{r}");
    }
}
