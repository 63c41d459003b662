-- Drover schema, version 7: workflows by creation time. Task retention walks the workflows
-- created before its cutoff, oldest first, to delete those whose tasks are all due (a
-- workflow is pruned whole); the listing (`/v1/workflows`, newest first) walks it backwards.
-- The table is WITHOUT ROWID, so the index holds (created_at, id) and orders ties by id.

CREATE INDEX workflows_by_created ON workflows (created_at);
