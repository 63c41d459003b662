//! Workflows: a DAG of named nodes submitted as one document. Pure validation (duplicate
//! names, unknown references, cycles named node by node, size bounds) and the durable
//! workflow record. The nodes become ordinary tasks with `FlowSpec::after` edges.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Micros, TaskId, TaskState, WorkflowState};

/// Most nodes in one workflow.
pub const MAX_NODES: usize = 1_000;
/// Most upstream edges of one node.
pub const MAX_EDGES_PER_NODE: usize = 100;

/// The durable record of a workflow: which task each node is (the latest run of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowRecord {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub created_at: Micros,
    pub nodes: Vec<WorkflowNode>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowNode {
    pub name: String,
    pub task_id: TaskId,
    pub after: Vec<String>,
}

/// Why a workflow document was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DagError {
    Empty,
    TooLarge(usize),
    Duplicate(String),
    Unknown {
        node: String,
        missing: String,
    },
    SelfLoop(String),
    /// The cycle, first node repeated at the end: `a -> b -> c -> a`.
    Cycle(Vec<String>),
    TooManyEdges(String),
}

impl std::fmt::Display for DagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DagError::Empty => write!(f, "a workflow needs at least one task"),
            DagError::TooLarge(n) => {
                write!(f, "the workflow has {n} tasks; at most {MAX_NODES}")
            }
            DagError::Duplicate(n) => write!(f, "two tasks are named '{n}'; names are unique"),
            DagError::Unknown { node, missing } => {
                write!(
                    f,
                    "task '{node}' runs after '{missing}', which is not a task of this workflow"
                )
            }
            DagError::SelfLoop(n) => write!(f, "task '{n}' runs after itself"),
            DagError::Cycle(c) => write!(f, "the workflow has a cycle: {}", c.join(" -> ")),
            DagError::TooManyEdges(n) => write!(
                f,
                "task '{n}' has more than {MAX_EDGES_PER_NODE} upstream tasks"
            ),
        }
    }
}

/// Checks a DAG given as (name, after) pairs and returns a topological order (indexes),
/// stable: among ready nodes, document order.
pub fn validate(nodes: &[(String, Vec<String>)]) -> Result<Vec<usize>, DagError> {
    if nodes.is_empty() {
        return Err(DagError::Empty);
    }
    if nodes.len() > MAX_NODES {
        return Err(DagError::TooLarge(nodes.len()));
    }
    let mut ix: HashMap<&str, usize> = HashMap::new();
    for (i, (name, _)) in nodes.iter().enumerate() {
        if ix.insert(name.as_str(), i).is_some() {
            return Err(DagError::Duplicate(name.clone()));
        }
    }
    let mut ups: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
    for (name, after) in nodes {
        if after.len() > MAX_EDGES_PER_NODE {
            return Err(DagError::TooManyEdges(name.clone()));
        }
        let mut u = Vec::with_capacity(after.len());
        for a in after {
            if a == name {
                return Err(DagError::SelfLoop(name.clone()));
            }
            let Some(&j) = ix.get(a.as_str()) else {
                return Err(DagError::Unknown {
                    node: name.clone(),
                    missing: a.clone(),
                });
            };
            if !u.contains(&j) {
                u.push(j);
            }
        }
        ups.push(u);
    }
    // Kahn's algorithm in document order.
    let n = nodes.len();
    let mut downs: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for (i, u) in ups.iter().enumerate() {
        indeg[i] = u.len();
        for &j in u {
            downs[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &downs[i] {
            indeg[d] -= 1;
            if indeg[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    Err(DagError::Cycle(find_cycle(nodes, &ups, &indeg)))
}

/// A cycle among the nodes Kahn's algorithm could not order (indegree left > 0): walk
/// upstream edges inside that set until a node repeats.
fn find_cycle(nodes: &[(String, Vec<String>)], ups: &[Vec<usize>], indeg: &[usize]) -> Vec<String> {
    let start = (0..nodes.len())
        .find(|&i| indeg[i] > 0)
        .expect("a cycle exists");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut path = vec![];
    let mut at = start;
    loop {
        if let Some(&pos) = seen.get(&at) {
            // path[pos..] is the cycle, walked upstream: reverse it to read in run order,
            // then start at the node that comes first in the document.
            let mut c: Vec<usize> = path[pos..].iter().rev().copied().collect();
            let first = (0..c.len()).min_by_key(|&k| c[k]).unwrap_or(0);
            c.rotate_left(first);
            let mut names: Vec<String> = c.iter().map(|&i| nodes[i].0.clone()).collect();
            names.push(names[0].clone());
            return names;
        }
        seen.insert(at, path.len());
        path.push(at);
        at = *ups[at]
            .iter()
            .find(|&&j| indeg[j] > 0)
            .expect("a node on a cycle has an upstream on it");
    }
}

/// A workflow's aggregate state from its current nodes' (state, attempts so far): `pending`
/// while no node has ever been assigned, `running` while any node is not terminal, else
/// `succeeded` if all succeeded, `cancelled` if some were cancelled and none failed, else
/// `failed`.
pub fn aggregate_state(nodes: &[(TaskState, u32)]) -> WorkflowState {
    if nodes.iter().any(|(s, _)| !s.is_terminal()) {
        let untouched = |(s, attempts): &(TaskState, u32)| {
            *attempts == 0 && matches!(s, TaskState::Pending | TaskState::Queued)
        };
        if nodes.iter().all(untouched) {
            return WorkflowState::Pending;
        }
        return WorkflowState::Running;
    }
    let states: Vec<TaskState> = nodes.iter().map(|(s, _)| *s).collect();
    if states.iter().all(|s| *s == TaskState::Succeeded) {
        WorkflowState::Succeeded
    } else if states.contains(&TaskState::Cancelled) && !states.contains(&TaskState::Failed) {
        WorkflowState::Cancelled
    } else {
        WorkflowState::Failed
    }
}

/// Node names to env-var suffixes: `build-app` -> `BUILD_APP`.
pub fn env_name(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// What a rerun of a finished workflow does, from its current nodes' states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rerun {
    /// This node (an index) has not ended: a workflow is rerun only once it ended.
    Running(usize),
    /// Every node succeeded: nothing to rerun.
    Nothing,
    /// Replace these nodes by new tasks, in topological order (ids minted in this order
    /// sort like the run order).
    Replace(Vec<usize>),
}

/// Which nodes a rerun replaces: every node that did not succeed, the others keep their
/// task. `states` are the nodes' current states, in node order.
pub fn rerun(nodes: &[WorkflowNode], states: &[TaskState]) -> Result<Rerun, DagError> {
    debug_assert_eq!(nodes.len(), states.len());
    if let Some(i) = states.iter().position(|s| !s.is_terminal()) {
        return Ok(Rerun::Running(i));
    }
    let pairs: Vec<(String, Vec<String>)> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.after.clone()))
        .collect();
    let replace: Vec<usize> = validate(&pairs)?
        .into_iter()
        .filter(|&i| states[i] != TaskState::Succeeded)
        .collect();
    Ok(if replace.is_empty() {
        Rerun::Nothing
    } else {
        Rerun::Replace(replace)
    })
}

/// Node name -> index.
pub fn index(nodes: &[WorkflowNode]) -> BTreeMap<&str, usize> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, after: &[&str]) -> (String, Vec<String>) {
        (name.into(), after.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn orders_a_diamond() {
        let d = vec![
            n("d", &["b", "c"]),
            n("a", &[]),
            n("b", &["a"]),
            n("c", &["a"]),
        ];
        assert_eq!(validate(&d).unwrap(), vec![1, 2, 3, 0]);
    }

    #[test]
    fn names_the_cycle() {
        let d = vec![n("a", &["c"]), n("b", &["a"]), n("c", &["b"]), n("x", &[])];
        match validate(&d) {
            Err(DagError::Cycle(c)) => {
                assert_eq!(c.join(" -> "), "a -> b -> c -> a");
            }
            other => panic!("{other:?}"),
        }
        let e = DagError::Cycle(vec!["a".into(), "b".into(), "a".into()]);
        assert_eq!(e.to_string(), "the workflow has a cycle: a -> b -> a");
    }

    #[test]
    fn rejects_bad_documents() {
        assert_eq!(validate(&[]), Err(DagError::Empty));
        assert_eq!(
            validate(&[n("a", &[]), n("a", &[])]),
            Err(DagError::Duplicate("a".into()))
        );
        assert!(matches!(
            validate(&[n("a", &["zz"])]),
            Err(DagError::Unknown { .. })
        ));
        assert_eq!(
            validate(&[n("a", &["a"])]),
            Err(DagError::SelfLoop("a".into()))
        );
        let big: Vec<_> = (0..=MAX_NODES).map(|i| n(&format!("n{i}"), &[])).collect();
        assert_eq!(validate(&big), Err(DagError::TooLarge(MAX_NODES + 1)));
    }

    #[test]
    fn aggregates() {
        use TaskState::*;
        let agg = |nodes: &[(TaskState, u32)]| aggregate_state(nodes).as_str();
        assert_eq!(agg(&[(Queued, 0), (Pending, 0)]), "pending");
        // A node waiting for its retry has run: the workflow is running.
        assert_eq!(agg(&[(Pending, 1), (Pending, 0)]), "running");
        assert_eq!(agg(&[(Succeeded, 1), (Succeeded, 1)]), "succeeded");
        assert_eq!(agg(&[(Succeeded, 1), (Running, 1)]), "running");
        assert_eq!(agg(&[(Failed, 1), (Skipped, 0)]), "failed");
        assert_eq!(agg(&[(Cancelled, 0), (Succeeded, 1)]), "cancelled");
        assert_eq!(env_name("build-app.x"), "BUILD_APP_X");
    }

    #[test]
    fn rerun_replaces_what_did_not_succeed_in_run_order() {
        use TaskState::*;
        let node = |name: &str, after: &[&str]| WorkflowNode {
            name: name.into(),
            task_id: TaskId(0),
            after: after.iter().map(|s| s.to_string()).collect(),
        };
        // Listed out of order: d after b and c, both after a.
        let nodes = [
            node("d", &["b", "c"]),
            node("b", &["a"]),
            node("a", &[]),
            node("c", &["a"]),
        ];
        assert_eq!(
            rerun(&nodes, &[Skipped, Failed, Succeeded, Succeeded]),
            Ok(Rerun::Replace(vec![1, 0]))
        );
        assert_eq!(rerun(&nodes, &[Succeeded; 4]), Ok(Rerun::Nothing));
        assert_eq!(
            rerun(&nodes, &[Pending, Running, Succeeded, Succeeded]),
            Ok(Rerun::Running(0))
        );
    }
}
