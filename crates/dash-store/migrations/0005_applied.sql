-- The index of the last log entry the master's state applied, written in the same transaction
-- as the entry's changes: a replay of the log (after a restart, or when a snapshot is older
-- than the log) skips what is already in the state. One row.
CREATE TABLE applied (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    log_index INTEGER NOT NULL
);
INSERT INTO applied (id, log_index) VALUES (1, 0);
