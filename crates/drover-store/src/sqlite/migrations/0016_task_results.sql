-- Tasks as functions (issue 14): a handler's result (compact JSON text, at most 1 MiB) on
-- its task row, written by the commit of the finish that made it succeed; and the size of
-- that result on the `succeeded` event (events never carry the result itself). The payload
-- lives in the spec's JSON (`{"type":"handler","payload":"<JSON text>"}`), no column.
ALTER TABLE tasks ADD COLUMN result TEXT;
ALTER TABLE events ADD COLUMN result_bytes INTEGER;
