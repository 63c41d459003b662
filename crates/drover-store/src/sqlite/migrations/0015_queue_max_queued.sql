-- Drover schema, version 15: a queue's backlog limit, the most tasks it may hold waiting
-- (pending or queued) before submits are refused with 429 (NULL: no limit).
ALTER TABLE queues ADD COLUMN max_queued INTEGER;
