//! One module per group of commands. Each returns the process exit code.

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

/// The SDK client for a client command's `--server` and its token (`--token`,
/// `DROVER_TOKEN`, or the credentials file).
pub fn client(opts: &ClientOpts) -> anyhow::Result<drover_client::Client> {
    Ok(drover_client::Client::new(
        &opts.server,
        auth::token_for(opts),
    )?)
}
