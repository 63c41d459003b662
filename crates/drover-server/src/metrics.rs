//! Prometheus metrics of the scheduler, named `drover_<component>_<what>_<unit>`.

use std::time::Duration;

use drover_core::Effects;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    commits: IntCounter,
    commit_seconds: Histogram,
    commit_writes: Histogram,
    reclaimed: IntCounter,
    stale_rejected: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let commits =
            IntCounter::new("drover_store_commits_total", "Group commits to the store").unwrap();
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new("drover_store_commit_seconds", "Latency of one group commit")
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).unwrap()),
        )
        .unwrap();
        let commit_writes = Histogram::with_opts(
            HistogramOpts::new(
                "drover_store_commit_batch_writes",
                "Writes per group commit",
            )
            .buckets(prometheus::exponential_buckets(1.0, 4.0, 10).unwrap()),
        )
        .unwrap();
        let reclaimed = IntCounter::new(
            "drover_leases_reclaimed_total",
            "Attempts reclaimed because their lease expired",
        )
        .unwrap();
        let stale_rejected = IntCounter::new(
            "drover_stale_results_rejected_total",
            "Results or starts refused because they carried a stale lease",
        )
        .unwrap();
        for c in [&commits, &reclaimed, &stale_rejected] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        for h in [&commit_seconds, &commit_writes] {
            registry.register(Box::new(h.clone())).unwrap();
        }
        Metrics {
            registry,
            commits,
            commit_seconds,
            commit_writes,
            reclaimed,
            stale_rejected,
        }
    }

    pub fn record_effects(&self, fx: &Effects) {
        self.reclaimed.inc_by(fx.reclaimed);
        self.stale_rejected.inc_by(fx.stale_rejected);
    }

    pub fn record_commit(&self, writes: usize, took: Duration) {
        self.commits.inc();
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_writes.observe(writes as f64);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
