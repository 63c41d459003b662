//! Conversions between protobuf messages and core types.

use drover_core as core;

use crate::proto;

impl From<core::AttemptRef> for proto::AttemptRef {
    fn from(r: core::AttemptRef) -> Self {
        proto::AttemptRef {
            task_id: r.task_id.to_string(),
            attempt: r.attempt,
            lease: r.lease.to_string(),
        }
    }
}

impl TryFrom<&proto::AttemptRef> for core::AttemptRef {
    type Error = String;
    fn try_from(r: &proto::AttemptRef) -> Result<Self, String> {
        Ok(core::AttemptRef {
            task_id: r.task_id.parse()?,
            attempt: r.attempt,
            lease: r.lease.parse()?,
        })
    }
}

/// Reads an optional attempt field of a message.
pub fn attempt_of(r: &Option<proto::AttemptRef>) -> Result<core::AttemptRef, String> {
    r.as_ref()
        .ok_or_else(|| "missing attempt".to_string())
        .and_then(core::AttemptRef::try_from)
}

impl From<&core::Assignment> for proto::Assignment {
    fn from(a: &core::Assignment) -> Self {
        let d = &a.def;
        proto::Assignment {
            attempt: Some(
                core::AttemptRef {
                    task_id: a.task_id,
                    attempt: a.attempt,
                    lease: a.lease,
                }
                .into(),
            ),
            kind: d.kind.clone(),
            queue: d.queue.clone(),
            spec: match &d.spec {
                // Secret env is added by the server, which alone can open it.
                core::TaskSpec::Exec { argv, env, cwd, .. } => {
                    let mut env: std::collections::HashMap<String, String> =
                        env.iter().chain(&a.upstream.env).cloned().collect();
                    if let Some(s) = &d.placement.shard {
                        env.insert("DROVER_SHARD_INDEX".into(), s.index.to_string());
                        env.insert("DROVER_SHARD_COUNT".into(), s.count.to_string());
                    }
                    Some(proto::assignment::Spec::Exec(proto::ExecSpec {
                        argv: argv.clone(),
                        env,
                        cwd: cwd.clone(),
                        ..Default::default()
                    }))
                }
                core::TaskSpec::Noop => Some(proto::assignment::Spec::Noop(proto::NoopSpec {})),
                core::TaskSpec::Handler { payload } => {
                    Some(proto::assignment::Spec::Handler(proto::HandlerSpec {
                        payload: payload.to_string(),
                        upstream: a
                            .upstream
                            .results
                            .iter()
                            .map(|(node, out)| (node.clone(), as_json(out)))
                            .collect(),
                    }))
                }
                // The driver resolves every body before it sends; a worker refuses an
                // assignment without a spec rather than guess one.
                core::TaskSpec::InStore { .. } => None,
            },
            timeout_ms: d.timeout_ms,
            idempotency_key: d.idempotency_key.clone(),
            shard_index: d.placement.shard.as_ref().map(|s| s.index),
            shard_count: d.placement.shard.as_ref().map(|s| s.count),
        }
    }
}

/// An upstream output as JSON text: a handler's result is JSON already; a command's output
/// line becomes a JSON string unless it is JSON itself.
fn as_json(out: &str) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(out).is_ok() {
        out.to_string()
    } else {
        serde_json::Value::String(out.to_string()).to_string()
    }
}

impl From<proto::Outcome> for core::AttemptOutcome {
    fn from(o: proto::Outcome) -> Self {
        match o {
            proto::Outcome::Succeeded => core::AttemptOutcome::Succeeded,
            proto::Outcome::Failed | proto::Outcome::Unspecified => core::AttemptOutcome::Failed,
            proto::Outcome::TimedOut => core::AttemptOutcome::TimedOut,
            proto::Outcome::Cancelled => core::AttemptOutcome::Cancelled,
        }
    }
}

impl From<&proto::Register> for core::WorkerInfo {
    fn from(r: &proto::Register) -> Self {
        core::WorkerInfo {
            name: r.name.clone(),
            labels: r.labels.clone().into_iter().collect(),
            kinds: r.kinds.clone(),
            namespaces: r.namespaces.clone(),
            resources: r.resources.clone().into_iter().collect(),
            slots: r.slots,
            prefetch: r.prefetch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ref_round_trips() {
        let r = core::AttemptRef {
            task_id: core::TaskId(0x0190_0000_0000_7000_8000_0000_0000_0001),
            attempt: 3,
            lease: core::LeaseToken(u128::MAX - 5),
        };
        let p: proto::AttemptRef = r.into();
        assert_eq!(core::AttemptRef::try_from(&p).unwrap(), r);
        assert!(attempt_of(&None).is_err());
    }
}
