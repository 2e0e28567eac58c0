-- The audit chain is keyed (HMAC-SHA256, key in <data_dir>/audit-chain.key)
-- from the next event on; the events already written keep their plain
-- SHA-256 links and verify by that rule. `audit_keyed_from` is the first
-- event id that must be keyed (see storage/audit.rs).
INSERT INTO meta (key, value)
VALUES ('audit_keyed_from', CAST(COALESCE(
    (SELECT MAX(id) FROM audit_events),
    (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'audit_anchor_id'),
    0) + 1 AS TEXT))
ON CONFLICT (key) DO NOTHING;
