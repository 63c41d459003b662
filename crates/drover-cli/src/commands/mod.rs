//! One module per group of commands. Each returns the process exit code.

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

/// The SDK client for a client command's `--server` and `--token`.
pub fn client(opts: &ClientOpts) -> anyhow::Result<drover_client::Client> {
    Ok(drover_client::Client::new(
        &opts.server,
        opts.token.clone(),
    )?)
}
