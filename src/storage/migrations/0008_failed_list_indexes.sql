-- Lists that were slow at 10 million stored messages (issue 14,
-- BENCHMARKS.md "Data growth on the compact layout"): failed messages of one
-- meter or one site (the planner walked the whole meter/site range for the
-- rare failed rows: p99 64 / 31 ms) and messages by error code (no index: a
-- scan, p99 69 ms). Partial indexes: only failed rows, only rows with an
-- error code, so they cost bytes for ~1 % of the messages, not for all.
-- The list query writes `status = 3` as a literal, which is what lets
-- SQLite use an index whose WHERE is `status = 3`.
CREATE INDEX messages_failed_by_meter ON messages (meter, id) WHERE status = 3;
CREATE INDEX messages_failed_by_site ON messages (site, id) WHERE status = 3;
CREATE INDEX messages_by_error_code ON messages (error_code, id) WHERE error_code IS NOT NULL;
