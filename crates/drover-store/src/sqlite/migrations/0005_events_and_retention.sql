-- Drover schema, version 5: every event kind in the event log.
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
