//! The dashboard's table of states, `web/states.js`, generated from the core's enums so the
//! page never keeps a hand copy. A test fails when the file and the core disagree; run it
//! with `DROVER_BLESS=1` to rewrite the file.

use drover_core::{TaskState, WorkerStatus, WorkflowState};

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The text of `web/states.js`.
pub fn render() -> String {
    let tasks = TaskState::ALL.iter();
    let workflows = WorkflowState::ALL.iter();
    format!(
        "// Generated from drover-core by crates/drover-server/src/web_states.rs: do not edit.\n\
         // Run `DROVER_BLESS=1 cargo test -p drover-server web_states` after changing a state.\n\n\
         export const TASK_STATES = {};\n\
         export const TERMINAL = new Set({});\n\
         export const WORKER_STATES = {};\n\
         export const WORKFLOW_STATES = {};\n\
         export const WORKFLOW_TERMINAL = new Set({});\n",
        list(tasks.clone().map(|s| s.as_str())),
        list(tasks.filter(|s| s.is_terminal()).map(|s| s.as_str())),
        list(WorkerStatus::ALL.iter().map(|s| s.as_str())),
        list(workflows.clone().map(|s| s.as_str())),
        list(workflows.filter(|s| s.is_terminal()).map(|s| s.as_str())),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn web_states_js_matches_the_core() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/states.js");
        let want = super::render();
        if std::env::var_os("DROVER_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            have, want,
            "web/states.js is stale: run DROVER_BLESS=1 cargo test -p drover-server web_states"
        );
    }
}
