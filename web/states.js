// Generated from drover-core by crates/drover-server/src/web_states.rs: do not edit.
// Run `DROVER_BLESS=1 cargo test -p drover-server web_states` after changing a state.

export const TASK_STATES = ['pending', 'queued', 'assigned', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'skipped', 'expired', 'dead'];
export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out', 'skipped', 'expired', 'dead']);
export const WORKER_STATES = ['alive', 'suspect', 'lost', 'draining', 'drained'];
export const WORKFLOW_STATES = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];
export const WORKFLOW_TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
