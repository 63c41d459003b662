//! Dependencies between active tasks: each task's flow record, who waits on whom, and the
//! outputs a workflow node hands to its downstream nodes.
//!
//! Answers with decisions: when a task ends, `ended` says for each task that waited on it
//! whether it is skipped, may run, or still waits; the coordinator carries them out.

use std::collections::HashMap;

use super::flow::{FlowRecord, UpstreamPolicy};
use crate::model::{TaskId, TaskState};

/// Most bytes of a command node's output (its last stdout line) passed downstream.
pub const MAX_OUTPUT: usize = 4096;
/// Most bytes of an upstream output a command gets as an environment variable (a handler's
/// result may be larger; Linux refuses a single variable over 128 KiB).
pub const MAX_ENV_OUTPUT: usize = 64 << 10;

/// What becomes of a downstream task when one of its upstreams ended.
#[derive(Debug)]
pub(super) enum Next {
    /// An upstream did not succeed and its policy is `skip`: skipped, for this reason.
    Skip(String),
    /// Nothing left to wait for.
    Run,
    Wait,
}

/// A downstream task's updated record (to write) and what becomes of it.
#[derive(Debug)]
pub(super) struct Resolution {
    pub(super) record: FlowRecord,
    pub(super) next: Next,
}

#[derive(Debug, Default)]
pub(super) struct Deps {
    recs: HashMap<TaskId, FlowRecord>,
    /// Upstream -> the tasks waiting on it.
    waiters: HashMap<TaskId, Vec<TaskId>>,
    /// Stdout tails of running tasks that have downstream tasks (for their outputs).
    tails: HashMap<TaskId, Vec<u8>>,
}

impl Deps {
    /// Tracks a task's flow record; with `wait`, it waits on its `waiting` upstreams.
    pub(super) fn add(&mut self, rec: FlowRecord, wait: bool) {
        if wait {
            for u in &rec.waiting {
                self.waiters.entry(*u).or_default().push(rec.task_id);
            }
        }
        self.recs.insert(rec.task_id, rec);
    }

    pub(super) fn get(&self, id: &TaskId) -> Option<&FlowRecord> {
        self.recs.get(id)
    }

    pub(super) fn records(&self) -> impl Iterator<Item = &FlowRecord> {
        self.recs.values()
    }

    pub(super) fn serial_key(&self, id: &TaskId) -> Option<&str> {
        self.recs.get(id)?.spec.serial_key.as_deref()
    }

    pub(super) fn workflow_of(&self, id: &TaskId) -> Option<&str> {
        let (wf, _) = self.recs.get(id)?.spec.workflow.as_ref()?;
        Some(wf)
    }

    /// Whether a task still waits on upstreams.
    pub(super) fn is_waiting(&self, id: &TaskId) -> bool {
        self.recs.get(id).is_some_and(|r| !r.waiting.is_empty())
    }

    /// Keeps the stdout tail of a task that has downstream tasks (its output).
    pub(super) fn note_output(&mut self, id: TaskId, data: &[u8]) {
        if !self.waiters.contains_key(&id) {
            return;
        }
        let tail = self.tails.entry(id).or_default();
        tail.extend_from_slice(data);
        // Keep the last two lines' worth: a line may be split across chunks.
        if tail.len() > 2 * MAX_OUTPUT + 2 {
            let cut = tail.len() - (2 * MAX_OUTPUT + 2);
            tail.drain(..cut);
        }
    }

    /// A new attempt starts a new output.
    pub(super) fn new_attempt(&mut self, id: &TaskId) {
        self.tails.remove(id);
    }

    /// Outputs of succeeded workflow upstreams: (node name, output line).
    pub(super) fn upstream_outputs(&self, id: &TaskId) -> &[(String, String)] {
        self.recs
            .get(id)
            .map_or(&[], |r| r.upstream_outputs.as_slice())
    }

    /// A task left the active set: forgets it, and resolves the tasks waiting on it, in the
    /// order they started waiting. Returns its own record too.
    pub(super) fn ended(
        &mut self,
        id: TaskId,
        state: TaskState,
        result: Option<&str>,
    ) -> (Option<FlowRecord>, Vec<Resolution>) {
        let rec = self.recs.remove(&id);
        if let Some(r) = &rec {
            for u in &r.waiting {
                if let Some(w) = self.waiters.get_mut(u) {
                    w.retain(|d| *d != id);
                }
            }
        }
        let tail = self.tails.remove(&id);
        let Some(downs) = self.waiters.remove(&id) else {
            return (rec, Vec::new());
        };
        // A succeeded workflow node hands its output to its downstream nodes: a handler's
        // result, else a command's last stdout line.
        let output = match (&rec, state) {
            (Some(r), TaskState::Succeeded) => r.spec.workflow.as_ref().and_then(|(_, node)| {
                let out = match result {
                    Some(json) => json.to_string(),
                    None => last_line(tail.as_deref()?)?,
                };
                Some((node.clone(), out))
            }),
            _ => None,
        };
        let resolved = downs
            .into_iter()
            .filter_map(|d| {
                let r = self.recs.get_mut(&d)?;
                r.waiting.retain(|u| *u != id);
                if let Some(o) = &output {
                    r.upstream_outputs.push(o.clone());
                }
                let next = if state != TaskState::Succeeded {
                    r.upstream_failed.get_or_insert((id, state));
                    match r.spec.on_upstream_failure {
                        UpstreamPolicy::Skip => Next::Skip(format!("upstream {id} {state}")),
                        UpstreamPolicy::Run if r.waiting.is_empty() => Next::Run,
                        UpstreamPolicy::Run => Next::Wait,
                    }
                } else if r.waiting.is_empty() {
                    Next::Run
                } else {
                    Next::Wait
                };
                Some(Resolution {
                    record: r.clone(),
                    next,
                })
            })
            .collect();
        (rec, resolved)
    }
}

/// The last non-empty line of a stdout tail, at most `MAX_OUTPUT` bytes.
fn last_line(tail: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(tail);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    let mut end = line.len().min(MAX_OUTPUT);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Some(line[..end].to_string())
}
