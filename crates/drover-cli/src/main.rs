//! `drover`: the one binary. `up`, `server` and `worker` run the parts; the other commands are
//! clients of the REST API (through `drover-client`).
//!
//! Exit codes: 0 success, 1 failure, 2 usage or invalid input; `submit --wait` exits with the
//! task's code (124 timed out, 130 cancelled). Errors are one line on stderr, never a panic.

/// The scheduler's hot path allocates many small, short-lived values (records, messages);
/// mimalloc measured faster than the system allocator on `drover bench`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod cli_auth;
mod cli_bench;
mod commands;
mod exit;
mod output;
mod parse;
mod signal;
mod stats;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error (a bug in drover): {}{at}",
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::from(if e.exit_code() == 0 { 0 } else { exit::USAGE });
            }
            eprintln!("error: {}", exit::clap_line(&e));
            return ExitCode::from(exit::USAGE);
        }
    };
    init_logging(&cli.command);

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = rt.block_on(dispatch(cli.command));
    // Do not wait for stray tasks (e.g. a worker still stopping) once the command is done.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", exit::one_line(&e));
            ExitCode::from(exit::for_error(&e))
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<u8> {
    use commands::*;
    match command {
        Command::Up(a) => up::up(a).await,
        Command::Server(a) => up::server(a).await,
        Command::Worker(a) => match a.action {
            Some(action) => tasks::worker_action(action).await,
            None => up::worker(a).await,
        },
        Command::Submit(a) => submit::run(*a).await,
        Command::Status(a) => tasks::status(a).await,
        Command::List(a) => tasks::list(a).await,
        Command::Cancel(a) => tasks::cancel(a).await,
        Command::Result(a) => tasks::result(a).await,
        Command::Logs(a) => tasks::logs(a).await,
        Command::Workers(a) => tasks::workers(a).await,
        Command::Events(a) => events::events(a).await,
        Command::Webhook(c) => events::webhook(c).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Sim(a) => sim::run(a),
        Command::Queue(c) => flow::queue(c).await,
        Command::Workflow(c) => flow::workflow(c).await,
        Command::Cron(c) => cron::cron(c).await,
        Command::Audit(a) => audit::audit(a).await,
        Command::Cluster(a) => cluster::cluster(a).await,
        Command::Token(c) => auth::token(c).await,
        Command::Login(a) => auth::login(a).await,
    }
}

/// Logs go to stderr: `info` for the long-running parts, `warn` otherwise; RUST_LOG overrides.
fn init_logging(command: &Command) {
    let default = match command {
        Command::Up(_) | Command::Server(_) | Command::Worker(_) => {
            "warn,drover_server=info,drover_worker=info,drover_store=info,drover=info"
        }
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
