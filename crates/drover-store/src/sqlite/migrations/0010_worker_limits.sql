-- Drover schema, version 10: what a worker registering with a token may claim (name pattern,
-- kinds, labels), as JSON; '{}' limits nothing.
ALTER TABLE api_tokens ADD COLUMN worker_limits TEXT NOT NULL DEFAULT '{}';
