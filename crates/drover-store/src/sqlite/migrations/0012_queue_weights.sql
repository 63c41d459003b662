-- Drover schema, version 12: a queue's weight, its share of dispatch among backlogged queues.
ALTER TABLE queues ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
