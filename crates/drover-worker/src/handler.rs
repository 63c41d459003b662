//! Tasks as functions: handlers registered by kind, the context they run with, and the
//! executor that runs one handler attempt (the in-process twin of `exec.rs`).
//!
//! A handler takes its payload (deserialized with serde) and returns its result (serialized
//! to JSON), or an error whose message fails the attempt. It runs on the worker's runtime;
//! cancellation is cooperative ([`Ctx::cancelled`]): when the server cancels the attempt or
//! its timeout passes, the context says so and the handler gets [`CANCEL_GRACE`] to return
//! before it is dropped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use drover_api::proto::{HandlerSpec, Outcome};
use futures::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::exec::{self, ExecEvent, ExecResult, Kill, Sink, STDERR, STDOUT};

/// How long a cancelled (or timed-out) handler may take to notice and return.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// What a handler is called with besides its payload.
#[derive(Clone)]
pub struct Ctx {
    task_id: String,
    attempt: u32,
    upstream: Arc<BTreeMap<String, serde_json::Value>>,
    cancel: watch::Receiver<bool>,
    sink: Sink,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("task_id", &self.task_id)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Ctx {
    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// For a workflow node: the results of its succeeded upstream nodes, by node name.
    pub fn upstream(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.upstream
    }

    /// One upstream node's result as `T`.
    pub fn upstream_as<T: DeserializeOwned>(&self, node: &str) -> Result<T, String> {
        let v = self
            .upstream
            .get(node)
            .ok_or_else(|| format!("no result of an upstream node named {node:?}"))?;
        T::deserialize(v).map_err(|e| format!("upstream {node:?}: {e}"))
    }

    /// Whether the attempt was cancelled (or timed out): the handler should return soon.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves once the attempt is cancelled (or timed out).
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Writes one line to the attempt's log (stdout), as `drover logs` shows it.
    pub fn log(&self, line: impl Display) {
        (self.sink)(ExecEvent::Output {
            stream: STDOUT,
            data: format!("{line}\n").into_bytes(),
        });
    }

    /// Writes one line to the attempt's stderr log.
    pub fn log_error(&self, line: impl Display) {
        (self.sink)(ExecEvent::Output {
            stream: STDERR,
            data: format!("{line}\n").into_bytes(),
        });
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// A handler with its types erased: JSON text in, JSON text or an error message out.
pub(crate) type Erased = Arc<dyn Fn(Ctx, String) -> BoxFuture + Send + Sync>;

/// The handlers of a worker, by kind.
#[derive(Clone, Default)]
pub struct Handlers(HashMap<String, Erased>);

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Handlers {
    /// Registers `f` for `kind`: its payload is deserialized as `P`, its result serialized
    /// to JSON; an `Err` fails the attempt with its message.
    pub fn add<P, R, E, F, Fut>(&mut self, kind: &str, f: F)
    where
        F: Fn(Ctx, P) -> Fut + Send + Sync + 'static,
        P: DeserializeOwned + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize,
        E: Display,
    {
        let f = Arc::new(f);
        let erased: Erased = Arc::new(move |ctx, payload: String| {
            let f = f.clone();
            Box::pin(async move {
                let p: P = serde_json::from_str(&payload)
                    .map_err(|e| format!("the payload does not fit the handler's type: {e}"))?;
                let r = f(ctx, p).await.map_err(|e| e.to_string())?;
                serde_json::to_string(&r)
                    .map_err(|e| format!("the handler's result is not serializable: {e}"))
            })
        });
        self.0.insert(kind.to_string(), erased);
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.0.keys().cloned().collect();
        k.sort();
        k
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Erased> {
        self.0.get(kind)
    }
}

/// One handler attempt, taken out of the assignment.
pub(crate) struct Call {
    pub handler: Erased,
    pub spec: HandlerSpec,
    pub task_id: String,
    pub attempt: u32,
    pub timeout: Option<Duration>,
}

/// Runs the handler to its end and returns how it ended. A panic fails the attempt; so does
/// an error, whose message also goes to the attempt's stderr log.
pub(crate) async fn call(c: Call, mut kill: oneshot::Receiver<Kill>, sink: Sink) -> ExecResult {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let upstream = c
        .spec
        .upstream
        .iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.clone()));
            (k.clone(), value)
        })
        .collect();
    let ctx = Ctx {
        task_id: c.task_id,
        attempt: c.attempt,
        upstream: Arc::new(upstream),
        cancel: cancel_rx,
        sink: sink.clone(),
    };
    sink(ExecEvent::Started { pid: 0 });
    let run = std::panic::AssertUnwindSafe((c.handler)(ctx, c.spec.payload)).catch_unwind();
    let mut run = Box::pin(run);
    let timeout = async {
        match c.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stopped = tokio::select! {
        r = &mut run => return ended(r, &sink),
        () = timeout => {
            let ms = c.timeout.unwrap_or_default().as_millis();
            ExecResult {
                outcome: Outcome::TimedOut,
                exit_code: None,
                error: Some(format!("timed out after {ms}ms")),
                result: None,
            }
        }
        why = &mut kill => exec::killed(why.ok()),
    };
    // Cooperative: the context says so, and the handler may finish what it is doing.
    let _ = cancel_tx.send(true);
    let _ = tokio::time::timeout(CANCEL_GRACE, run).await;
    stopped
}

fn ended(
    r: Result<Result<String, String>, Box<dyn std::any::Any + Send>>,
    sink: &Sink,
) -> ExecResult {
    let error = match r {
        Ok(Ok(result)) => {
            return ExecResult {
                outcome: Outcome::Succeeded,
                exit_code: None,
                error: None,
                result: Some(result),
            }
        }
        Ok(Err(e)) => e,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            format!("the handler panicked: {what}")
        }
    };
    sink(ExecEvent::Output {
        stream: STDERR,
        data: format!("{error}\n").into_bytes(),
    });
    ExecResult::failed(error)
}
