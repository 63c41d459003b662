//! The command line of authentication: `drover token`, `drover login`, and the server's
//! authentication and listen flags (flattened into `server` and `up`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::ClientOpts;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown once; only its hash is stored).
    Create(TokenCreateArgs),
    /// List the tokens (names, roles, expiry; never secrets).
    List(ClientOpts),
    /// Revoke a token: refused from now on, its open streams and sessions end within a second.
    Revoke(TokenNameArgs),
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Token name (1 to 64 of A-Z a-z 0-9 . _ -).
    pub name: String,
    /// viewer (reads), submitter (+ submit, cancel, rerun), operator (+ queues, schedules,
    /// drain), admin (everything), worker (only the worker stream).
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// Lifetime, e.g. 30d or 12h [default: never expires].
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Workers registering with this token must have a matching name (`*`: any run).
    #[arg(long, value_name = "PATTERN")]
    pub worker_names: Option<String>,
    /// ... and declare kinds, all among these: a,b.
    #[arg(long, value_name = "A,B")]
    pub worker_kinds: Vec<String>,
    /// ... and declare only these labels: k=v,..
    #[arg(long, value_name = "K=V,..")]
    pub worker_labels: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TokenNameArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Token name.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The server the token is for (or a cluster's servers, comma-separated: the token is
    /// saved for each).
    #[arg(value_name = "URL[,URL...]")]
    pub url: String,
    /// A file holding the token (e.g. the server's admin.token); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
}

/// Authentication and listening flags of `drover server` and `drover up`.
#[derive(Args, Debug, Clone, Default)]
pub struct AuthServerArgs {
    /// Where the admin token of a fresh store is written [default: admin.token in the data
    /// directory].
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Turn authentication off (loopback addresses only; the browser protections stay).
    #[arg(long)]
    pub no_auth: bool,
    /// Listen on a non-loopback address without TLS (a trusted proxy terminates TLS, or the
    /// network is private).
    #[arg(long)]
    pub insecure_no_tls: bool,
    /// A host name clients use to reach the server, besides loopback and the listen address
    /// (repeatable); requests naming another host are refused (421).
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
}

impl AuthServerArgs {
    /// Checks the listen policy and gives the server's authentication settings.
    pub fn config(
        &self,
        listen: std::net::SocketAddr,
        tls_configured: bool,
    ) -> Result<drover_server::auth::AuthConfig, String> {
        drover_server::auth::policy::listen_policy(
            listen,
            tls_configured,
            self.insecure_no_tls,
            self.no_auth,
        )?;
        Ok(drover_server::auth::AuthConfig {
            enabled: !self.no_auth,
            admin_token_file: self.admin_token_file.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
        })
    }
}
