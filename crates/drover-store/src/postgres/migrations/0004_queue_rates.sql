-- Drover schema (PostgreSQL), version 4: a queue's rate limit, as SQLite's 0014.
ALTER TABLE queues ADD COLUMN rate_count BIGINT;
ALTER TABLE queues ADD COLUMN rate_per_ms BIGINT;
