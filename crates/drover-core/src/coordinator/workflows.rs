//! Workflow progress: the aggregate state of every workflow with active nodes
//! (`dag::aggregate_state` over its current nodes, exactly what the REST view shows), so that
//! each change of it is one `EventKind::Workflow` event, in the same batch as the node
//! transition that caused it.
//!
//! Node states are read through a `NodeStates` view of the active set; this type keeps only
//! which nodes are active and how the others ended.

use std::collections::{BTreeSet, HashMap};

use crate::dag::{aggregate_state, WorkflowRecord};
use crate::model::{TaskId, TaskState, WorkflowState};

/// The state and attempt of an active node (`None`: not created yet).
pub(super) trait NodeStates {
    fn node(&self, id: &TaskId) -> Option<(TaskState, u32)>;
}

#[derive(Debug, Default)]
pub(super) struct Workflows {
    runs: HashMap<String, Run>,
}

/// A workflow with active nodes.
#[derive(Debug, Default)]
struct Run {
    nodes: BTreeSet<TaskId>,
    /// Terminal states of its other current nodes (a rerun keeps only succeeded ones).
    ended: Vec<TaskState>,
    /// The state last announced.
    last: Option<WorkflowState>,
}

impl Workflows {
    /// After a restart: `nodes` are the active nodes by workflow; `ended` the terminal
    /// states of the other current nodes of those workflows (read by the shell).
    pub(super) fn restore<'a>(
        &mut self,
        nodes: impl Iterator<Item = (&'a str, TaskId)>,
        ended: Vec<(String, Vec<TaskState>)>,
        states: &impl NodeStates,
    ) {
        let mut ended: HashMap<String, Vec<TaskState>> = ended.into_iter().collect();
        for (wf, id) in nodes {
            let run = self.runs.entry(wf.to_string()).or_insert_with(|| Run {
                ended: ended.remove(wf).unwrap_or_default(),
                ..Run::default()
            });
            run.nodes.insert(id);
        }
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        for wf in ids {
            let state = self.state(&wf, states);
            self.runs.get_mut(&wf).expect("just built").last = state;
        }
    }

    /// Whether a workflow still has active nodes (a rerun must wait for its end).
    pub(super) fn is_running(&self, wf: &str) -> bool {
        self.runs.contains_key(wf)
    }

    /// A workflow submit or rerun is accepted: the nodes of `record` not in this submit were
    /// kept by a rerun, which reruns every node that did not succeed.
    pub(super) fn begin(&mut self, record: &WorkflowRecord, submitted: usize) {
        let kept = record.nodes.len().saturating_sub(submitted);
        let run = Run {
            ended: vec![TaskState::Succeeded; kept],
            ..Run::default()
        };
        self.runs.insert(record.id.clone(), run);
    }

    /// A node is created (before its first event).
    pub(super) fn node_added(&mut self, wf: &str, id: TaskId) {
        self.runs
            .entry(wf.to_string())
            .or_default()
            .nodes
            .insert(id);
    }

    /// A node reached a terminal state. Returns the workflow's new state if it changed; a
    /// workflow with no active node left is forgotten.
    pub(super) fn node_ended(
        &mut self,
        wf: &str,
        id: TaskId,
        state: TaskState,
        states: &impl NodeStates,
    ) -> Option<WorkflowState> {
        let run = self.runs.get_mut(wf)?;
        run.nodes.remove(&id);
        run.ended.push(state);
        let changed = self.changed(wf, states);
        if self.runs.get(wf).is_some_and(|r| r.nodes.is_empty()) {
            self.runs.remove(wf);
        }
        changed
    }

    /// A node changed state: the workflow's new aggregate state, if it changed.
    pub(super) fn changed(&mut self, wf: &str, states: &impl NodeStates) -> Option<WorkflowState> {
        let state = self.state(wf, states)?;
        let run = self.runs.get_mut(wf).expect("has a state");
        if run.last == Some(state) {
            return None;
        }
        run.last = Some(state);
        Some(state)
    }

    /// The live state of a workflow with active nodes.
    pub(super) fn state(&self, wf: &str, states: &impl NodeStates) -> Option<WorkflowState> {
        let run = self.runs.get(wf)?;
        let nodes: Vec<(TaskState, u32)> = run
            .nodes
            .iter()
            // A node being created has no record yet: it is about to be pending or queued.
            .map(|id| states.node(id).unwrap_or((TaskState::Pending, 0)))
            // Terminal: their attempts do not matter to the aggregate.
            .chain(run.ended.iter().map(|s| (*s, 0)))
            .collect();
        Some(aggregate_state(&nodes))
    }

    /// WORKFLOW_RUNS: `live` (the active nodes by workflow, from the active set) is exactly
    /// what is tracked.
    pub(super) fn check(&self, mut live: HashMap<&str, BTreeSet<TaskId>>) -> Result<(), String> {
        for (wf, run) in &self.runs {
            let nodes = live.remove(wf.as_str()).unwrap_or_default();
            if nodes != run.nodes {
                return Err(format!(
                    "{wf} tracks {} active nodes, has {}",
                    run.nodes.len(),
                    nodes.len()
                ));
            }
        }
        match live.into_iter().next() {
            Some((wf, n)) => Err(format!("{wf} has {} active nodes, untracked", n.len())),
            None => Ok(()),
        }
    }
}
