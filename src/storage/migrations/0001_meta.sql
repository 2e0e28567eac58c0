-- Key/value facts about this installation (readiness probe, pause state, …).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
