-- Drover schema, version 5: every event kind in the event log, and task retention.
--
-- `events.type` says which columns a row uses:
-- 'task':     task_id, queue, state, attempt (worker, reason optional), workflow (optional:
--             the workflow the task is a node of);
-- 'worker':   worker_name, worker_state ('joined' | 'suspect' | 'lost' | 'alive' |
--             'draining' | 'resumed' | 'left');
-- 'workflow': workflow (its id), state (its aggregate state: 'pending' | 'running' |
--             'succeeded' | 'failed' | 'cancelled');
-- 'schedule': schedule (its name), state (the change: 'created' | 'updated' | 'paused' |
--             'resumed' | 'deleted' | 'fired' | 'skipped'), task_id (optional: the task a
--             fire created), reason (optional).
ALTER TABLE events ADD COLUMN workflow TEXT;
ALTER TABLE events ADD COLUMN schedule TEXT;

-- Task retention (`Store::prune_tasks`) deletes the terminal tasks that finished longest ago:
-- only terminal rows are indexed, so active tasks cost nothing here, and each task enters the
-- index once, when it ends. The state list must stay the same text as in the prune query,
-- or SQLite will not use this partial index.
CREATE INDEX tasks_terminal_by_finished ON tasks (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled', 'timed_out', 'skipped', 'expired',
                    'dead');
