//! Workflow progress: the aggregate state of every workflow with active nodes
//! (`dag::aggregate_state` over its current nodes, exactly what the REST view shows), so that
//! each change of it is one `EventKind::Workflow` event, in the same batch as the node
//! transition that caused it.

use std::collections::{BTreeSet, HashMap};

use super::{Coordinator, Effects};
use crate::dag::{aggregate_state, WorkflowRecord};
use crate::model::{EventKind, Micros, TaskId, TaskState, WorkflowState};

#[derive(Default)]
pub(super) struct Runs {
    by_id: HashMap<String, Run>,
}

/// A workflow with active nodes.
struct Run {
    /// Its active nodes.
    nodes: BTreeSet<TaskId>,
    /// Terminal states of its other current nodes (a rerun keeps only succeeded ones).
    ended: Vec<TaskState>,
    /// The state last announced.
    last: Option<WorkflowState>,
}

impl Coordinator {
    /// The workflow an active task is a node of.
    pub(super) fn workflow_of(&self, id: TaskId) -> Option<&str> {
        self.flow
            .flow_spec(id)?
            .workflow
            .as_ref()
            .map(|(w, _)| w.as_str())
    }

    /// After a restart: the active nodes are known from the flow records; `ended` gives the
    /// terminal states of the other current nodes of those workflows (read by the shell).
    pub(super) fn restore_workflows(&mut self, ended: Vec<(String, Vec<TaskState>)>) {
        let mut ended: HashMap<String, Vec<TaskState>> = ended.into_iter().collect();
        let mut runs: HashMap<String, Run> = HashMap::new();
        for id in self.tasks.keys() {
            let Some(wf) = self.workflow_of(*id) else {
                continue;
            };
            runs.entry(wf.to_string())
                .or_insert_with(|| Run {
                    nodes: BTreeSet::new(),
                    ended: ended.remove(wf).unwrap_or_default(),
                    last: None,
                })
                .nodes
                .insert(*id);
        }
        self.workflows.by_id = runs;
        let ids: Vec<String> = self.workflows.by_id.keys().cloned().collect();
        for wf in ids {
            let state = self.workflow_state(&wf);
            self.workflows.by_id.get_mut(&wf).expect("just built").last = state;
        }
    }

    /// Whether a workflow still has active nodes (a rerun must wait for its end).
    pub(super) fn workflow_active(&self, wf: &str) -> bool {
        self.workflows.by_id.contains_key(wf)
    }

    /// A workflow submit or rerun is accepted: the nodes of `record` not in this submit were
    /// kept by a rerun, which reruns every node that did not succeed.
    pub(super) fn workflow_run_begins(&mut self, record: &WorkflowRecord, submitted: usize) {
        let kept = record.nodes.len().saturating_sub(submitted);
        self.workflows.by_id.insert(
            record.id.clone(),
            Run {
                nodes: BTreeSet::new(),
                ended: vec![TaskState::Succeeded; kept],
                last: None,
            },
        );
    }

    /// A node is created (before its first event).
    pub(super) fn workflow_node_added(&mut self, wf: &str, id: TaskId) {
        self.workflows
            .by_id
            .entry(wf.to_string())
            .or_insert_with(|| Run {
                nodes: BTreeSet::new(),
                ended: Vec::new(),
                last: None,
            })
            .nodes
            .insert(id);
    }

    /// A node reached a terminal state (after its own event).
    pub(super) fn workflow_node_ended(
        &mut self,
        now: Micros,
        wf: &str,
        id: TaskId,
        state: TaskState,
        fx: &mut Effects,
    ) {
        let Some(run) = self.workflows.by_id.get_mut(wf) else {
            return;
        };
        run.nodes.remove(&id);
        run.ended.push(state);
        self.workflow_changed(now, wf, fx);
        if self
            .workflows
            .by_id
            .get(wf)
            .is_some_and(|r| r.nodes.is_empty())
        {
            self.workflows.by_id.remove(wf);
        }
    }

    /// A node changed state (not to a terminal one): announces the workflow's new aggregate
    /// state if it changed.
    pub(super) fn workflow_changed(&mut self, now: Micros, wf: &str, fx: &mut Effects) {
        let Some(state) = self.workflow_state(wf) else {
            return;
        };
        let run = self.workflows.by_id.get_mut(wf).expect("has a state");
        if run.last == Some(state) {
            return;
        }
        run.last = Some(state);
        self.emit(
            now,
            EventKind::Workflow {
                workflow_id: wf.to_string(),
                state,
            },
            fx,
        );
    }

    /// The live state of a workflow with active nodes.
    pub fn workflow_state(&self, wf: &str) -> Option<WorkflowState> {
        let run = self.workflows.by_id.get(wf)?;
        let nodes: Vec<(TaskState, u32)> = run
            .nodes
            .iter()
            // A node being created has no record yet: it is about to be pending or queued.
            .map(|id| {
                self.tasks
                    .get(id)
                    .map_or((TaskState::Pending, 0), |t| (t.rec.state, t.rec.attempt))
            })
            // Terminal: their attempts do not matter to the aggregate.
            .chain(run.ended.iter().map(|s| (*s, 0)))
            .collect();
        Some(aggregate_state(&nodes))
    }

    /// WORKFLOW_RUNS: a workflow is tracked exactly while it has active nodes, with the set
    /// of them.
    pub(super) fn check_workflows(&self) -> Result<(), String> {
        let mut nodes: HashMap<&str, BTreeSet<TaskId>> = HashMap::new();
        for id in self.tasks.keys() {
            if let Some(wf) = self.workflow_of(*id) {
                nodes.entry(wf).or_default().insert(*id);
            }
        }
        for (wf, run) in &self.workflows.by_id {
            let live = nodes.remove(wf.as_str()).unwrap_or_default();
            if live != run.nodes {
                return Err(format!(
                    "WORKFLOW_RUNS: {wf} tracks {} active nodes, has {}",
                    run.nodes.len(),
                    live.len()
                ));
            }
        }
        match nodes.into_iter().next() {
            Some((wf, n)) => Err(format!(
                "WORKFLOW_RUNS: {wf} has {} active nodes, untracked",
                n.len()
            )),
            None => Ok(()),
        }
    }
}
