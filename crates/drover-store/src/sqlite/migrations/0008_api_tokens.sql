-- Drover schema, version 8: API tokens. Only the SHA-256 of each secret is kept; the secret is
-- shown once when the token is created. `namespaces` is a JSON array (empty: every namespace).

CREATE TABLE api_tokens (
    name       TEXT    NOT NULL PRIMARY KEY,
    role       TEXT    NOT NULL,
    namespaces TEXT    NOT NULL DEFAULT '[]',
    hash       BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;
