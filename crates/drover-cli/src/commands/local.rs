//! A server and workers in this process, the workers connected over gRPC on loopback exactly
//! as remote ones would be. Used by `drover up` and `drover bench`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use drover_server::{ServerConfig, ServerHandle};
use drover_worker::WorkerConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The token of the workers `drover up` and `drover bench` start.
const LOCAL_WORKERS: &str = "local-workers";

/// How long workers get to hand back their work before the server stops anyway.
const WORKER_STOP: Duration = Duration::from_secs(10);

pub struct LocalCluster {
    pub server: ServerHandle,
    /// `http://ADDR` the workers and clients use.
    pub url: String,
    stop: watch::Sender<bool>,
    pub workers: JoinSet<anyhow::Result<()>>,
}

impl LocalCluster {
    /// Starts the server, then one worker per config (their `servers` are set to the server).
    pub async fn start(cfg: ServerConfig, workers: Vec<WorkerConfig>) -> anyhow::Result<Self> {
        let server = drover_server::start(cfg).await?;
        let url = connect_url(server.addr);
        // A fresh worker token at every start; the previous one is revoked.
        let token = server
            .auth
            .rotate(LOCAL_WORKERS, drover_api::auth::Role::Worker)
            .await
            .context("creating the local workers' token")?;
        let (stop, rx) = watch::channel(false);
        let mut set = JoinSet::new();
        for mut w in workers {
            w.servers = vec![url.clone()];
            w.token = Some(token.clone());
            let mut rx = rx.clone();
            let name = w.name.clone();
            set.spawn(async move {
                drover_worker::run(w, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
                .with_context(|| format!("local worker {name}"))
            });
        }
        Ok(LocalCluster {
            server,
            url,
            stop,
            workers: set,
        })
    }

    /// The admin token from its file, if this process can read it.
    pub fn admin_token(&self) -> Option<String> {
        let file = self.server.auth.admin_token_file.as_ref()?;
        let s = std::fs::read_to_string(file).ok()?;
        Some(s.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// Stops the workers (they give back what they hold), then the server.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(WORKER_STOP, async {
            while let Some(r) = self.workers.join_next().await {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("{e:#}"),
                    Err(e) => tracing::warn!("a local worker crashed: {e}"),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("local workers did not stop within {WORKER_STOP:?}; stopping anyway");
            self.workers.abort_all();
        }
        self.server.shutdown().await
    }
}

/// The URL to reach a listener on `addr` from this machine (a wildcard bind means loopback).
pub fn connect_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// `sqlite://PATH` for a file path.
pub fn sqlite_url(path: &std::path::Path) -> anyhow::Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("the path {path:?} is not valid UTF-8"))?;
    Ok(format!("sqlite://{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        assert_eq!(
            connect_url("0.0.0.0:7070".parse().unwrap()),
            "http://127.0.0.1:7070"
        );
        assert_eq!(connect_url("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(
            connect_url("10.1.2.3:7070".parse().unwrap()),
            "http://10.1.2.3:7070"
        );
    }

    #[test]
    fn store_urls() {
        assert_eq!(
            sqlite_url(std::path::Path::new("/a/b/drover.db")).unwrap(),
            "sqlite:///a/b/drover.db"
        );
        assert_eq!(
            sqlite_url(std::path::Path::new("d/drover.db")).unwrap(),
            "sqlite://d/drover.db"
        );
    }
}
