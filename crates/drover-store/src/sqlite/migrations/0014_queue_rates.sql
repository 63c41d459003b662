-- Drover schema, version 14: a queue's rate limit, rate_count starts per rate_per_ms
-- milliseconds (both NULL: no limit).
ALTER TABLE queues ADD COLUMN rate_count INTEGER;
ALTER TABLE queues ADD COLUMN rate_per_ms INTEGER;
