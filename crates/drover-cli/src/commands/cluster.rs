//! `drover cluster`: the servers sharing the store (`GET /v1/cluster`), their roles, the epoch
//! and the leader's lease.

use anyhow::anyhow;
use drover_client::ClusterView;

use crate::cli::ClientOpts;
use crate::output::{self, Format, Table};

pub async fn cluster(opts: ClientOpts) -> anyhow::Result<u8> {
    let client = super::client(&opts)?;
    let view = match client.cluster().await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            return Err(anyhow!(
                "the server at {} does not report a cluster (no GET /v1/cluster): it predates \
                 leader and standby servers; upgrade it to see its cluster",
                client.base_url()
            ))
        }
        Err(e) => return Err(e.into()),
    };
    match opts.output {
        Format::Json => output::json(&view)?,
        Format::Text => output::text(&render(&view))?,
    }
    Ok(0)
}

/// The members as a table (the leader first, then by name), and a line on the lease.
pub fn render(v: &ClusterView) -> String {
    let mut members: Vec<_> = v.members.iter().collect();
    members.sort_by(|a, b| (a.role != "leader", &a.name).cmp(&(b.role != "leader", &b.name)));
    let mut t = Table::new(vec!["NAME", "ADDRESS", "ROLE", "LAST SEEN"]);
    for m in members {
        let mut seen = ago(m.last_seen_ms);
        if m.stale {
            seen.push_str(" (stale)");
        }
        let name = if m.name == v.this {
            format!("{} *", m.name)
        } else {
            m.name.clone()
        };
        t.row(vec![name, m.address.clone(), m.role.clone(), seen]);
    }
    let mut out = t.render();
    let lease = match (&v.leader, v.lease_age_ms) {
        (Some(l), Some(age)) => format!(
            "leader {l}, lease age {} of {}",
            secs(age),
            secs(v.lease_ms)
        ),
        (Some(l), None) => format!("leader {l}"),
        (None, _) => "no leader holds a live lease (an election is due)".into(),
    };
    out.push_str(&format!(
        "epoch {}, {lease}; * answered ({})\n",
        v.epoch, v.this
    ));
    out
}

/// `0.4s ago`, `12s ago`, `3m05s ago`, `2h10m ago`.
fn ago(ms: u64) -> String {
    format!("{} ago", secs(ms))
}

/// A duration in ms, short: `0.4s`, `12s`, `3m05s`, `2h10m`.
fn secs(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_client::ClusterMember;

    fn member(name: &str, role: &str, ms: u64, stale: bool) -> ClusterMember {
        ClusterMember {
            name: name.into(),
            address: format!("http://{name}:7070"),
            role: role.into(),
            last_seen: "2026-01-01T00:00:00Z".into(),
            last_seen_ms: ms,
            stale,
        }
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(ago(400), "0.4s ago");
        assert_eq!(ago(9_960), "10.0s ago");
        assert_eq!(ago(12_345), "12s ago");
        assert_eq!(ago(185_000), "3m05s ago");
        assert_eq!(ago(7_800_000), "2h10m ago");
    }

    #[test]
    fn the_table_puts_the_leader_first_and_says_who_answered() {
        let v = ClusterView {
            members: vec![
                member("b", "standby", 400, false),
                member("c", "standby", 15_000, true),
                member("a", "leader", 1_200, false),
            ],
            epoch: 3,
            leader: Some("a".into()),
            lease_age_ms: Some(1_200),
            lease_ms: 5_000,
            this: "b".into(),
        };
        let out = render(&v);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "ADDRESS", "ROLE", "LAST", "SEEN"]
        );
        assert!(
            lines[1].starts_with("a ") && lines[1].contains("leader"),
            "{out}"
        );
        assert!(
            lines[1].contains("http://a:7070") && lines[1].ends_with("1.2s ago"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("b *") && lines[2].contains("standby"),
            "{out}"
        );
        assert!(lines[3].ends_with("15s ago (stale)"), "{out}");
        assert_eq!(
            lines[4],
            "epoch 3, leader a, lease age 1.2s of 5.0s; * answered (b)"
        );

        let v = ClusterView {
            leader: None,
            lease_age_ms: None,
            ..v
        };
        assert!(render(&v).contains("epoch 3, no leader holds a live lease"));
    }
}
