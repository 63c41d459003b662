//! `drover up`, `drover server` and `drover worker`: the long-running parts.

use std::io::Write;

use anyhow::Context;
use drover_server::ServerConfig;
use drover_worker::WorkerConfig;

use super::local::{self, LocalCluster};
use crate::cli::{ServerArgs, UpArgs, WorkerArgs};
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
    cfg.auth = args.auth.config(args.listen).map_err(usage)?;
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
    let path =
        drover_server::sqlite_path(&args.store).map_err(|e| usage(format!("--store: {e}")))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the store directory {}", parent.display()))?;
    }
    let mut cfg = ServerConfig::new(args.listen, args.store.clone());
    cfg.auth = args.auth.config(args.listen).map_err(usage)?;
    cfg.lease_ms = args.lease;
    cfg.heartbeat_ms = args.heartbeat;
    cfg.restart_grace_ms = args.restart_grace;
    if let Some(n) = args.max_lost {
        cfg.max_lost = n;
    }
    if args.event_retention == 0 {
        return Err(usage("--event-retention must be positive, e.g. 7d"));
    }
    if args.task_retention == 0 {
        return Err(usage("--task-retention must be positive, e.g. 7d"));
    }
    if args.webhook_timeout == 0 || args.webhook_attempts == 0 {
        return Err(usage(
            "--webhook-timeout and --webhook-attempts must be positive",
        ));
    }
    cfg.event_retention = std::time::Duration::from_millis(args.event_retention);
    cfg.task_retention = std::time::Duration::from_millis(args.task_retention);
    // Applied a few times per (shorter) window, at most every minute.
    cfg.prune_every = (cfg.event_retention.min(cfg.task_retention) / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    cfg.webhooks.timeout = std::time::Duration::from_millis(args.webhook_timeout);
    cfg.webhooks.max_attempts = args.webhook_attempts;
    cfg.webhooks.backoff = std::time::Duration::from_millis(args.webhook_backoff);
    let mut handle = drover_server::start(cfg).await?;
    ready(&format!(
        "drover server listening on {} (store {})\n{}",
        local::connect_url(handle.addr),
        path.display(),
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
    cfg.resources = parse::resources(&args.resources).map_err(usage)?;
    if let Some(m) = args.max_output {
        cfg.max_output_bytes =
            usize::try_from(m).map_err(|_| usage("--max-output is too large"))?;
    }
    if cfg.slots == 0 {
        return Err(usage("--slots must be at least 1"));
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
    format!("{host}-{}", std::process::id())
}

/// The ready message on stdout, flushed (tests and scripts read it through a pipe).
fn ready(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(msg.as_bytes());
    let _ = out.flush();
}
