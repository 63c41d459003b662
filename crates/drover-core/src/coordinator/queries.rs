//! Read-only views of the coordinator for the API and the simulator: connected workers,
//! active counts, why a task waits, placement and schedule state. None changes anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::flow::FlowRecord;
use super::io::CoreConfig;
use super::schedules::ScheduleSummary;
use super::workers::WorkerSummary;
use super::Coordinator;
use crate::model::{Scoped, TaskId, TaskRecord, TaskState, WorkflowState};
use crate::placement::{candidates, Job, PlacementSpec, PlacementState, Shard, WorkerView};

impl Coordinator {
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Connected workers, for the API.
    pub fn workers(&self) -> Vec<WorkerSummary> {
        self.workers
            .values()
            .map(|w| WorkerSummary {
                info: w.info.clone(),
                held: w.held.len(),
                running: w
                    .held
                    .keys()
                    .filter(|id| self.tasks.is_in(id, TaskState::Running))
                    .count(),
                draining: w.draining,
                resources_free: self.worker_resources_free(&w.info.name).unwrap_or_default(),
                joined_at: w.joined_at,
                last_seen: w.watch.last_seen,
                status: w.status(),
            })
            .collect()
    }

    /// Active tasks per state.
    pub fn active_counts(&self) -> BTreeMap<TaskState, usize> {
        let mut m = BTreeMap::new();
        for t in self.tasks.values() {
            *m.entry(t.rec.state).or_default() += 1;
        }
        m
    }

    pub fn is_active(&self, id: TaskId) -> bool {
        self.tasks.contains(&id)
    }

    /// An active task's record; terminal tasks live only in the store.
    pub fn task(&self, id: TaskId) -> Option<&TaskRecord> {
        self.tasks.get(&id).map(|t| &t.rec)
    }

    /// The flow record of an active task, if it has one.
    pub fn flow(&self, id: TaskId) -> Option<&FlowRecord> {
        self.deps.get(&id)
    }

    /// The task already submitted with this idempotency key, if any.
    pub fn idempotent(&self, key: &Scoped) -> Option<TaskId> {
        self.idempotency.get(key)
    }

    /// Why an active task waits, in a sentence: its upstreams, its key's turn, its queue's
    /// pause or limit; otherwise the placement reason (`why_pending`).
    pub fn why_waiting(&self, id: TaskId) -> Option<String> {
        let t = self.tasks.get(&id)?;
        match t.rec.state {
            TaskState::Pending => {
                if let Some(r) = self.deps.get(&id).filter(|r| !r.waiting.is_empty()) {
                    let ids: Vec<String> = r.waiting.iter().map(|u| u.to_string()).collect();
                    return Some(format!("waiting for upstream tasks: {}", ids.join(", ")));
                }
            }
            TaskState::Queued => {
                let def = &t.rec.def;
                let serial = self.deps.serial_key(&id).map(|k| def.scoped(k));
                let limit = def.key_limit().map(|(k, _)| k);
                let why = self.ready.why_parked(
                    &t.ready_key(),
                    &def.queue_key(),
                    serial.as_ref(),
                    limit.as_ref(),
                );
                if why.is_some() {
                    return why;
                }
            }
            _ => {}
        }
        self.why_pending(id)
    }

    /// Why a queued task is not placed, in a sentence ("no worker has kind gpu-render",
    /// "2 workers lack label zone=b; 1 worker has no free slot"). `None` for tasks that are
    /// not waiting (or not active). The reason is the one recorded by the last dispatch
    /// round that looked at the task; a task no round looked at is checked now against the
    /// connected workers (O(workers), never a scan of the tasks).
    pub fn why_pending(&self, id: TaskId) -> Option<String> {
        let t = self.tasks.get(&id)?;
        match t.rec.state {
            TaskState::Queued => {
                let spec = self.placer.spec_of(id, &t.rec.def);
                if let Some(u) = self.placer.why(&id) {
                    return Some(u.explain(&spec, Job::of(&t.rec.def)));
                }
                let views: Vec<WorkerView<'_>> = self
                    .workers
                    .values()
                    .map(|w| WorkerView::new(&w.info, w.held.len(), w.draining))
                    .collect();
                let c = candidates(&spec, Job::of(&t.rec.def), &views);
                Some(if c.ok.is_empty() {
                    c.unplaced.explain(&spec, Job::of(&t.rec.def))
                } else {
                    "queued behind earlier tasks".into()
                })
            }
            TaskState::Pending => Some(match t.rec.not_before {
                Some(at) => format!(
                    "waiting for its time ({at} µs since the epoch): delay or retry backoff"
                ),
                None => "waiting for its time: delay or retry backoff".into(),
            }),
            _ => None,
        }
    }

    /// A connected worker's resources not held by its attempts (declared minus the requests
    /// of the attempts it holds), for `drover workers`. O(attempts it holds).
    pub fn worker_resources_free(&self, name: &str) -> Option<BTreeMap<String, u64>> {
        let w = self.workers.get(name)?;
        let mut free = w.info.resources.clone();
        for id in w.held.keys() {
            if let Some(t) = self.tasks.get(id) {
                for (k, n) in self.placer.spec_of(*id, &t.rec.def).resources.iter() {
                    if let Some(v) = free.get_mut(k) {
                        *v = v.saturating_sub(n);
                    }
                }
            }
        }
        Some(free)
    }

    /// The placement spec the core uses for an active task.
    pub fn placement_spec(&self, id: TaskId) -> Option<Arc<PlacementSpec>> {
        let t = self.tasks.get(&id)?;
        Some(self.placer.spec_of(id, &t.rec.def))
    }

    /// The shard of a broadcast copy: the driver puts `index` and `count` in the worker's
    /// environment as `DROVER_SHARD_INDEX` and `DROVER_SHARD_COUNT`.
    pub fn shard(&self, id: TaskId) -> Option<Shard> {
        self.placement_spec(id)?.shard.clone()
    }

    /// Strategy state: cursor, hash ring and the adaptive model's learned statistics.
    pub fn placement_state(&self) -> &PlacementState {
        &self.placer.state
    }

    /// Schedules with their next fire time.
    pub fn schedules(&self) -> Vec<ScheduleSummary> {
        self.schedules.summaries(|t| self.tasks.contains(t))
    }

    /// The live state of a workflow with active nodes.
    pub fn workflow_state(&self, wf: &str) -> Option<WorkflowState> {
        self.workflows.state(wf, &self.tasks)
    }
}
