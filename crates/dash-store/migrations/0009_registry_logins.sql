-- Registry credentials (`dash login` at any master), sealed with the cluster's data key: every
-- master pulls with them, and the state, its Raft log and its backups never hold them in
-- clear (decision 0012).
CREATE TABLE registry_logins (
    registry TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
