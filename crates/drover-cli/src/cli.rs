//! The command line: every command, flag and default of `drover` (design section 2).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cli_auth::{AuthServerArgs, LoginArgs, TokenCommand};
pub use crate::cli_bench::BenchArgs;
use crate::output::Format;
use crate::parse;

#[derive(Parser, Debug)]
#[command(
    name = "drover",
    version,
    about = "Drover: a distributed task scheduler in one binary",
    after_help = "Start everything on this machine with `drover up`, then in another terminal:\n  \
                  drover submit --wait -- echo hello"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run everything on this machine: the store, a server and local workers.
    Up(UpArgs),
    /// Run the scheduler service (REST and gRPC on one port).
    Server(ServerArgs),
    /// Run a worker agent that connects to one or more servers and runs tasks.
    Worker(WorkerArgs),
    /// Submit a task: `drover submit [flags] -- CMD ARGS...`, or a workflow with --file.
    Submit(Box<SubmitArgs>),
    /// Show a task and its attempts.
    Status(StatusArgs),
    /// List tasks, newest first.
    List(ListArgs),
    /// Cancel a task (a running process is killed).
    Cancel(IdArgs),
    /// Print a handler task's result (JSON); with --wait, once it has ended.
    Result(ResultArgs),
    /// Print a task's output: its stdout to stdout, its stderr to stderr.
    Logs(LogsArgs),
    /// List the workers: alive, suspect (missed heartbeats), lost (gone), draining.
    Workers(ClientOpts),
    /// Print state changes (task, worker, workflow and schedule events), or follow them live
    /// with --follow.
    Events(EventsArgs),
    /// Manage webhooks: HMAC-signed POSTs of matching events, retried with backoff.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Measure throughput and latency of the real path (server, gRPC workers, durable store).
    Bench(BenchArgs),
    /// Replay placement strategies on simulated workers, deterministically (see docs/placement.md).
    Sim(SimArgs),
    /// Queues: concurrency limits, pause and resume, depth and running counts.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Workflows (DAGs submitted with `drover submit --file`): show, list, rerun.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Schedules: cron expressions with time zones, fixed rate, fixed delay.
    #[command(subcommand)]
    Cron(CronCommand),
    /// The audit log: every state-changing or refused request, newest first.
    Audit(crate::commands::audit::AuditArgs),
    /// The servers sharing the store: each one's name, address, role (leader or standby) and
    /// when it was last seen; the epoch and the leader's lease age.
    Cluster(ClientOpts),
    /// API tokens: create (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Save a token for a server in the credentials file, for later commands.
    Login(LoginArgs),
}

#[derive(Subcommand, Debug)]
pub enum CronCommand {
    /// Add (or replace) a schedule: `drover cron add NAME --cron "EXPR" -- CMD ARGS...`.
    Add(Box<CronAddArgs>),
    /// List schedules with their next fire time.
    List(ClientOpts),
    /// Stop firing (slots passed while paused are not fired on resume).
    Pause(CronNameArgs),
    /// Fire again from now on (the slots passed while paused are not fired).
    Resume(CronNameArgs),
    /// Delete a schedule (its tasks are kept).
    Rm(CronNameArgs),
    /// Fire once now.
    Run(CronNameArgs),
    /// Fire every slot of a past range (slots already fired are not fired again).
    Backfill(CronBackfillArgs),
}

#[derive(Args, Debug)]
pub struct CronNameArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Schedule name.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct CronBackfillArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub name: String,
    /// Start of the range (RFC 3339), inclusive.
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End of the range (RFC 3339), inclusive.
    #[arg(long, value_name = "TIME")]
    pub to: String,
}

#[derive(Args, Debug)]
pub struct CronAddArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Schedule name (adding an existing name replaces it).
    pub name: String,
    /// Cron expression: 5 fields (min hour dom month dow) or 6 (seconds first).
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// Time zone of the expression (IANA name) [default: UTC].
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Fixed rate instead of an expression, e.g. 90s.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Fixed delay: the next run starts this long after the previous one ended.
    #[arg(long, value_name = "DURATION")]
    pub delay_after_previous: Option<String>,
    /// While the previous run runs: allow (parallel), skip, queue (after it), replace
    /// (cancel it) [default: allow].
    #[arg(long, value_name = "POLICY")]
    pub overlap: Option<String>,
    /// After downtime: skip, run_once, run_all [default: skip].
    #[arg(long, value_name = "POLICY")]
    pub misfire: Option<String>,
    /// Most missed slots run_all fires [default: 1].
    #[arg(long, value_name = "N")]
    pub max_catch_up: Option<u32>,
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    #[arg(long, value_name = "K")]
    pub kind: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "P")]
    pub priority: Option<i32>,
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    #[arg(long, value_parser = parse::duration_text, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Environment variable for the task (repeatable): NAME=VALUE.
    #[arg(long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Secret environment variable for the task (repeatable): NAME=VALUE, or NAME to take the
    /// value from this shell's environment (kept out of `ps` and history). Stored encrypted,
    /// shown as ***.
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub secret_env: Vec<String>,
    /// The command and its arguments (after `--`).
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List queues with depth (pending + queued), running, concurrency and pause.
    List(ClientOpts),
    /// Set a queue's concurrency limit (0: none), default strategy, weight, rate and/or
    /// backlog limit.
    Set(QueueSetArgs),
    /// Stop starting tasks of a queue (running ones finish).
    Pause(QueueNameArgs),
    /// Start tasks of a paused queue again.
    Resume(QueueNameArgs),
}

#[derive(Args, Debug)]
pub struct QueueSetArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Queue name.
    pub name: String,
    /// Most tasks of the queue running at once; 0 removes the limit.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Default placement strategy of the queue ("" to remove).
    #[arg(long, value_name = "S")]
    pub strategy: Option<String>,
    /// Its share of dispatch among backlogged queues (1 to 10000; default 1).
    #[arg(long, value_name = "W")]
    pub weight: Option<u32>,
    /// At most this many starts per period: 100/s, 10/m, 5/h ("" removes the limit).
    #[arg(long, value_name = "N/UNIT")]
    pub rate: Option<String>,
    /// At most this many tasks waiting (pending or queued); submits beyond it get 429 and
    /// are retried by clients later. 0 removes the limit.
    #[arg(long, value_name = "N")]
    pub max_queued: Option<u64>,
}

#[derive(Args, Debug)]
pub struct QueueNameArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Queue name.
    pub name: String,
}

#[derive(Subcommand, Debug)]
pub enum WorkflowCommand {
    /// Show a workflow and each node's state.
    Show(WorkflowIdArgs),
    /// List the newest workflows.
    List(ClientOpts),
    /// Rerun a finished workflow's failed, skipped, cancelled, timed-out, dead and expired
    /// nodes (succeeded nodes are kept).
    Rerun(WorkflowRerunArgs),
}

#[derive(Args, Debug)]
pub struct WorkflowIdArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Workflow id.
    pub id: String,
}

#[derive(Args, Debug)]
pub struct WorkflowRerunArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Workflow id.
    pub id: String,
    /// Rerun only the nodes that did not succeed (required).
    #[arg(long)]
    pub from_failed: bool,
}

/// How client commands reach the server, and how they print.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Server URL, or a cluster's servers comma-separated: requests go to the one that answered
    /// last and move on (to the leader a standby names, else the next URL) when it cannot be
    /// reached or answers 503, for up to 30 s.
    #[arg(long, env = "DROVER_SERVER", default_value = drover_client::DEFAULT_SERVER, value_name = "URL[,URL...]")]
    pub server: String,
    /// API token, sent as a bearer token.
    #[arg(
        long,
        env = "DROVER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// PEM CA certificate to trust for an https:// server (besides the system's web PKI).
    #[arg(long, env = "DROVER_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The namespace to act in: what is submitted or added goes there, queues and schedules
    /// are looked up there, listings and events show only it [default: `default` for what is
    /// created or named; every namespace the token may see for listings]. For `token create`:
    /// the namespaces the new token is limited to (comma-separated).
    #[arg(long, env = "DROVER_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Directory of the embedded store (one SQLite file, drover.db).
    #[arg(long, default_value = "./drover-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Number of local workers.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub workers: u32,
    /// Address of the REST and gRPC listener.
    #[arg(long, default_value = "127.0.0.1:7070", value_parser = parse::listen_addr, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Slots (concurrent tasks) of each local worker [default: the worker's default, 4].
    #[arg(long, value_name = "N")]
    pub slots: Option<u32>,
    /// Extra assignments each local worker may hold waiting for a slot.
    #[arg(long, value_name = "N")]
    pub prefetch: Option<u32>,
    #[command(flatten)]
    pub auth: AuthServerArgs,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address of the REST and gRPC listener (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7070", value_parser = parse::listen_addr, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The store: sqlite://PATH (relative), sqlite:///ABSOLUTE/PATH, or PostgreSQL as
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB (the database must exist; its tables are
    /// created or migrated at start). Another schema than the default one:
    /// ...?options=-csearch_path%3DSCHEMA (the schema must exist).
    #[arg(
        long,
        default_value = "sqlite://drover-data/drover.db",
        value_name = "URL"
    )]
    pub store: String,
    /// Directory of the server's own files: the admin token of a fresh store and the secret
    /// key (unless --admin-token-file / --secret-key-file say otherwise) [default: the SQLite
    /// file's directory; with a postgres:// store, ./drover-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Lease of an attempt; a worker silent this long loses its tasks.
    #[arg(long, default_value = "15s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub lease: u64,
    /// How often workers heartbeat.
    #[arg(long, default_value = "1s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub heartbeat: u64,
    /// After a restart, how long running tasks wait for their workers to re-attach.
    #[arg(long, default_value = "20s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub restart_grace: u64,
    /// Times a task may lose its worker before it is declared dead.
    #[arg(long, value_name = "N")]
    pub max_lost: Option<u32>,
    /// At most this many tasks waiting (pending or queued) over all queues: a submit beyond
    /// it gets 429 with Retry-After and stores nothing (a queue's own limit: `drover queue set
    /// NAME --max-queued N`). 0: no limit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_queued: u64,
    /// How long a failing store commit is retried (with backoff) before the server stops.
    /// Meanwhile /readyz answers 503 and state-changing requests get 503 with Retry-After;
    /// reads keep working. 0: stop at the first failed commit.
    #[arg(long, default_value = "30s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub store_retry: u64,
    /// With several servers on one PostgreSQL store: the leader's lease (1s to 300s). A
    /// standby takes over about this long after the leader dies; the leader renews it every
    /// third of it, so shorter leases fail over faster but cost more renewals and make a slow
    /// database more likely to cost the leader its lease.
    #[arg(long, default_value = "5s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub leader_lease: u64,
    /// This server's name in the cluster (`drover cluster`) [default: HOST:PORT].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The URL clients and workers reach this server at, which standbys give them to find
    /// the leader [default: http(s)://HOST:PORT of --listen].
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// How long events (and webhook delivery attempts) are kept, e.g. 7d.
    #[arg(long, default_value = "7d", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub event_retention: u64,
    /// How long finished tasks (with their attempts and logs) are kept, e.g. 30d.
    #[arg(long, default_value = "7d", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub task_retention: u64,
    /// How long audit records are kept.
    #[arg(long, default_value = "90d", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub audit_retention: u64,
    /// Bound on one webhook POST.
    #[arg(long, default_value = "10s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub webhook_timeout: u64,
    /// Tries per event and webhook before it is marked failed.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub webhook_attempts: u32,
    /// Pause after a failed webhook POST; doubles after each (with jitter).
    #[arg(long, default_value = "1s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub webhook_backoff: u64,
    /// The key that encrypts secret env at rest [default: secret.key in --data-dir, created
    /// on first start, mode 0600].
    #[arg(long, value_name = "PATH")]
    pub secret_key_file: Option<PathBuf>,
    /// While rotating the key: the old key file, which still decrypts what it encrypted (new
    /// secrets are encrypted with --secret-key-file).
    #[arg(long, value_name = "PATH")]
    pub previous_secret_key_file: Option<PathBuf>,
    /// Let webhooks reach loopback, private, link-local and other non-public addresses
    /// (for receivers on this machine or network) [default: refused].
    #[arg(long)]
    pub allow_private_webhooks: bool,
    /// A request's headers must arrive within this; a half-sent request is closed.
    #[arg(long, default_value = "10s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub header_read_timeout: u64,
    /// A connection with no request in flight this long is closed.
    #[arg(long, default_value = "60s", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub idle_timeout: u64,
    /// Open connections at once; more wait to be accepted.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
    /// Open event streams (SSE and gRPC watch) at once; more get 503 / RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_event_streams: usize,
    /// Requests per second per client (its token, else its address); more get 429 with
    /// Retry-After. 0: no limit. /healthz and /readyz are exempt.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub rate_limit: u32,
    /// Requests a client may send at once above --rate-limit.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub rate_burst: u32,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    #[command(flatten)]
    pub auth: AuthServerArgs,
}

/// TLS of the server's one port (REST, gRPC and the dashboard).
#[derive(Args, Debug, Clone)]
pub struct ServerTlsArgs {
    /// PEM certificate chain to serve TLS with.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that signs worker certificates: workers must present one (mTLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct WorkerArgs {
    /// Manage a running worker instead of running one.
    #[command(subcommand)]
    pub action: Option<WorkerAction>,
    /// Server URL(s), comma-separated (a cluster's servers): when the stream fails or a standby
    /// answers UNAVAILABLE, the worker reconnects to the leader it names (if listed here), else
    /// to the next URL, and re-attaches the attempts it holds.
    #[arg(long, env = "DROVER_SERVER", default_value = drover_client::DEFAULT_SERVER, value_name = "URL[,URL...]")]
    pub server: String,
    /// Worker name [default: HOSTNAME-PID].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Tasks run at the same time [default: 4].
    #[arg(long, value_name = "N")]
    pub slots: Option<u32>,
    /// Extra assignments held waiting for a slot [default: 0; see docs/placement.md].
    #[arg(long, value_name = "N")]
    pub prefetch: Option<u32>,
    /// Labels tasks can select on: k=v,..
    #[arg(long, value_name = "K=V,..")]
    pub labels: Vec<String>,
    /// Kinds of task accepted: a,b [default: every kind].
    #[arg(long, value_name = "A,B")]
    pub kinds: Vec<String>,
    /// Namespaces whose tasks it runs [default: every namespace its token allows].
    #[arg(long, env = "DROVER_NAMESPACE", value_name = "NS,..")]
    pub namespace: Vec<String>,
    /// Resources offered: cpu=4,mem=8GiB,gpu=1 (sizes in bytes).
    #[arg(long, value_name = "K=N,..")]
    pub resources: Vec<String>,
    /// Output kept per stream of each attempt, e.g. 1MiB.
    #[arg(long, value_parser = parse::quantity, value_name = "SIZE")]
    pub max_output: Option<u64>,
    /// PEM CA certificate to trust for https:// servers (besides the system's web PKI).
    #[arg(long, env = "DROVER_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate this worker presents to a server with --tls-client-ca.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Names of this worker's environment variables its tasks also get: A,B. Tasks otherwise
    /// start with a clean environment (PATH, HOME, LANG, DROVER_* and their own env).
    #[arg(long, value_name = "NAME,..")]
    pub pass_env: Vec<String>,
    /// A worker (or admin) token [default: the credentials file's for the first --server].
    #[arg(
        long,
        env = "DROVER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum WorkerAction {
    /// Stop giving the worker new tasks; its running tasks finish (state draining, then drained).
    Drain(WorkerNameArgs),
    /// Undo a drain.
    Resume(WorkerNameArgs),
}

#[derive(Args, Debug)]
pub struct WorkerNameArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// The worker's name, as `drover workers` shows it.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Queue [default: default].
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Task kind; `noop` completes on the worker without a process (no CMD); with --payload,
    /// the handler to call.
    #[arg(long, value_name = "K")]
    pub kind: Option<String>,
    /// Call the handler of --kind with this JSON payload (at most 1 MiB; `@FILE` reads a
    /// file, `@-` stdin) instead of running a command; --wait prints its result.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["command", "file"], requires = "kind")]
    pub payload: Option<String>,
    /// Higher runs first [default: 0].
    #[arg(long, allow_hyphen_values = true, value_name = "P")]
    pub priority: Option<i32>,
    /// Retries after a failed or timed-out attempt [default: 0].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Base of the exponential retry backoff, e.g. 1s.
    #[arg(long, allow_hyphen_values = true, value_parser = parse::duration_text, value_name = "DURATION")]
    pub backoff: Option<String>,
    /// Per-attempt timeout, e.g. 30s; the process group is killed when it passes.
    #[arg(long, allow_hyphen_values = true, value_parser = parse::duration_text, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Hold the task this long before it may run, e.g. 10s.
    #[arg(long, allow_hyphen_values = true, value_parser = parse::duration_text, value_name = "DURATION")]
    pub delay: Option<String>,
    /// A second submit with the same key returns the first task instead of a new one
    /// [default with several --server URLs: a new one per command, `drover-submit-UUID`, so a
    /// retry after a failover never creates a second task].
    #[arg(long, value_name = "K")]
    pub idempotency_key: Option<String>,
    /// Worker labels required: k=v, k!=v, 'k in (a,b)', 'k notin (a,b)', k, !k (comma separated).
    #[arg(long, value_name = "SELECTOR")]
    pub label_selector: Option<String>,
    /// Placement strategy: round_robin, random, least_loaded, power_of_two, consistent_hash,
    /// bin_pack, spread, adaptive, broadcast, failover [default: the queue's].
    #[arg(long, value_name = "S")]
    pub strategy: Option<String>,
    /// Routing key: consistent_hash keeps one key on one worker.
    #[arg(long, value_name = "K")]
    pub key: Option<String>,
    /// Resources the task needs: cpu=2,mem=1GiB,gpu=1,NAME=N.
    #[arg(long, value_name = "K=N,..")]
    pub resources: Vec<String>,
    /// The label `spread` balances over [default: zone].
    #[arg(long, value_name = "LABEL")]
    pub spread_label: Option<String>,
    /// Run after these tasks succeed (comma-separated ids); pending until then.
    #[arg(long, value_delimiter = ',', value_name = "ID,..")]
    pub after: Vec<String>,
    /// When an upstream task fails (or is cancelled, skipped, ...): skip this one, or run it
    /// anyway [default: skip].
    #[arg(long, value_name = "skip|run")]
    pub on_upstream_failure: Option<String>,
    /// With --key: tasks with the same key run one at a time, in submission order.
    #[arg(long)]
    pub serial: bool,
    /// At most --max-concurrent tasks with this key run at once, across queues (e.g. one
    /// customer's tasks); the others wait their turn.
    #[arg(long, value_name = "KEY")]
    pub concurrency_key: Option<String>,
    /// The limit of --concurrency-key [default: 1].
    #[arg(long, value_name = "N", requires = "concurrency_key")]
    pub max_concurrent: Option<u32>,
    /// Hold the task until this time (RFC 3339, e.g. 2026-01-31T09:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Expire the task if it has not started in time: a duration (10m) or an RFC 3339 time.
    #[arg(long, value_name = "DURATION|TIME")]
    pub deadline: Option<String>,
    /// Submit a workflow (YAML or JSON: {name, tasks: [{name, argv, after: [names], ..}]})
    /// instead of one task.
    #[arg(long, short = 'f', value_name = "PATH", conflicts_with = "command")]
    pub file: Option<PathBuf>,
    /// Environment variable for the task (repeatable): NAME=VALUE.
    #[arg(long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Secret environment variable for the task (repeatable): NAME=VALUE, or NAME to take the
    /// value from this shell's environment (kept out of `ps` and history). Stored encrypted,
    /// shown as ***.
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub secret_env: Vec<String>,
    /// Working directory of the task, on the worker.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Wait for the end, print the task's output (a handler's: its result) and exit with its
    /// exit code.
    #[arg(long)]
    pub wait: bool,
    /// The command and its arguments, passed exactly (no shell). Put them after `--`.
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Task id.
    pub id: String,
    /// Follow the task (listening to its events) until it ends, printing each change.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Only tasks in this state (queued, running, succeeded, failed, ...).
    #[arg(long, value_parser = parse::state, value_name = "S")]
    pub state: Option<String>,
    /// Only tasks of this queue.
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Page size (1 to 1000) [default: 100].
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Continue after a previous page (its next_cursor).
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
    /// Follow the pages to the end.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Task id.
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ResultArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Task id.
    pub id: String,
    /// Wait for the task to end first.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Task id.
    pub id: String,
    /// Attempt number [default: the latest].
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
    /// Follow the output live until the task ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Keep printing new events as they happen (reconnects if the server restarts).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only this task's own events.
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// Only task events of this queue.
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Only this workflow's events and the task events of its nodes.
    #[arg(long, value_name = "ID")]
    pub workflow: Option<String>,
    /// Only these states (comma-separated): task states; worker joined, suspect, lost, alive,
    /// draining, resumed, left; workflow pending, running, succeeded, failed, cancelled;
    /// schedule created, updated, paused, resumed, deleted, fired, skipped.
    #[arg(long, value_name = "S,..")]
    pub state: Option<String>,
    /// Only these types of event: task, worker, workflow, schedule (comma-separated).
    #[arg(long = "type", value_name = "T,..")]
    pub kind: Option<String>,
    /// Start after this sequence number [default: the newest 100, or now with --follow].
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Add a webhook: matching events are POSTed to URL as JSON.
    Add(WebhookAddArgs),
    /// List the webhooks.
    List(ClientOpts),
    /// Remove a webhook.
    Rm(WebhookIdArgs),
    /// Show a webhook's delivery attempts, newest first.
    Deliveries(WebhookDeliveriesArgs),
}

#[derive(Args, Debug)]
pub struct WebhookAddArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Where to POST: http:// or https://.
    pub url: String,
    /// Events to send: TYPE.STATE or TYPE.* with the types task, worker, workflow, schedule
    /// (task.failed, worker.lost, workflow.*, schedule.fired, ...), or * [default: *].
    #[arg(long, value_name = "E,..")]
    pub events: Vec<String>,
    /// Key of the X-Drover-Signature HMAC (8 to 256 characters) [default: generated, shown once].
    #[arg(
        long,
        value_name = "S",
        env = "DROVER_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
}

#[derive(Args, Debug)]
pub struct WebhookIdArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Webhook id.
    pub id: String,
}

#[derive(Args, Debug)]
pub struct WebhookDeliveriesArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Webhook id.
    pub id: String,
    /// Most attempts shown (1 to 1000) [default: 100].
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("drover").chain(args.iter().copied()))
    }

    #[test]
    fn submit_keeps_everything_after_the_separator() {
        let Command::Submit(s) = parse(&[
            "submit",
            "--queue",
            "q",
            "--priority",
            "-5",
            "--wait",
            "-o",
            "json",
            "--",
            "sh",
            "-c",
            "x",
            "--",
            "-o",
            "json",
        ])
        .unwrap()
        .command
        else {
            panic!("not submit")
        };
        assert_eq!(s.queue.as_deref(), Some("q"));
        assert_eq!(s.priority, Some(-5));
        assert!(s.wait);
        assert_eq!(s.client.output, Format::Json);
        assert_eq!(s.command, ["sh", "-c", "x", "--", "-o", "json"]);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(parse(&["submit", "--timeout", "-3s", "--", "true"]).is_err());
        assert!(parse(&["submit", "--priority", "high", "--", "true"]).is_err());
        assert!(parse(&["list", "--state", "nonsense"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["server", "--listen", "nowhere"]).is_err());
        assert!(parse(&["worker", "--max-output", "lots"]).is_err());
        assert!(parse(&["server", "--event-retention", "forever"]).is_err());
        assert!(parse(&["server", "--task-retention", "forever"]).is_err());
        assert!(parse(&["webhook", "add"]).is_err());
    }

    #[test]
    fn defaults() {
        let Command::Up(u) = parse(&["up"]).unwrap().command else {
            panic!()
        };
        assert_eq!(u.workers, 2);
        assert_eq!(u.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(u.data_dir, PathBuf::from("./drover-data"));
        let Command::Server(s) = parse(&["server", "--lease", "2s"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (s.lease, s.heartbeat, s.restart_grace),
            (2000, 1000, 20_000)
        );
        let Command::Bench(b) = parse(&["bench"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (b.tasks, b.workers, b.slots, b.batch),
            (20_000, 4, 64, 1000)
        );
    }
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// A strategy, a comma list, or `all` (the real ones plus the `oracle` baseline).
    #[arg(long, default_value = "all", value_name = "S")]
    pub strategy: String,
    /// Worker groups: COUNTxSPEED[:SLOTS][/FAIL], comma separated (e.g. 4x1,4x2,4x4:2).
    #[arg(long, default_value = "4x1,4x2,4x4", value_name = "SPEC")]
    pub workers: String,
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub tasks: usize,
    /// Poisson arrivals per simulated second [default: all at once].
    #[arg(long, value_name = "RATE")]
    pub arrival: Option<f64>,
    /// Task duration at speed 1: fixed:M, exp:M (mean M) or pareto:A (shape A, mean 1).
    #[arg(long, default_value = "exp:1", value_name = "DIST")]
    pub duration: String,
    /// Probability that an attempt fails (every worker; per group with /FAIL in --workers).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fail_rate: f64,
    /// Assignments a worker may hold beyond its free slots [default: the worker's default].
    #[arg(long, value_name = "K")]
    pub prefetch: Option<u32>,
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub seed: u64,
    /// Queues with weights, `NAME:WEIGHT,...` (e.g. `a:1,b:2,c:5`); task i goes to queue i mod
    /// n, and the report shows each queue's share of starts while all are backlogged.
    #[arg(long, value_name = "Q:W,..")]
    pub queues: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
}
