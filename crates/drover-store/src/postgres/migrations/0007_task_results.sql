-- Tasks as functions (issue 14), as SQLite's 0016: a handler's result (compact JSON text, at
-- most 1 MiB) on its task row; the result's size on its `succeeded` event. The payload lives
-- in the spec's JSON text, no column.
ALTER TABLE tasks ADD COLUMN result TEXT;
ALTER TABLE events ADD COLUMN result_bytes BIGINT;
