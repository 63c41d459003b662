-- Drover schema, version 13: a task's concurrency key and its limit (at most max_concurrent
-- tasks with the key running at once, across queues); both NULL for most tasks.
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT;
ALTER TABLE tasks ADD COLUMN max_concurrent INTEGER;
