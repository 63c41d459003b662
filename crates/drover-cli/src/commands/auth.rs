//! `drover token`, `drover login`, and where client commands find their token: `--token`,
//! `DROVER_TOKEN`, or the credentials file (`drover login`, and `drover up` for its own URL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use drover_client::{Role, TokenCreate, WorkerLimits};
use serde::{Deserialize, Serialize};

use crate::cli::ClientOpts;
use crate::cli_auth::{LoginArgs, TokenCommand};
use crate::exit::usage;
use crate::output::{self, Format};

/// The credentials file: `$DROVER_CREDENTIALS`, else `$XDG_CONFIG_HOME/drover/credentials.json`,
/// else `~/.config/drover/credentials.json`. Mode 0600.
pub fn credentials_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DROVER_CREDENTIALS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("drover").join("credentials.json"))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Credentials {
    /// Token by server URL.
    servers: BTreeMap<String, String>,
}

/// `http://host:port` without a trailing slash (`http://` added when there is no scheme,
/// scheme and host lower-cased): how URLs are keyed.
fn key(url: &str) -> String {
    drover_api::failover::normalize_address(url)
}

/// The URLs of a `--server` list, skipping empty entries.
fn urls(servers: &str) -> impl Iterator<Item = &str> {
    servers.split(',').map(str::trim).filter(|u| !u.is_empty())
}

fn read(path: &Path) -> Credentials {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// The stored token for the first of `servers` (a comma-separated list: a cluster's servers
/// share their tokens, so any of them will do) that has one.
pub fn stored_token(servers: &str) -> Option<String> {
    let creds = read(&credentials_path()?);
    // Keys are compared normalized: a file written by an older drover may hold `host:port`.
    urls(servers).find_map(|u| {
        let want = key(u);
        creds
            .servers
            .iter()
            .find(|(k, _)| key(k) == want)
            .map(|(_, t)| t.clone())
    })
}

/// Remembers `token` for `url` in the credentials file (created mode 0600).
pub fn store_token(url: &str, token: &str) -> anyhow::Result<PathBuf> {
    let path = credentials_path().context("no HOME: set DROVER_CREDENTIALS to a file path")?;
    let mut creds = read(&path);
    creds.servers.insert(key(url), token.to_string());
    let json = serde_json::to_string_pretty(&creds)?;
    drover_server::auth::write_private(&path, &json)?;
    Ok(path)
}

/// A client command's token: `--token`/`DROVER_TOKEN`, else the credentials file.
pub fn token_for(opts: &ClientOpts) -> Option<String> {
    opts.token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| stored_token(&opts.server))
}

pub async fn login(args: LoginArgs) -> anyhow::Result<u8> {
    let text = if args.token_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the token from stdin")?
    } else {
        std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("reading {}", args.token_file.display()))?
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(usage("--token-file holds no token"));
    }
    // Check it before keeping it (on whichever server of a list answers).
    let client = drover_client::Client::new(args.url.as_str(), Some(token.to_string()))?
        .on_retry(super::say_retry());
    client
        .stats()
        .await
        .context("the server refused the token")?;
    // A cluster's servers share one store, so one token serves them all: kept for each URL.
    let mut path = None;
    for url in urls(&args.url) {
        path = Some(store_token(url, token)?);
    }
    let path = path.ok_or_else(|| usage("no server URL given"))?;
    let servers: Vec<String> = urls(&args.url).map(key).collect();
    eprintln!(
        "drover: logged in to {}; token saved in {}",
        servers.join(", "),
        path.display()
    );
    Ok(0)
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<u8> {
    match cmd {
        TokenCommand::Create(a) => {
            let role = Role::parse(&a.role).ok_or_else(|| {
                usage(format!(
                    "--role '{}': use viewer, submitter, operator, admin or worker",
                    a.role
                ))
            })?;
            let worker_limits = WorkerLimits {
                names: a.worker_names.clone(),
                kinds: crate::parse::name_list(&a.worker_kinds),
                labels: crate::parse::kv_list(&a.worker_labels, "worker-labels").map_err(usage)?,
            };
            let req = TokenCreate {
                name: a.name.clone(),
                role,
                expires_in: a.expires.clone(),
                worker_limits,
                namespaces: a
                    .client
                    .namespace
                    .as_deref()
                    .map(|n| crate::parse::name_list(&[n.to_string()]))
                    .unwrap_or_default(),
            };
            let t = super::client(&a.client)?.create_token(&req).await?;
            match a.client.output {
                Format::Json => output::json(&t)?,
                Format::Text => {
                    output::text(&format!("{}\n", t.secret))?;
                    eprintln!(
                        "drover: token '{}' ({}) created{}; the secret above is shown only once",
                        t.name,
                        t.role,
                        t.expires_at
                            .map(|e| format!(", expires {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        TokenCommand::List(c) => {
            let list = super::client(&c)?.tokens().await?;
            match c.output {
                Format::Json => output::json(&list)?,
                Format::Text => {
                    let mut s =
                        format!("{:<24} {:<10} {:<22} EXPIRES\n", "NAME", "ROLE", "CREATED");
                    for t in &list.tokens {
                        let exp = t.expires_at.as_deref().unwrap_or("never");
                        s += &format!("{:<24} {:<10} {:<22} {exp}\n", t.name, t.role, t.created_at);
                    }
                    output::text(&s)?;
                }
            }
        }
        TokenCommand::Revoke(a) => {
            super::client(&a.client)?.revoke_token(&a.name).await?;
            eprintln!("drover: token '{}' revoked", a.name);
        }
    }
    Ok(0)
}
