-- Drover schema, version 3: serial and parallel execution. Task flow state (dependencies,
-- serial keys, deadlines, workflow membership), queue configurations, workflows.
--
-- `task_flow` rows are written by the core (`Write::Flow`) in the same transaction as the
-- transitions they follow: `waiting` is exactly the upstreams still active, so a restart
-- resumes every dependency without reading history.

CREATE TABLE task_flow (
    task_id             BLOB    NOT NULL PRIMARY KEY,
    after_ids           TEXT    NOT NULL,   -- JSON array of task id strings
    waiting             TEXT    NOT NULL,   -- JSON array: upstreams not yet terminal
    on_upstream_failure TEXT    NOT NULL,   -- 'skip' | 'run'
    serial_key          TEXT,
    deadline            INTEGER,
    workflow_id         TEXT,
    node                TEXT,
    upstream_failed     TEXT                -- JSON [id, state] of the first failed upstream
) WITHOUT ROWID;

CREATE INDEX task_flow_by_workflow ON task_flow (workflow_id) WHERE workflow_id IS NOT NULL;

CREATE TABLE queues (
    name        TEXT    NOT NULL PRIMARY KEY,
    concurrency INTEGER,
    paused      INTEGER NOT NULL,
    strategy    TEXT
) WITHOUT ROWID;

-- Idempotency keys are looked up at start (the core indexes them). Not UNIQUE: broadcast
-- copies share their parent's definition, key included, and rows written before this version
-- may repeat a key.
CREATE INDEX tasks_by_idempotency_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE workflows (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    doc         TEXT    NOT NULL    -- JSON: the node list [{name, task_id, after:[names]}]
) WITHOUT ROWID;
