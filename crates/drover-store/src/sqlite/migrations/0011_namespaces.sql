-- Drover schema, version 11: namespaces. Every task, workflow, schedule, queue, webhook and
-- event belongs to one ('default' for everything stored before). Queue and schedule names are
-- unique within a namespace, and so are idempotency keys.

ALTER TABLE tasks ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
-- Listing one namespace's tasks, newest first.
CREATE INDEX tasks_by_namespace ON tasks (namespace, id);
DROP INDEX tasks_by_idempotency_key;
CREATE INDEX tasks_by_idempotency_key ON tasks (namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE queues_v11 (
    namespace   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    concurrency INTEGER,
    paused      INTEGER NOT NULL,
    strategy    TEXT,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
INSERT INTO queues_v11 SELECT 'default', name, concurrency, paused, strategy FROM queues;
DROP TABLE queues;
ALTER TABLE queues_v11 RENAME TO queues;

CREATE TABLE schedules_v11 (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
INSERT INTO schedules_v11 SELECT 'default', name, doc FROM schedules;
DROP TABLE schedules;
ALTER TABLE schedules_v11 RENAME TO schedules;

ALTER TABLE workflows ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';

-- NULL for a worker's events: they are the cluster's, seen only by tokens of every namespace.
ALTER TABLE events ADD COLUMN namespace TEXT;
UPDATE events SET namespace = 'default' WHERE type <> 'worker';

-- '*': every namespace's events (what a webhook made before namespaces received).
ALTER TABLE webhooks ADD COLUMN namespace TEXT NOT NULL DEFAULT '*';

-- Task counts per namespace and state, kept by the same triggers.
DROP TRIGGER tasks_count_insert;
DROP TRIGGER tasks_count_update;
DROP TRIGGER tasks_count_delete;
DROP TABLE state_counts;
CREATE TABLE state_counts (
    namespace TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (namespace, state)
) WITHOUT ROWID;
INSERT INTO state_counts (namespace, state, n)
    SELECT namespace, state, count(*) FROM tasks GROUP BY namespace, state;
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO state_counts (namespace, state, n) VALUES (new.namespace, new.state, 1)
        ON CONFLICT (namespace, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks
WHEN old.state IS NOT new.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE namespace = old.namespace AND state = old.state;
    INSERT INTO state_counts (namespace, state, n) VALUES (new.namespace, new.state, 1)
        ON CONFLICT (namespace, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE state_counts SET n = n - 1 WHERE namespace = old.namespace AND state = old.state;
END;
