//! `drover up`, `drover server` and `drover worker`: the long-running parts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use drover_server::{ServerConfig, StoreUrl};
use drover_worker::WorkerConfig;

use super::local::{self, LocalCluster};
use crate::cli::{ServerArgs, ServerTlsArgs, UpArgs, WorkerArgs};
use crate::exit::usage;
use crate::parse;
use crate::signal::Terminate;

pub async fn up(args: UpArgs) -> anyhow::Result<u8> {
    let signals = Terminate::install()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    let db = dir.join("drover.db");
    let mut cfg = ServerConfig::new(args.listen, local::sqlite_url(&db)?);
    cfg.auth = args.auth.config(args.listen, false).map_err(usage)?;
    let workers: Vec<WorkerConfig> = (1..=args.workers)
        .map(|i| {
            let mut w = WorkerConfig::new(Vec::new(), format!("local-{i}"));
            if let Some(s) = args.slots {
                w.slots = s;
            }
            if let Some(p) = args.prefetch {
                w.prefetch = p;
            }
            w
        })
        .collect();
    let slots = workers.first().map(|w| w.slots).unwrap_or(0);
    let mut cluster = LocalCluster::start(cfg, workers).await?;

    let names: Vec<String> = (1..=args.workers).map(|i| format!("local-{i}")).collect();
    ready(&format!(
        "drover is up: listening on {url} (REST and gRPC)\n  \
         data:     {db}\n\
         {login}  \
         workers:  {workers}\n  \
         try:      drover submit --wait -- echo hello\n  \
         stop:     Ctrl-C\n",
        url = cluster.url,
        db = db.display(),
        login = login_lines(&cluster),
        workers = if names.is_empty() {
            "none (start some with `drover worker`)".into()
        } else {
            format!("{} ({slots} slots each)", names.join(", "))
        },
    ));

    tokio::select! {
        sig = signals.recv() => {
            tracing::info!("{sig} signal: stopping workers, then the server");
        }
        r = cluster.server.wait() => {
            // The server is gone; the workers go with the runtime.
            r?;
            anyhow::bail!("the server stopped unexpectedly");
        }
        Some(r) = cluster.workers.join_next() => {
            let e = match r {
                Ok(Ok(())) => anyhow::anyhow!("a local worker stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a local worker crashed: {e}"),
            };
            // The server still runs: stop the rest cleanly, then report.
            cluster.shutdown().await.ok();
            return Err(e);
        }
    }
    cluster.shutdown().await?;
    eprintln!("drover: stopped");
    Ok(0)
}

/// Leases, heartbeats, the backlog bound and the store's retry.
fn set_scheduling(cfg: &mut ServerConfig, args: &ServerArgs) -> anyhow::Result<()> {
    cfg.lease_ms = args.lease;
    cfg.heartbeat_ms = args.heartbeat;
    cfg.restart_grace_ms = args.restart_grace;
    if let Some(n) = args.max_lost {
        cfg.max_lost = n;
    }
    if args.max_queued > drover_api::limits::MAX_QUEUED {
        let most = drover_api::limits::MAX_QUEUED;
        return Err(usage(format!("--max-queued: 0 (no limit) to {most}")));
    }
    cfg.max_queued = (args.max_queued > 0).then_some(args.max_queued);
    cfg.store_retry = std::time::Duration::from_millis(args.store_retry);
    Ok(())
}

/// `--leader-lease`, `--name`, `--advertise`.
fn set_cluster(cfg: &mut ServerConfig, args: &ServerArgs) -> anyhow::Result<()> {
    cfg.leader_lease = std::time::Duration::from_millis(args.leader_lease);
    drover_server::cluster::check_lease(cfg.leader_lease).map_err(usage)?;
    cfg.name = args.name.clone();
    cfg.advertise = args.advertise.clone();
    Ok(())
}

/// `drover server`'s own files with a PostgreSQL store, when `--data-dir` is not given.
const DEFAULT_DATA_DIR: &str = "drover-data";

pub async fn server(args: ServerArgs) -> anyhow::Result<u8> {
    let signals = Terminate::install()?;
    if args.lease == 0 || args.heartbeat == 0 {
        return Err(usage("--lease and --heartbeat must be positive"));
    }
    if args.heartbeat >= args.lease {
        return Err(usage(format!(
            "--heartbeat ({} ms) must be shorter than --lease ({} ms)",
            args.heartbeat, args.lease
        )));
    }
    let store = StoreUrl::parse(&args.store).map_err(|e| usage(format!("--store: {e}")))?;
    if let StoreUrl::Sqlite(path) = &store {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the store directory {}", parent.display()))?;
        }
    }
    let mut cfg = ServerConfig::new(args.listen, args.store.clone());
    cfg.data_dir = args
        .data_dir
        .clone()
        .or_else(|| store.default_data_dir())
        .or_else(|| Some(PathBuf::from(DEFAULT_DATA_DIR)));
    cfg.auth = args
        .auth
        .config(args.listen, args.tls.tls_cert.is_some())
        .map_err(usage)?;
    set_scheduling(&mut cfg, &args)?;
    set_cluster(&mut cfg, &args)?;
    if args.webhook_timeout == 0 || args.webhook_attempts == 0 {
        return Err(usage(
            "--webhook-timeout and --webhook-attempts must be positive",
        ));
    }
    set_retention(&mut cfg, &args)?;
    cfg.webhooks.timeout = std::time::Duration::from_millis(args.webhook_timeout);
    cfg.webhooks.max_attempts = args.webhook_attempts;
    cfg.webhooks.backoff = std::time::Duration::from_millis(args.webhook_backoff);
    cfg.webhooks.allow_private = args.allow_private_webhooks;
    cfg.edge = edge_config(&args)?;
    cfg.tls = tls_files(&args.tls);
    cfg.secret_key_file = args.secret_key_file.clone();
    cfg.previous_secret_key_file = args.previous_secret_key_file.clone();
    let mut handle = drover_server::start(cfg).await?;
    let mut url = local::connect_url(handle.addr);
    if args.tls.tls_cert.is_some() {
        url = url.replacen("http://", "https://", 1);
    }
    ready(&format!(
        "drover server listening on {url} (store {})\n{}",
        store.describe(),
        match (&handle.auth.admin_token_file, handle.auth.enabled()) {
            (_, false) => "  authentication is off (--no-auth)\n".to_string(),
            (Some(f), true) => format!(
                "  admin token: {} (`drover login URL --token-file FILE`)\n",
                f.display()
            ),
            (None, true) => String::new(),
        }
    ));
    tokio::select! {
        sig = signals.recv() => {
            tracing::info!("{sig} signal: stopping");
            handle.shutdown().await?;
            Ok(0)
        }
        r = handle.wait() => {
            r?;
            Err(anyhow::anyhow!("the server stopped unexpectedly"))
        }
    }
}

/// The retention windows, each positive, and how often they are applied.
fn set_retention(cfg: &mut ServerConfig, args: &ServerArgs) -> anyhow::Result<()> {
    for (flag, ms, eg) in [
        ("--event-retention", args.event_retention, "7d"),
        ("--task-retention", args.task_retention, "7d"),
        ("--audit-retention", args.audit_retention, "90d"),
    ] {
        if ms == 0 {
            return Err(usage(format!("{flag} must be positive, e.g. {eg}")));
        }
    }
    cfg.event_retention = std::time::Duration::from_millis(args.event_retention);
    cfg.task_retention = std::time::Duration::from_millis(args.task_retention);
    cfg.audit_retention = std::time::Duration::from_millis(args.audit_retention);
    // Applied a few times per (shorter) window, at most every minute.
    cfg.prune_every = (cfg.event_retention.min(cfg.task_retention) / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    Ok(())
}

fn tls_files(tls: &ServerTlsArgs) -> Option<drover_server::tls::TlsFiles> {
    let (cert, key) = tls.tls_cert.clone().zip(tls.tls_key.clone())?;
    Some(drover_server::tls::TlsFiles {
        cert,
        key,
        client_ca: tls.tls_client_ca.clone(),
    })
}

pub async fn worker(args: WorkerArgs) -> anyhow::Result<u8> {
    let signals = Terminate::install()?;
    let servers: Vec<String> = args
        .server
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if servers.is_empty() {
        return Err(usage(
            "--server needs at least one URL, e.g. http://127.0.0.1:7070",
        ));
    }
    let name = args.name.clone().unwrap_or_else(default_name);
    drover_api::limits::check_worker_name(&name).map_err(|e| usage(format!("--name: {e}")))?;
    let mut cfg = WorkerConfig::new(servers, name);
    cfg.token = args
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| super::auth::stored_token(&args.server));
    if let Some(s) = args.slots {
        cfg.slots = s;
    }
    if let Some(p) = args.prefetch {
        cfg.prefetch = p;
    }
    cfg.labels = parse::kv_list(&args.labels, "labels").map_err(usage)?;
    cfg.kinds = parse::name_list(&args.kinds);
    cfg.namespaces = parse::name_list(&args.namespace);
    cfg.resources = parse::resources(&args.resources).map_err(usage)?;
    cfg.pass_env = parse::env_names(&args.pass_env).map_err(usage)?;
    if let Some(m) = args.max_output {
        cfg.max_output_bytes =
            usize::try_from(m).map_err(|_| usage("--max-output is too large"))?;
    }
    if cfg.slots == 0 {
        return Err(usage("--slots must be at least 1"));
    }
    cfg.tls.ca_cert_pem = args.ca_cert.as_deref().map(super::read_pem).transpose()?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls.identity_pem = Some((super::read_pem(cert)?, super::read_pem(key)?));
    }
    ready(&format!(
        "drover worker {} connecting to {} ({} slots, prefetch {})\n",
        cfg.name,
        cfg.servers.join(","),
        cfg.slots,
        cfg.prefetch
    ));
    drover_worker::run(cfg, async move {
        let sig = signals.recv().await;
        tracing::info!("{sig} signal: handing back work and stopping");
    })
    .await?;
    Ok(0)
}

/// The edge's limits from the server's flags.
fn edge_config(args: &ServerArgs) -> anyhow::Result<drover_server::edge::EdgeConfig> {
    use std::time::Duration;
    if args.header_read_timeout == 0 || args.idle_timeout == 0 {
        return Err(usage(
            "--header-read-timeout and --idle-timeout must be positive",
        ));
    }
    if args.max_connections == 0 || args.max_event_streams == 0 || args.rate_burst == 0 {
        return Err(usage(
            "--max-connections, --max-event-streams and --rate-burst must be at least 1",
        ));
    }
    Ok(drover_server::edge::EdgeConfig {
        header_read_timeout: Duration::from_millis(args.header_read_timeout),
        idle_timeout: Duration::from_millis(args.idle_timeout),
        max_connections: args.max_connections,
        max_subscribers: args.max_event_streams,
        rate_per_sec: args.rate_limit,
        rate_burst: args.rate_burst,
    })
}

/// What `drover up` says about logging in: where the admin token is, that this machine's
/// `drover` commands use it (saved in the credentials file), and a one-time dashboard link.
fn login_lines(cluster: &LocalCluster) -> String {
    let auth = &cluster.server.auth;
    if !auth.enabled() {
        return "  auth:     off (--no-auth; loopback only)\n".into();
    }
    let file = auth
        .admin_token_file
        .as_ref()
        .map_or_else(|| "-".into(), |f| f.display().to_string());
    let Some(token) = cluster.admin_token() else {
        return format!(
            "  admin:    the token in {file} is gone; create one with `drover token create`\n"
        );
    };
    let saved = match super::auth::store_token(&cluster.url, &token) {
        Ok(p) => format!("saved for `drover` commands in {}", p.display()),
        Err(e) => format!("not saved for `drover` commands ({e:#}); use --token"),
    };
    let link = auth
        .login_code(&token)
        .map(|c| {
            format!(
                "  login:    {}/login#code={c} (one-time dashboard link)\n",
                cluster.url
            )
        })
        .unwrap_or_default();
    format!("  admin:    token in {file} (mode 0600), {saved}\n{link}")
}

/// `HOSTNAME-PID`.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let pid = std::process::id().to_string();
    // Within the worker name's character set and length.
    let host: String = host
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .take(drover_api::limits::MAX_WORKER_NAME - pid.len() - 1)
        .collect();
    let host = match host.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() => host,
        _ => format!("w{host}"),
    };
    let name = format!("{host}-{pid}");
    if drover_api::limits::check_worker_name(&name).is_ok() {
        name
    } else {
        format!("worker-{pid}")
    }
}

/// The ready message on stdout, flushed (tests and scripts read it through a pipe).
fn ready(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(msg.as_bytes());
    let _ = out.flush();
}
