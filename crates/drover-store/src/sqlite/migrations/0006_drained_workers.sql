-- Drover schema, version 6: workers an operator drained (`drover worker drain NAME`). Written
-- by the core (`Write::WorkerDrain`) when a drain or resume changes something, so a drained
-- worker stays drained across server restarts and its own reconnects.

CREATE TABLE drained_workers (
    name TEXT NOT NULL PRIMARY KEY
) WITHOUT ROWID;
