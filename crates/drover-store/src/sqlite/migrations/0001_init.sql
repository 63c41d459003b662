-- Drover schema, version 1.
--
-- Conventions: task ids are 16-byte big-endian BLOBs, so they sort like the u128 (UUIDv7, i.e.
-- by creation time). Times are microseconds since the Unix epoch (INTEGER), always decided by
-- the core: there is no clock in SQL. u64 values are stored bit-for-bit in INTEGER columns.
-- States, outcomes and streams are their lowercase names.

CREATE TABLE tasks (
    id              BLOB    NOT NULL PRIMARY KEY,
    seq             INTEGER NOT NULL,
    -- The definition: written once, on insert.
    queue           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    spec            TEXT    NOT NULL,   -- JSON: {"type":"exec","argv":[..],"env":[[k,v],..],"cwd":..} | {"type":"noop"}
    max_attempts    INTEGER NOT NULL,
    backoff_ms      INTEGER NOT NULL,
    timeout_ms      INTEGER,
    idempotency_key TEXT,
    placement       TEXT    NOT NULL,   -- JSON: {"strategy","key","resources","selector","spread_label","shard"}; {} by default
    -- The mutable state.
    state           TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    lost            INTEGER NOT NULL,
    not_before      INTEGER,
    worker          TEXT,
    lease           TEXT,               -- 32 lowercase hex digits
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    exit_code       INTEGER,
    error           TEXT
) WITHOUT ROWID;

-- Listing by state, newest first, and the snapshot load (state IN the non-terminal ones).
CREATE INDEX tasks_by_state ON tasks (state, id);
-- Listing by queue, newest first. Listing by queue and state walks tasks_by_state and filters
-- the queue: an index on (queue, state, id) would cost every state change two more b-tree
-- writes (~15% of a commit).
CREATE INDEX tasks_by_queue ON tasks (queue, id);

CREATE TABLE attempts (
    task_id     BLOB    NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT    NOT NULL,
    assigned_at INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    outcome     TEXT,
    exit_code   INTEGER,
    error       TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

-- The durable, totally ordered event log. `type` says which columns are set:
-- 'task': task_id, queue, state, attempt (worker, reason optional);
-- 'worker': worker_name, worker_state ('joined' | 'left').
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    task_id      BLOB,
    queue        TEXT,
    state        TEXT,
    attempt      INTEGER,
    worker       TEXT,
    reason       TEXT,
    worker_name  TEXT,
    worker_state TEXT
);

-- Output chunks; the rowid gives the write order.
CREATE TABLE logs (
    id      INTEGER PRIMARY KEY,
    task_id BLOB    NOT NULL,
    attempt INTEGER NOT NULL,
    stream  TEXT    NOT NULL,
    data    BLOB    NOT NULL
);
CREATE INDEX logs_by_attempt ON logs (task_id, attempt);

-- Counters kept by the commit, so startup never scans a table.
-- next_task_seq: max(tasks.seq) + 1.
CREATE TABLE meta (
    key   TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('next_task_seq', 0);

-- Tasks per state, kept exact by triggers so counting never scans the table. A new task
-- state needs a migration that adds its row.
CREATE TABLE state_counts (
    state TEXT    NOT NULL PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO state_counts (state, n) VALUES
    ('pending', 0), ('queued', 0), ('assigned', 0), ('running', 0), ('succeeded', 0),
    ('failed', 0), ('cancelled', 0), ('timed_out', 0), ('skipped', 0), ('expired', 0),
    ('dead', 0);

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    UPDATE state_counts SET n = n + 1 WHERE state = new.state;
END;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks
WHEN old.state IS NOT new.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = old.state;
    UPDATE state_counts SET n = n + 1 WHERE state = new.state;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = old.state;
END;
