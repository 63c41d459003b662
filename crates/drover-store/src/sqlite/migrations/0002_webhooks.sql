-- Drover schema, version 2: webhooks and their delivery log. Events are pruned by retention
-- (oldest first, by seq, always keeping the newest so numbering continues after a restart).

CREATE TABLE webhooks (
    id         TEXT    NOT NULL PRIMARY KEY,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,   -- JSON array of patterns
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    -- Every event up to this seq has been delivered or given up on.
    cursor     INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per delivery attempt; the rowid gives the order.
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY,
    webhook_id  TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    ok          INTEGER NOT NULL,
    last        INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
