-- Drover schema (PostgreSQL), version 2: namespaces and queue weights, as SQLite's 0011 and
-- 0012. Every task, workflow, schedule, queue, webhook and event belongs to one namespace;
-- queue and schedule names and idempotency keys are unique within one.

ALTER TABLE tasks ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
CREATE INDEX tasks_by_namespace ON tasks (namespace, id);
DROP INDEX tasks_by_idempotency_key;
CREATE INDEX tasks_by_idempotency_key ON tasks (namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE queues ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE queues ADD COLUMN weight BIGINT NOT NULL DEFAULT 1;
ALTER TABLE queues DROP CONSTRAINT queues_pkey;
ALTER TABLE queues ADD PRIMARY KEY (namespace, name);

ALTER TABLE schedules ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE schedules DROP CONSTRAINT schedules_pkey;
ALTER TABLE schedules ADD PRIMARY KEY (namespace, name);

ALTER TABLE workflows ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT 'default';

-- NULL for a worker's events: they are the cluster's.
ALTER TABLE events ADD COLUMN namespace TEXT COLLATE "C";
UPDATE events SET namespace = 'default' WHERE type <> 'worker';

-- '*': every namespace's events (what a webhook made before namespaces received).
ALTER TABLE webhooks ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT '*';

-- Task counts per namespace and state.
DROP TRIGGER tasks_count_insert ON tasks;
DROP TRIGGER tasks_count_update ON tasks;
DROP TRIGGER tasks_count_delete ON tasks;
DROP FUNCTION tasks_count_insert();
DROP FUNCTION tasks_count_update();
DROP FUNCTION tasks_count_delete();
DROP TABLE state_counts;
CREATE TABLE state_counts (
    namespace TEXT   COLLATE "C" NOT NULL,
    state     TEXT   NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (namespace, state)
);
INSERT INTO state_counts (namespace, state, n)
    SELECT namespace, state, count(*) FROM tasks GROUP BY namespace, state;

CREATE FUNCTION tasks_count_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO state_counts AS s (namespace, state, n)
    SELECT namespace, state, count(*) FROM new_rows GROUP BY namespace, state
    ON CONFLICT (namespace, state) DO UPDATE SET n = s.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_count_insert();

CREATE FUNCTION tasks_count_update() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO state_counts AS s (namespace, state, n)
    SELECT namespace, state, sum(delta) FROM (
        SELECT namespace, state, 1 AS delta FROM new_rows
        UNION ALL SELECT namespace, state, -1 FROM old_rows) c
    GROUP BY namespace, state HAVING sum(delta) <> 0
    ON CONFLICT (namespace, state) DO UPDATE SET n = s.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_count_update();

CREATE FUNCTION tasks_count_delete() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE state_counts s SET n = s.n - d.n
    FROM (SELECT namespace, state, count(*) AS n FROM old_rows GROUP BY namespace, state) d
    WHERE s.namespace = d.namespace AND s.state = d.state;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_count_delete();
