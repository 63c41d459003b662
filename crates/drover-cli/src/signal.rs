//! Ctrl-C and SIGTERM: the first asks for a clean stop, a second one stops at once.

use tokio::signal::unix::{signal, SignalKind};

/// Handlers for SIGINT and SIGTERM, installed now so that no signal is missed while starting.
pub struct Terminate {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Terminate {
    pub fn install() -> anyhow::Result<Self> {
        Ok(Terminate {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the first signal and returns its name; a second signal then exits the
    /// process at once (exit code 130).
    pub async fn recv(mut self) -> &'static str {
        let name = tokio::select! {
            _ = self.int.recv() => "interrupt",
            _ = self.term.recv() => "terminate",
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = self.int.recv() => {},
                _ = self.term.recv() => {},
            }
            eprintln!("drover: second signal, stopping now");
            std::process::exit(130);
        });
        name
    }
}
