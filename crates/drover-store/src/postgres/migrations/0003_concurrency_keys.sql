-- Drover schema (PostgreSQL), version 3: a task's concurrency key and its limit, as SQLite's
-- 0013.
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT;
ALTER TABLE tasks ADD COLUMN max_concurrent BIGINT;
