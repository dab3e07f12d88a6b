-- The masters' Raft log (raft.db): entries by index, as openraft's JSON; and the few values
-- Raft keeps beside them (the vote, the committed and the last purged log id), as JSON.
CREATE TABLE log (
    idx   INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
