//! Workflow progress: the aggregate state of every workflow with active nodes, so that each
//! change of it is one `EventKind::Workflow` event, in the same batch as the node transition
//! that caused it.

use std::collections::HashMap;

use super::{Coordinator, Effects};
use crate::dag::aggregate_state;
use crate::model::{EventKind, Micros, TaskId, TaskState, WorkflowState};

#[derive(Default)]
pub(super) struct Runs {
    by_id: HashMap<String, Run>,
}

/// A workflow with active nodes.
struct Run {
    active: usize,
    /// Terminal states of the nodes that ended (of this run: a rerun reruns every node that
    /// did not succeed, so the others count as succeeded).
    ended: Vec<TaskState>,
    started: bool,
}

impl Run {
    fn state(&self) -> WorkflowState {
        match (self.active, self.started) {
            (0, _) => aggregate_state(&self.ended),
            (_, true) => WorkflowState::Running,
            (_, false) => WorkflowState::Pending,
        }
    }
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
        for t in self.tasks.values() {
            let Some(wf) = self.workflow_of(t.rec.id) else {
                continue;
            };
            let run = runs.entry(wf.to_string()).or_insert_with(|| Run {
                active: 0,
                ended: ended.remove(wf).unwrap_or_default(),
                started: false,
            });
            run.active += 1;
            run.started |= !matches!(t.rec.state, TaskState::Pending | TaskState::Queued);
        }
        for run in runs.values_mut() {
            run.started |= !run.ended.is_empty();
        }
        self.workflows.by_id = runs;
    }

    /// A node was created (a workflow submit or a rerun). The first one of a run announces
    /// the workflow as `pending`.
    pub(super) fn workflow_node_added(&mut self, now: Micros, wf: &str, fx: &mut Effects) {
        let run = self.workflows.by_id.entry(wf.to_string()).or_insert(Run {
            active: 0,
            ended: Vec::new(),
            started: false,
        });
        run.active += 1;
        if run.active == 1 && run.ended.is_empty() {
            self.emit_workflow(now, wf, WorkflowState::Pending, fx);
        }
    }

    /// A node was assigned: the first one makes the workflow `running`.
    pub(super) fn workflow_node_assigned(&mut self, now: Micros, id: TaskId, fx: &mut Effects) {
        let Some(wf) = self.workflow_of(id).map(str::to_string) else {
            return;
        };
        let Some(run) = self.workflows.by_id.get_mut(&wf) else {
            return;
        };
        if !run.started {
            run.started = true;
            self.emit_workflow(now, &wf, WorkflowState::Running, fx);
        }
    }

    /// A node reached a terminal state; the last one ends the workflow.
    pub(super) fn workflow_node_ended(
        &mut self,
        now: Micros,
        wf: &str,
        state: TaskState,
        fx: &mut Effects,
    ) {
        let Some(run) = self.workflows.by_id.get_mut(wf) else {
            return;
        };
        run.active = run.active.saturating_sub(1);
        run.ended.push(state);
        if run.active > 0 {
            return;
        }
        let run = self.workflows.by_id.remove(wf).expect("just looked up");
        self.emit_workflow(now, wf, run.state(), fx);
    }

    /// The live state of a workflow with active nodes.
    pub fn workflow_state(&self, wf: &str) -> Option<WorkflowState> {
        self.workflows.by_id.get(wf).map(Run::state)
    }

    /// WORKFLOW_RUNS: a workflow is tracked exactly while it has active nodes, and counts
    /// them.
    pub(super) fn check_workflows(&self) -> Result<(), String> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in self.tasks.keys() {
            if let Some(wf) = self.workflow_of(*id) {
                *counts.entry(wf).or_default() += 1;
            }
        }
        for (wf, run) in &self.workflows.by_id {
            let n = counts.remove(wf.as_str()).unwrap_or(0);
            if n != run.active {
                return Err(format!(
                    "WORKFLOW_RUNS: {wf} counts {} active nodes, has {n}",
                    run.active
                ));
            }
        }
        match counts.into_iter().next() {
            Some((wf, n)) => Err(format!(
                "WORKFLOW_RUNS: {wf} has {n} active nodes, untracked"
            )),
            None => Ok(()),
        }
    }

    fn emit_workflow(&mut self, now: Micros, wf: &str, state: WorkflowState, fx: &mut Effects) {
        self.emit(
            now,
            EventKind::Workflow {
                workflow_id: wf.to_string(),
                state,
            },
            fx,
        );
    }
}
