//! One request's tries: to the server that answered last, then where `failover::Plan` says
//! after each miss (another server, or the same one after a 429), until an answer to keep.

use std::sync::atomic::Ordering;
use std::time::Duration;

use drover_api::cluster::LEADER_HEADER;

use crate::error;
use crate::failover::{self, Miss, Plan};

/// A try's outcome: the answer to keep, or why it missed and the error to give if no try
/// follows.
type Try = std::result::Result<reqwest::Response, (Miss, ClientError)>;
use crate::{decode_error, transport, Client, ClientError, Result, Retrying, UNAVAILABLE_RETRY};

impl Client {
    /// Sends the request `build` makes for a server URL, to the server that answered last,
    /// then, after each miss, where [`failover::Plan`] says, until an answer other than 503
    /// comes, the miss may not be retried ([`failover::Miss::retryable`]) or
    /// [`UNAVAILABLE_RETRY`] is over. The URL that answered, and its answer.
    pub(crate) async fn exchange(
        &self,
        repeat: bool,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<(String, reqwest::Response)> {
        let bases = &self.inner.bases;
        let timeout = self.inner.timeout;
        let give_up = tokio::time::Instant::now() + UNAVAILABLE_RETRY.min(timeout);
        let mut plan = Plan::default();
        let mut at = self.inner.current.load(Ordering::Relaxed) % bases.len();
        loop {
            let base = &bases[at];
            let mut rb = build(base);
            if let Some(t) = &self.inner.token {
                rb = rb.bearer_auth(t);
            }
            // The whole exchange for plain requests (`build` sets it too); the answer's
            // headers for streams.
            let (miss, error) = match one_try(base, timeout, rb).await {
                Ok(resp) => {
                    self.inner.current.store(at, Ordering::Relaxed);
                    return Ok((base.clone(), resp));
                }
                Err(missed) => missed,
            };
            let error = self.explain(error, &miss);
            if !miss.retryable(repeat, bases.len()) {
                return Err(error);
            }
            let Some(next) = plan.next(bases, at, &miss) else {
                return Err(error);
            };
            if tokio::time::Instant::now() + next.pause > give_up {
                return Err(self.gave_up(error));
            }
            if let Some(hook) = &self.inner.on_retry {
                hook(&Retrying {
                    from: base.clone(),
                    to: bases[next.server].clone(),
                    reason: reason(&miss, &error),
                    pause: next.pause,
                });
            }
            self.inner.current.store(next.server, Ordering::Relaxed);
            tokio::time::sleep(next.pause).await;
            at = next.server;
        }
    }

    /// A standby's 503 naming a leader this client was not given: says so, and what to do.
    fn explain(&self, error: ClientError, miss: &failover::Miss) -> ClientError {
        let failover::Miss::Unavailable {
            leader: Some(leader),
            ..
        } = miss
        else {
            return error;
        };
        if drover_api::failover::position(&self.inner.bases, leader).is_some() {
            return error;
        }
        match error {
            ClientError::Api { status, mut error } => {
                error.message = format!(
                    "{} (the leader is {leader}, which is not one of the servers given to this \
                     client; add it to --server / DROVER_SERVER)",
                    error.message.trim_end_matches('.')
                );
                ClientError::Api { status, error }
            }
            other => other,
        }
    }

    /// The last error of a request that ran out of time, saying it tried every server.
    fn gave_up(&self, error: ClientError) -> ClientError {
        let bases = &self.inner.bases;
        let secs = UNAVAILABLE_RETRY.min(self.inner.timeout).as_secs();
        match error {
            ClientError::Unreachable { detail, .. } if bases.len() > 1 => {
                ClientError::Unreachable {
                    url: bases.join(", "),
                    detail: format!("{detail}; tried each of them for {secs}s"),
                }
            }
            other => other,
        }
    }
}

/// Why a try missed, for [`Retrying::reason`].
fn reason(miss: &failover::Miss, error: &ClientError) -> String {
    match (miss, error) {
        (failover::Miss::Unreachable, ClientError::Unreachable { detail, .. }) => {
            format!("cannot connect ({detail})")
        }
        (
            failover::Miss::Unavailable {
                leader: Some(l), ..
            },
            _,
        ) => format!("unavailable (503; it names the leader {l})"),
        (failover::Miss::Unavailable { .. }, e) => format!("unavailable (503: {e})"),
        (failover::Miss::Refused { .. }, e) => format!("refused for now (429: {e})"),
        (_, ClientError::Transport { detail, .. }) => format!("the request failed ({detail})"),
        (_, e) => e.to_string(),
    }
}

/// A `Retry-After` in whole seconds (at least 100 ms), if the answer has one.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).max(Duration::from_millis(100)))
}

/// Sends one try and sorts its outcome: any answer but 429 and 503 is kept.
async fn one_try(base: &str, timeout: Duration, rb: reqwest::RequestBuilder) -> Try {
    // The whole exchange for plain requests (`build` sets it too); the answer's headers for
    // streams.
    Err(match tokio::time::timeout(timeout, rb.send()).await {
        Ok(Ok(resp)) if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
            let retry_after = retry_after(&resp);
            (
                Miss::Refused { retry_after },
                decode_error(base, resp).await,
            )
        }
        Ok(Ok(resp)) if resp.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE => {
            return Ok(resp)
        }
        Ok(Ok(resp)) => {
            let leader = resp
                .headers()
                .get(LEADER_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
            let retry_after = retry_after(&resp);
            let error = decode_error(base, resp).await;
            (
                Miss::Unavailable {
                    leader,
                    retry_after,
                },
                error,
            )
        }
        Ok(Err(e)) if e.is_connect() => (
            Miss::Unreachable,
            ClientError::Unreachable {
                url: base.to_string(),
                detail: error::root_cause(&e),
            },
        ),
        Ok(Err(e)) => (Miss::Broken, transport(base, &e, timeout)),
        Err(_) => (
            Miss::Broken,
            ClientError::Transport {
                url: base.to_string(),
                detail: format!("no answer within {}s", timeout.as_secs_f64()),
            },
        ),
    })
}
