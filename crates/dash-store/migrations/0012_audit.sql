-- Writes through the admin API (and refusals of them), for `dash audit`: the latest
-- AUDIT_KEPT entries, replicated like the rest of the state.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    target TEXT,
    source TEXT NOT NULL,
    master TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX audit_at ON audit (at_ms);
