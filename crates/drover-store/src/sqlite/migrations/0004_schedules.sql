-- Drover schema, version 4: schedules (cron, fixed rate, fixed delay). One row per schedule,
-- written by the core (`Write::Schedule`) in the same transaction as the task each fire
-- creates, with the last handled slot: at most one fire per (schedule, slot).

CREATE TABLE schedules (
    name        TEXT    NOT NULL PRIMARY KEY,
    doc         TEXT    NOT NULL    -- JSON: trigger, policies, template task, state
) WITHOUT ROWID;

-- Outputs of succeeded workflow upstreams, handed to a node as environment variables:
-- JSON [[node, output], ..].
ALTER TABLE task_flow ADD COLUMN upstream_outputs TEXT;
