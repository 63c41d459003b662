//! The coordinator's vocabulary with the shell: its configuration, the inputs it handles, the
//! effects it asks for (writes, sends, replies) and the snapshot it starts from.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::backlog::QueueFull;
use super::flow::{FlowRecord, FlowTask};
use super::ready::QueueConfig;
use super::schedules::ScheduleOp;
use super::workers::DrainError;
use crate::dag::WorkflowRecord;
use crate::model::{
    AttemptOutcome, AttemptRecord, AttemptRef, Event, LeaseToken, LogChunk, LogStream, Micros,
    Scoped, TaskDef, TaskId, TaskRecord, TaskState, WorkerInfo,
};
use crate::placement::{AdaptiveConfig, PlacementSpec, Strategy};
use crate::schedule::ScheduleRecord;

/// A connection of a worker, numbered by the driver.
pub type SessionId = u64;
/// A request waiting for a reply, numbered by the driver.
pub type RequestId = u64;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// How long an attempt's lease lasts without a heartbeat renewing it.
    pub lease_ms: u64,
    /// After a restart, how long leased tasks wait for their workers to re-attach.
    pub restart_grace_ms: u64,
    /// Lease expiries after which a task is declared `dead` (poison).
    pub max_lost: u32,
    pub backoff_cap_ms: u64,
    pub default_strategy: Strategy,
    /// A worker silent this long (no heartbeat or update) gets no new assignments.
    pub suspect_after_ms: u64,
    /// Output kept per attempt and stream; the rest is dropped with a marker.
    pub max_log_bytes: usize,
    /// Unplaceable tasks looked at per dispatch round before giving up (head-of-line bound).
    pub dispatch_scan_limit: usize,
    /// Default strategy per queue (`drover queue set Q --strategy S`); a task's own
    /// override wins, `default_strategy` applies to other queues.
    pub queue_strategies: BTreeMap<Scoped, Strategy>,
    /// Tuning of the `adaptive` strategy's model.
    pub adaptive: AdaptiveConfig,
    /// Virtual nodes per worker on the `consistent_hash` ring.
    pub hash_vnodes: u32,
    /// At most this many tasks waiting (pending or queued) over all queues: a submit past
    /// it is refused (`SubmitError::QueueFull`). `None`: no server-wide limit.
    pub max_queued: Option<u64>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            lease_ms: 15_000,
            restart_grace_ms: 20_000,
            max_lost: 3,
            backoff_cap_ms: 300_000,
            default_strategy: Strategy::default(),
            suspect_after_ms: 3_000,
            max_log_bytes: 1 << 20,
            dispatch_scan_limit: 1024,
            queue_strategies: BTreeMap::new(),
            adaptive: AdaptiveConfig::default(),
            hash_vnodes: crate::placement::hash::DEFAULT_VNODES,
            max_queued: None,
        }
    }
}

/// A task as submitted; the shell has generated its id and validated it.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub id: TaskId,
    pub def: TaskDef,
    pub not_before: Option<Micros>,
}

/// How a worker says an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kind: AttemptOutcome,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// A handler's return value (compact JSON, checked and bounded by the shell); kept only
    /// when the attempt succeeded, and only until its write.
    pub result: Option<Arc<str>>,
}

#[derive(Clone, Debug)]
pub enum Input {
    /// Replies `Submitted`, or `SubmitRefused(QueueFull)` with nothing stored.
    Submit {
        req: RequestId,
        tasks: Vec<NewTask>,
    },
    /// Submit with placement specs (strategy override, routing key, resources, selector)
    /// until `TaskDef` carries its own. Replies like `Submit`.
    SubmitPlaced {
        req: RequestId,
        tasks: Vec<(NewTask, PlacementSpec)>,
    },
    /// Take nothing new; what it holds runs to the end. Replies `Reply::Drain`.
    DrainWorker {
        req: RequestId,
        name: String,
    },
    /// Undo `DrainWorker`. Replies `Reply::Drain`.
    ResumeWorker {
        req: RequestId,
        name: String,
    },
    Cancel {
        req: RequestId,
        task_id: TaskId,
    },
    /// Submit with flow options (dependencies, serial key, deadline, workflow). Replies
    /// `Submitted` or `SubmitRefused` (nothing stored), like every submit.
    SubmitFlow {
        req: RequestId,
        tasks: Vec<FlowTask>,
        /// Written with the tasks when the submit is accepted (a workflow or its rerun).
        workflow: Option<WorkflowRecord>,
    },
    /// Task retention deleted these tasks: a key names its task only while the task is
    /// kept, so a later submit with it creates a new one. No reply.
    ForgetKeys {
        keys: Vec<(Scoped, TaskId)>,
    },
    /// Replace a queue's configuration. Replies `Reply::Done`.
    ConfigureQueue {
        req: RequestId,
        config: QueueConfig,
    },
    /// Add, change, pause, resume, delete, run or backfill a schedule. Replies
    /// `Reply::Scheduled`.
    Schedule {
        req: RequestId,
        op: ScheduleOp,
    },
    /// A worker registers a session. Replies `Reply::Joined`: refused (nothing changes) while
    /// another session of the same name is live, i.e. connected and not `lost`.
    WorkerJoin {
        req: RequestId,
        session: SessionId,
        info: WorkerInfo,
        /// Attempts it still holds from before (re-attach after a reconnect or server restart).
        held: Vec<AttemptRef>,
    },
    WorkerLeave {
        session: SessionId,
    },
    Heartbeat {
        session: SessionId,
        /// Attempts it holds now.
        held: Vec<AttemptRef>,
    },
    Started {
        session: SessionId,
        attempt: AttemptRef,
    },
    Finished {
        session: SessionId,
        attempt: AttemptRef,
        outcome: Outcome,
    },
    Log {
        session: SessionId,
        attempt: AttemptRef,
        stream: LogStream,
        data: Vec<u8>,
    },
    /// The shell ran no timers and delivered nothing for `paused` (its store was slow or
    /// refused commits) and delivers again from now: every live lease is extended by that
    /// time, since its worker may only now hear of its assignment. No reply.
    DeliveryResumed {
        paused: Micros,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub task_id: TaskId,
    pub attempt: u32,
    pub lease: LeaseToken,
    /// Its definition; the body is `TaskSpec::InStore` unless the driver resolved it.
    pub def: Arc<TaskDef>,
    pub upstream: Upstream,
}

/// What an attempt gets from its succeeded workflow upstreams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstream {
    /// A handler task's: (node name, result or output).
    pub results: Vec<(String, String)>,
    /// A command's, added to its environment: `DROVER_UPSTREAM_<NODE>_OUTPUT` (an output too
    /// large for an environment variable, `MAX_ENV_OUTPUT`, is left out).
    pub env: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToWorker {
    Assign(Assignment),
    /// Stop this attempt: cancelled, reclaimed, or unknown.
    Cancel(AttemptRef),
    /// A result or start for a stale attempt was refused.
    Reject {
        attempt: AttemptRef,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Submitted(Vec<TaskId>),
    Cancelled(Result<(), CancelError>),
    Drain(Result<(), DrainError>),
    /// A flow submit refused as a whole.
    SubmitRefused(SubmitError),
    /// A schedule operation: the tasks it fired (a run or a backfill), or why it was refused.
    Scheduled(Result<Vec<TaskId>, ScheduleError>),
    /// A worker join: accepted, or refused with nothing changed.
    Joined(Result<(), JoinError>),
    Done,
}

/// Why a worker's registration was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// Another session of this name is live (connected, not lost): never a takeover. The
    /// name frees up when that session ends (its stream closes) or falls silent for a lease.
    NameInUse(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelError {
    /// Not in the active set: unknown or already finished (the shell tells which).
    NotActive,
}

/// Why a submit was refused as a whole (nothing was stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// An upstream is neither active, nor in this submit, nor known terminal: the shell
    /// should re-read the store and retry (it finished meanwhile) or reject it as unknown.
    UnknownUpstream(TaskId),
    /// A workflow rerun while the workflow still has active nodes.
    WorkflowRunning(String),
    /// The tasks would take a queue's or the server's waiting tasks past `max_queued`.
    QueueFull(QueueFull),
}

/// Why a schedule operation was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The trigger does not parse (cron syntax, zone, zero interval).
    BadTrigger(String),
    NotFound(String),
}

/// One durable mutation. A batch of them is committed in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// The whole current record; `is_new` on the first write of a task.
    Task {
        record: TaskRecord,
        is_new: bool,
    },
    Attempt(AttemptRecord),
    Event(Event),
    Log(LogChunk),
    /// A task's flow (options, upstreams still waited on); upsert by task id.
    Flow(FlowRecord),
    /// A queue's configuration; upsert by name.
    Queue(QueueConfig),
    /// A workflow and the task of each node; upsert by id (a rerun replaces node tasks).
    Workflow(WorkflowRecord),
    /// A schedule and its last handled slot; upsert by name.
    Schedule(ScheduleRecord),
    ScheduleDeleted(Scoped),
    /// A worker was drained or resumed; kept across restarts and reconnects.
    WorkerDrain {
        name: String,
        drained: bool,
    },
}

/// What a call produced, for the driver to carry out: writes first, then the rest.
#[derive(Debug, Default)]
pub struct Effects {
    pub writes: Vec<Write>,
    pub sends: Vec<(SessionId, ToWorker)>,
    pub replies: Vec<(RequestId, Reply)>,
    /// Results or starts refused because their lease was stale.
    pub stale_rejected: u64,
    /// Leases reclaimed by expiry.
    pub reclaimed: u64,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.sends.is_empty() && self.replies.is_empty()
    }
}

/// The active state loaded from the store at start.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Non-terminal tasks with their current attempt.
    pub tasks: Vec<(TaskRecord, Option<AttemptRecord>)>,
    pub next_task_seq: u64,
    pub next_event_seq: u64,
    /// Flow records of non-terminal tasks.
    pub flows: Vec<FlowRecord>,
    pub queues: Vec<QueueConfig>,
    /// Every stored idempotency key with its task.
    pub idempotency_keys: Vec<(Scoped, TaskId)>,
    pub schedules: Vec<ScheduleRecord>,
    /// For each workflow with active nodes: the terminal states of its other current nodes
    /// (the shell reads them; the core keeps no history).
    pub workflows_ended: Vec<(String, Vec<TaskState>)>,
    /// Workers drained by an operator (they take nothing new when they connect).
    pub drained_workers: Vec<String>,
}
