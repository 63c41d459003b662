//! One module per group of commands. Each returns the process exit code.

pub mod audit;
pub mod auth;
pub mod bench;
pub mod cron;
pub mod events;
pub mod flow;
pub mod local;
pub mod sim;
pub mod submit;
pub mod tasks;
pub mod up;

use crate::cli::ClientOpts;

/// The SDK client for a client command's `--server`, its token (`--token`, `DROVER_TOKEN`,
/// or the credentials file), `--ca-cert` and `--namespace`. A request the server refuses for
/// now (a full queue's 429, a 503 with `Retry-After`) is retried with backoff, each wait
/// said on stderr.
pub fn client(opts: &ClientOpts) -> anyhow::Result<drover_client::Client> {
    let ca = opts.ca_cert.as_deref().map(read_pem).transpose()?;
    let client = drover_client::Client::with_ca(
        &opts.server,
        auth::token_for(opts),
        drover_client::DEFAULT_TIMEOUT,
        ca.as_deref(),
    )?
    .on_retry(|r| eprintln!("{}", retry_line(r)));
    Ok(match opts.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => client.in_namespace(ns),
        None => client,
    })
}

/// `drover: the server refused POST /v1/tasks for now (429: ...); retrying in 1.1 s (try 2)`.
pub fn retry_line(r: &drover_client::Retrying) -> String {
    format!(
        "drover: the server refused {} for now ({}: {}); retrying in {:.1} s (try {})",
        r.request,
        r.status,
        r.message,
        r.wait.as_secs_f64(),
        r.attempt
    )
}

/// A PEM file's bytes, or a usage error naming it.
pub fn read_pem(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| crate::exit::usage(format!("cannot read {}: {e}", path.display())))
}
