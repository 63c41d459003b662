//! One module per group of commands. Each returns the process exit code.

pub mod audit;
pub mod auth;
pub mod bench;
pub mod cluster;
pub mod cron;
pub mod events;
pub mod flow;
pub mod local;
pub mod sim;
pub mod submit;
pub mod tasks;
pub mod up;

use crate::cli::ClientOpts;

/// The SDK client for a client command's `--server` (one URL or several), its token
/// (`--token`, `DROVER_TOKEN`, or the credentials file), `--ca-cert` and `--namespace`. Each
/// time a request moves on to another server (or tries again), a line on stderr says so.
pub fn client(opts: &ClientOpts) -> anyhow::Result<drover_client::Client> {
    let ca = opts.ca_cert.as_deref().map(read_pem).transpose()?;
    let client = drover_client::Client::with_ca(
        opts.server.as_str(),
        auth::token_for(opts),
        drover_client::DEFAULT_TIMEOUT,
        ca.as_deref(),
    )?
    .on_retry(say_retry());
    Ok(match opts.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => client.in_namespace(ns),
        None => client,
    })
}

/// Prints a request's move to another server (or retry) on stderr; the same move for the same
/// reason at most once per [`drover_client::UNAVAILABLE_RETRY`], so a cluster that is down
/// for a while says so in a few lines, not one per try.
pub fn say_retry() -> impl Fn(&drover_client::Retrying) + Send + Sync + 'static {
    use std::collections::HashMap;
    use std::time::Instant;
    let said: std::sync::Mutex<HashMap<String, Instant>> = Default::default();
    move |r| {
        let key = format!("{}\n{}\n{}", r.from, r.to, r.reason);
        let now = Instant::now();
        let mut said = said.lock().unwrap_or_else(|e| e.into_inner());
        if said
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < drover_client::UNAVAILABLE_RETRY)
        {
            return;
        }
        said.insert(key, now);
        eprintln!("drover: {r}");
    }
}

/// A PEM file's bytes, or a usage error naming it.
pub fn read_pem(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| crate::exit::usage(format!("cannot read {}: {e}", path.display())))
}
