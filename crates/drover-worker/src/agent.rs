//! The worker's state, independent of any connection: the attempts it holds (waiting for a slot
//! or running), the slot accounting, and the outbox of updates not yet sent. Connections come
//! and go (see `session.rs`); this state and the running processes survive them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use drover_api::proto::{
    assignment::Spec, server_message, worker_message, AttemptRef, Finished, Heartbeat, Outcome,
    Register, ServerMessage, WorkerMessage,
};
use tokio::sync::{mpsc, oneshot};

use crate::exec::{self, ExecEvent, ExecRequest, ExecResult, Kill, Sink};
use crate::handler::{self, Handlers};
use crate::outbox::Outbox;
use crate::WorkerConfig;

/// What an executor reports about one attempt.
#[derive(Debug)]
pub(crate) struct Event {
    attempt: AttemptRef,
    what: EventKind,
}

#[derive(Debug)]
enum EventKind {
    Exec(ExecEvent),
    Done(ExecResult),
}

/// An assignment waiting for a slot.
#[derive(Debug)]
struct Job {
    kind: String,
    spec: Spec,
    timeout_ms: Option<u64>,
    idempotency_key: Option<String>,
}

#[derive(Debug)]
enum Held {
    Waiting(Box<Job>),
    Running {
        /// Taken when the kill is sent.
        kill: Option<oneshot::Sender<Kill>>,
        /// The server refused this attempt: its process is being killed and its result will be
        /// dropped, but it occupies its slot until the process is gone.
        forgotten: bool,
        /// A handler: a shutdown lets it finish (a process is killed and given back).
        handler: bool,
    },
}

pub(crate) struct Agent {
    cfg: Arc<WorkerConfig>,
    held: HashMap<AttemptRef, Held>,
    /// Attempts in `Held::Waiting`, in arrival order.
    queue: VecDeque<AttemptRef>,
    /// Attempts in `Held::Running` (their processes are alive or being reaped).
    running: u32,
    pub(crate) outbox: Outbox,
    events: mpsc::UnboundedSender<Event>,
    stopping: bool,
    /// `cfg.pass_env`, shared by every attempt.
    pass_env: Arc<[String]>,
    /// Handlers by kind (the SDK's); a CLI worker has none.
    handlers: Arc<Handlers>,
}

impl Agent {
    pub(crate) fn new(
        cfg: Arc<WorkerConfig>,
        events: mpsc::UnboundedSender<Event>,
        handlers: Arc<Handlers>,
    ) -> Self {
        Agent {
            handlers,
            pass_env: cfg.pass_env.clone().into(),
            cfg,
            held: HashMap::new(),
            queue: VecDeque::new(),
            running: 0,
            outbox: Outbox::default(),
            events,
            stopping: false,
        }
    }

    pub(crate) fn running(&self) -> u32 {
        self.running
    }

    /// The first message of every connection. `held` also lists attempts whose result is still
    /// in the outbox, so the server keeps them attached until the result arrives.
    pub(crate) fn register(&self) -> WorkerMessage {
        let cfg = &self.cfg;
        let held = self.held_refs().chain(self.outbox.unreported()).cloned();
        WorkerMessage {
            body: Some(worker_message::Body::Register(Register {
                name: cfg.name.clone(),
                labels: cfg.labels.clone().into_iter().collect(),
                kinds: cfg.kinds.clone(),
                resources: cfg.resources.clone().into_iter().collect(),
                slots: cfg.slots,
                prefetch: cfg.prefetch,
                held: held.collect(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                namespaces: cfg.namespaces.clone(),
            })),
        }
    }

    pub(crate) fn heartbeat(&self) -> WorkerMessage {
        WorkerMessage {
            body: Some(worker_message::Body::Heartbeat(Heartbeat {
                held: self.held_refs().cloned().collect(),
                running: self.running,
            })),
        }
    }

    /// Attempts the worker answers for: waiting or running, not forgotten.
    fn held_refs(&self) -> impl Iterator<Item = &AttemptRef> {
        self.held.iter().filter_map(|(a, h)| match h {
            Held::Running {
                forgotten: true, ..
            } => None,
            _ => Some(a),
        })
    }

    pub(crate) fn on_server(&mut self, msg: ServerMessage) {
        match msg.body {
            Some(server_message::Body::Assignments(list)) => {
                for a in list.assignments {
                    self.on_assignment(a);
                }
            }
            Some(server_message::Body::Cancel(c)) => {
                for a in c.attempts {
                    self.cancel(a);
                }
                self.start_ready();
            }
            Some(server_message::Body::Rejected(r)) => {
                let Some(a) = r.attempt else {
                    tracing::warn!(reason = %r.reason, "server rejected an unnamed attempt");
                    return;
                };
                tracing::warn!(
                    task_id = %a.task_id,
                    attempt = a.attempt,
                    reason = %r.reason,
                    "server rejected the attempt; forgetting it"
                );
                self.forget(a);
                self.start_ready();
            }
            Some(server_message::Body::Registered(_)) => {
                tracing::warn!("ignoring a second registered message on one connection");
            }
            None => tracing::warn!("ignoring a server message without a body"),
        }
    }

    fn on_assignment(&mut self, a: drover_api::proto::Assignment) {
        let Some(attempt) = a.attempt else {
            tracing::warn!(kind = %a.kind, "ignoring an assignment without an attempt");
            return;
        };
        if self.stopping {
            self.finish(attempt, Outcome::Cancelled, "worker shutting down");
            return;
        }
        if self.held.contains_key(&attempt) {
            tracing::debug!(task_id = %attempt.task_id, "ignoring a repeated assignment");
            return;
        }
        if !self.cfg.kinds.is_empty() && !self.cfg.kinds.contains(&a.kind) {
            let error = format!("kind {:?} is not accepted by this worker", a.kind);
            self.finish(attempt, Outcome::Failed, &error);
            return;
        }
        let Some(spec) = a.spec else {
            self.finish(attempt, Outcome::Failed, "assignment has no spec");
            return;
        };
        // The benchmark path: nothing waits, so a no-op completes right here, with no map entry
        // and no task. (Something waits only while every slot is busy.)
        if matches!(spec, Spec::Noop(_)) && self.running < self.cfg.slots {
            self.complete_noop(attempt);
            return;
        }
        let job = Job {
            kind: a.kind,
            spec,
            timeout_ms: a.timeout_ms,
            idempotency_key: a.idempotency_key,
        };
        self.queue.push_back(attempt.clone());
        self.held.insert(attempt, Held::Waiting(Box::new(job)));
        // Keeps the invariant the no-op path relies on: something waits only if slots are full.
        self.start_ready();
    }

    fn complete_noop(&mut self, attempt: AttemptRef) {
        self.outbox.started(attempt.clone());
        self.outbox.finished(Finished {
            attempt: Some(attempt),
            outcome: Outcome::Succeeded as i32,
            exit_code: None,
            error: None,
            result: None,
        });
    }

    fn finish(&mut self, attempt: AttemptRef, outcome: Outcome, error: &str) {
        self.outbox.finished(Finished {
            attempt: Some(attempt),
            outcome: outcome as i32,
            exit_code: None,
            error: Some(error.to_string()),
            result: None,
        });
    }

    fn cancel(&mut self, attempt: AttemptRef) {
        match self.held.get_mut(&attempt) {
            Some(Held::Waiting(_)) => {
                self.held.remove(&attempt);
                self.queue.retain(|q| q != &attempt);
                self.finish(attempt, Outcome::Cancelled, "cancelled");
            }
            Some(Held::Running { kill, .. }) => {
                if let Some(kill) = kill.take() {
                    let _ = kill.send(Kill::Cancel);
                }
            }
            None => tracing::debug!(task_id = %attempt.task_id, "cancel for an attempt not held"),
        }
    }

    fn forget(&mut self, attempt: AttemptRef) {
        match self.held.get_mut(&attempt) {
            Some(Held::Waiting(_)) => {
                self.held.remove(&attempt);
                self.queue.retain(|q| q != &attempt);
            }
            Some(Held::Running {
                kill, forgotten, ..
            }) => {
                *forgotten = true;
                if let Some(kill) = kill.take() {
                    let _ = kill.send(Kill::Abandon);
                }
            }
            None => {}
        }
    }

    /// Starts waiting attempts while slots are free.
    fn start_ready(&mut self) {
        while self.running < self.cfg.slots {
            let Some(attempt) = self.queue.pop_front() else {
                return;
            };
            let Entry::Occupied(entry) = self.held.entry(attempt) else {
                continue;
            };
            if !matches!(entry.get(), Held::Waiting(_)) {
                continue;
            }
            let (attempt, Held::Waiting(job)) = entry.remove_entry() else {
                continue;
            };
            match job.spec {
                Spec::Noop(_) => self.complete_noop(attempt),
                Spec::Handler(spec) => self.start_handler(attempt, job.kind, spec, job.timeout_ms),
                Spec::Exec(spec) if spec.secret_error.is_some() => {
                    // The server could not open its secrets: run nothing.
                    let error = spec.secret_error.unwrap_or_default();
                    self.outbox.started(attempt.clone());
                    self.finish(attempt, Outcome::Failed, &error);
                }
                Spec::Exec(spec) => {
                    let req = ExecRequest {
                        argv: spec.argv,
                        env: spec.env,
                        secret_env: exec::SecretEnv(spec.secret_env),
                        pass_env: self.pass_env.clone(),
                        cwd: spec.cwd,
                        timeout: job
                            .timeout_ms
                            .filter(|&ms| ms > 0)
                            .map(Duration::from_millis),
                        task_id: attempt.task_id.clone(),
                        attempt: attempt.attempt,
                        idempotency_key: job.idempotency_key,
                        max_output_bytes: self.cfg.max_output_bytes,
                    };
                    let kill = self.spawn_exec(attempt.clone(), req);
                    self.held.insert(
                        attempt,
                        Held::Running {
                            kill: Some(kill),
                            forgotten: false,
                            handler: false,
                        },
                    );
                    self.running += 1;
                }
            }
        }
    }

    /// Calls the handler of `kind`; without one, the attempt fails at once.
    fn start_handler(
        &mut self,
        attempt: AttemptRef,
        kind: String,
        spec: drover_api::proto::HandlerSpec,
        timeout_ms: Option<u64>,
    ) {
        let Some(h) = self.handlers.get(&kind).cloned() else {
            self.outbox.started(attempt.clone());
            let error = format!("this worker has no handler for kind {kind:?}");
            self.finish(attempt, Outcome::Failed, &error);
            return;
        };
        let call = handler::Call {
            handler: h,
            spec,
            task_id: attempt.task_id.clone(),
            attempt: attempt.attempt,
            timeout: timeout_ms.filter(|&ms| ms > 0).map(Duration::from_millis),
        };
        let (kill_tx, kill_rx) = oneshot::channel();
        let (sink, events) = self.sink(&attempt);
        let a = attempt.clone();
        tokio::spawn(async move {
            let result = handler::call(call, kill_rx, sink).await;
            let _ = events.send(Event {
                attempt: a,
                what: EventKind::Done(result),
            });
        });
        self.held.insert(
            attempt,
            Held::Running {
                kill: Some(kill_tx),
                forgotten: false,
                handler: true,
            },
        );
        self.running += 1;
    }

    /// Where an attempt's executor reports its events.
    fn sink(&self, attempt: &AttemptRef) -> (Sink, mpsc::UnboundedSender<Event>) {
        let events = self.events.clone();
        let a = attempt.clone();
        let sink: Sink = Arc::new(move |ev| {
            let _ = events.send(Event {
                attempt: a.clone(),
                what: EventKind::Exec(ev),
            });
        });
        (sink, self.events.clone())
    }

    fn spawn_exec(&self, attempt: AttemptRef, req: ExecRequest) -> oneshot::Sender<Kill> {
        let (kill_tx, kill_rx) = oneshot::channel();
        let (sink, events) = self.sink(&attempt);
        tokio::spawn(async move {
            let result = exec::execute(req, kill_rx, sink).await;
            let _ = events.send(Event {
                attempt,
                what: EventKind::Done(result),
            });
        });
        kill_tx
    }

    pub(crate) fn on_event(&mut self, ev: Event) {
        let Event { attempt, what } = ev;
        match what {
            EventKind::Exec(e) => {
                if !matches!(
                    self.held.get(&attempt),
                    Some(Held::Running {
                        forgotten: false,
                        ..
                    })
                ) {
                    return;
                }
                match e {
                    ExecEvent::Started { pid } => {
                        // pid 0: a handler, in this process.
                        tracing::debug!(task_id = %attempt.task_id, pid, "started");
                        self.outbox.started(attempt);
                    }
                    ExecEvent::Output { stream, data } => self.outbox.log(&attempt, stream, data),
                }
            }
            EventKind::Done(r) => {
                let Some(Held::Running { forgotten, .. }) = self.held.remove(&attempt) else {
                    tracing::warn!(task_id = %attempt.task_id, "result for an attempt not running");
                    return;
                };
                self.running -= 1;
                if !forgotten {
                    self.outbox.finished(Finished {
                        attempt: Some(attempt),
                        outcome: r.outcome as i32,
                        exit_code: r.exit_code,
                        error: r.error,
                        result: r.result,
                    });
                }
                self.start_ready();
            }
        }
    }

    /// Stops taking work: waiting attempts are given back at once, running processes are
    /// killed and reported cancelled when they are gone; running handlers finish (within the
    /// worker's shutdown grace) and report as usual.
    pub(crate) fn begin_shutdown(&mut self) {
        self.stopping = true;
        while let Some(a) = self.queue.pop_front() {
            if let Some(Held::Waiting(_)) = self.held.remove(&a) {
                self.finish(a, Outcome::Cancelled, "worker shutting down");
            }
        }
        for held in self.held.values_mut() {
            if let Held::Running {
                kill,
                handler: false,
                ..
            } = held
            {
                if let Some(kill) = kill.take() {
                    let _ = kill.send(Kill::Shutdown);
                }
            }
        }
    }
}
