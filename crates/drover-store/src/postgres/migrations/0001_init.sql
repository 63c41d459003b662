-- Drover's PostgreSQL schema, version 1: the equivalent of SQLite's schema after its migration
-- 0010 (src/sqlite/migrations), table by table and column by column, so that a change to one
-- is a mechanical change to the other.
--
-- Conventions: task ids are UUIDs; PostgreSQL orders them bytewise, like SQLite orders its
-- 16-byte big-endian BLOBs, i.e. like the u128 (UUIDv7: by creation time). Times are
-- microseconds since the Unix epoch (BIGINT), always decided by the core: there is no clock in
-- SQL. u64 values are stored bit-for-bit in BIGINT columns. States, outcomes and streams are
-- their lowercase names; JSON documents are TEXT, encoded exactly as in SQLite. Names and ids
-- that listings order by are COLLATE "C": bytewise, like SQLite's BINARY, whatever the
-- database's locale.

CREATE TABLE tasks (
    id              UUID    NOT NULL PRIMARY KEY,
    seq             BIGINT  NOT NULL,
    -- The definition: written once, on insert.
    queue           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    priority        BIGINT  NOT NULL,
    spec            TEXT    NOT NULL,   -- JSON, as in SQLite
    max_attempts    BIGINT  NOT NULL,
    backoff_ms      BIGINT  NOT NULL,
    timeout_ms      BIGINT,
    idempotency_key TEXT,
    placement       TEXT    NOT NULL,   -- JSON, as in SQLite; {} by default
    -- The mutable state.
    state           TEXT    NOT NULL,
    attempt         BIGINT  NOT NULL,
    lost            BIGINT  NOT NULL,
    not_before      BIGINT,
    worker          TEXT,
    lease           TEXT,               -- 32 lowercase hex digits
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    exit_code       BIGINT,
    error           TEXT
);

-- Listing by state, newest first, the snapshot load and task retention.
CREATE INDEX tasks_by_state ON tasks (state, id);
-- Listing by queue, newest first.
CREATE INDEX tasks_by_queue ON tasks (queue, id);
-- Idempotency keys are read at start. Not UNIQUE: broadcast copies share their parent's key.
CREATE INDEX tasks_by_idempotency_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE attempts (
    task_id     UUID    NOT NULL,
    attempt     BIGINT  NOT NULL,
    worker      TEXT    NOT NULL,
    assigned_at BIGINT  NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    outcome     TEXT,
    exit_code   BIGINT,
    error       TEXT,
    PRIMARY KEY (task_id, attempt)
);

-- The durable, totally ordered event log. `type` says which columns a row uses (see SQLite's
-- 0005_events_and_retention.sql).
CREATE TABLE events (
    seq          BIGINT  NOT NULL PRIMARY KEY,
    at           BIGINT  NOT NULL,
    type         TEXT    NOT NULL,
    task_id      UUID,
    queue        TEXT,
    state        TEXT,
    attempt      BIGINT,
    worker       TEXT,
    reason       TEXT,
    worker_name  TEXT,
    worker_state TEXT,
    workflow     TEXT,
    schedule     TEXT
);

-- Output chunks; `id` gives the write order.
CREATE TABLE logs (
    id      BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id UUID    NOT NULL,
    attempt BIGINT  NOT NULL,
    stream  TEXT    NOT NULL,
    data    BYTEA   NOT NULL
);
CREATE INDEX logs_by_attempt ON logs (task_id, attempt, id);

-- Counters kept by the commit, so startup never scans a table.
-- next_task_seq: max(tasks.seq) + 1.
CREATE TABLE meta (
    key   TEXT    NOT NULL PRIMARY KEY,
    value BIGINT  NOT NULL
);
INSERT INTO meta (key, value) VALUES ('next_task_seq', 0);

-- Tasks per state, kept exact by triggers so counting never scans the table. A new task
-- state needs a migration that adds its row.
CREATE TABLE state_counts (
    state TEXT    NOT NULL PRIMARY KEY,
    n     BIGINT  NOT NULL
);
INSERT INTO state_counts (state, n) VALUES
    ('pending', 0), ('queued', 0), ('assigned', 0), ('running', 0), ('succeeded', 0),
    ('failed', 0), ('cancelled', 0), ('timed_out', 0), ('skipped', 0), ('expired', 0),
    ('dead', 0);

-- Statement-level triggers over the transition tables: one update per state a statement
-- touched, however many rows it wrote (a commit writes its tasks in one statement).
CREATE FUNCTION tasks_count_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE state_counts s SET n = s.n + d.n
    FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) d
    WHERE s.state = d.state;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_count_insert();

CREATE FUNCTION tasks_count_update() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE state_counts s SET n = s.n + d.n
    FROM (SELECT state, sum(delta) AS n FROM (
              SELECT state, 1 AS delta FROM new_rows
              UNION ALL SELECT state, -1 FROM old_rows) c
          GROUP BY state HAVING sum(delta) <> 0) d
    WHERE s.state = d.state;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_count_update();

CREATE FUNCTION tasks_count_delete() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE state_counts s SET n = s.n - d.n
    FROM (SELECT state, count(*) AS n FROM old_rows GROUP BY state) d
    WHERE s.state = d.state;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_count_delete();

-- Webhooks and their delivery log.
CREATE TABLE webhooks (
    id         TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,   -- JSON array of patterns
    secret     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    -- Every event up to this seq has been delivered or given up on.
    cursor     BIGINT  NOT NULL
);

-- One row per delivery attempt; `id` gives the order.
CREATE TABLE webhook_deliveries (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id  TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    event       TEXT    NOT NULL,
    attempt     BIGINT  NOT NULL,
    status      BIGINT,
    error       TEXT,
    ok          BOOLEAN NOT NULL,
    last        BOOLEAN NOT NULL,
    at          BIGINT  NOT NULL,
    duration_ms BIGINT  NOT NULL
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);

-- Task flow state (dependencies, serial keys, deadlines, workflow membership), written by the
-- core (`Write::Flow`) in the same transaction as the transitions they follow.
CREATE TABLE task_flow (
    task_id             UUID    NOT NULL PRIMARY KEY,
    after_ids           TEXT    NOT NULL,   -- JSON array of task id strings
    waiting             TEXT    NOT NULL,   -- JSON array: upstreams not yet terminal
    on_upstream_failure TEXT    NOT NULL,   -- 'skip' | 'run'
    serial_key          TEXT,
    deadline            BIGINT,
    workflow_id         TEXT,
    node                TEXT,
    upstream_failed     TEXT,               -- JSON [id, state] of the first failed upstream
    upstream_outputs    TEXT                -- JSON [[node, output], ..]
);
CREATE INDEX task_flow_by_workflow ON task_flow (workflow_id, task_id)
    WHERE workflow_id IS NOT NULL;

CREATE TABLE queues (
    name        TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    concurrency BIGINT,
    paused      BOOLEAN NOT NULL,
    strategy    TEXT
);

CREATE TABLE workflows (
    id          TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    doc         TEXT    NOT NULL    -- JSON: the node list [{name, task_id, after:[names]}]
);
-- Task retention walks them oldest first; the listing newest first.
CREATE INDEX workflows_by_created ON workflows (created_at, id);

-- Schedules: one row per schedule, written by the core (`Write::Schedule`) in the same
-- transaction as the task each fire creates.
CREATE TABLE schedules (
    name        TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    doc         TEXT    NOT NULL    -- JSON: trigger, policies, template task, state
);

-- Workers an operator drained (`Write::WorkerDrain`).
CREATE TABLE drained_workers (
    name TEXT COLLATE "C" NOT NULL PRIMARY KEY
);

-- API tokens. Only the SHA-256 of each secret is kept. `namespaces` is a JSON array (empty:
-- every namespace); `worker_limits` what a worker registering with the token may claim.
CREATE TABLE api_tokens (
    name          TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    role          TEXT    NOT NULL,
    namespaces    TEXT    NOT NULL DEFAULT '[]',
    hash          BYTEA   NOT NULL UNIQUE,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT,
    worker_limits TEXT    NOT NULL DEFAULT '{}'
);

-- The audit log: every state-changing or refused request. Like SQLite's AUTOINCREMENT, a seq
-- is never reused, pruned or not.
CREATE TABLE audit (
    seq       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT  NOT NULL,
    token     TEXT,
    role      TEXT,
    remote    TEXT    NOT NULL,
    operation TEXT    NOT NULL,
    object    TEXT    NOT NULL,
    status    BIGINT  NOT NULL
);
CREATE INDEX audit_by_at ON audit (at);
CREATE INDEX audit_by_token ON audit (token, seq);
