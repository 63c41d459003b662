-- The audit log: every state-changing or refused request.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    token     TEXT,
    role      TEXT,
    remote    TEXT NOT NULL,
    operation TEXT NOT NULL,
    object    TEXT NOT NULL,
    status    INTEGER NOT NULL
);
CREATE INDEX audit_by_at ON audit (at);
CREATE INDEX audit_by_token ON audit (token, seq);
