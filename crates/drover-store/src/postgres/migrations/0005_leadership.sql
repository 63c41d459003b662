-- Drover schema (PostgreSQL), version 5: one leader at a time, fenced (ARCHITECTURE.md,
-- Leadership; src/leadership.rs). PostgreSQL only: a SQLite store has a single node.
--
-- Unlike every other table's, the times here are the database's (clock_timestamp()), never a
-- server's: a lease is measured by the one clock every member shares.

-- The lease: exactly one row. `epoch` is bumped by every election and checked by every
-- commit (drover_fence); `leader` is NULL while the lease is free (never taken, or resigned).
CREATE TABLE leader_lease (
    id         INT         NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch      BIGINT      NOT NULL,
    leader     TEXT,
    elected_at TIMESTAMPTZ,
    renewed_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO leader_lease (id, epoch, expires_at) VALUES (1, 0, 'epoch');

-- The servers that said they are alive; roles come from the lease.
CREATE TABLE members (
    name       TEXT        COLLATE "C" NOT NULL PRIMARY KEY,
    address    TEXT        NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL
);

-- The fence, first statement of every fenced transaction: locks the lease row (KEY SHARE,
-- which only an election's FOR UPDATE waits for, not a renewal) until the transaction ends,
-- and fails it (SQLSTATE DR001, DETAIL 'ours current') unless `ours` is the current epoch and
-- holds the lease; epoch 0 (a store never elected) passes only while nobody ever led.
CREATE FUNCTION drover_fence(ours BIGINT) RETURNS BIGINT LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    cur    BIGINT;
    holder TEXT;
BEGIN
    SELECT epoch, leader INTO cur, holder FROM leader_lease WHERE id = 1 FOR KEY SHARE;
    IF cur IS DISTINCT FROM ours OR (ours <> 0 AND holder IS NULL) THEN
        RAISE EXCEPTION 'fenced: epoch % no longer leads (the lease is at epoch %)', ours, cur
            USING ERRCODE = 'DR001', DETAIL = ours || ' ' || cur;
    END IF;
    RETURN cur;
END $$;
