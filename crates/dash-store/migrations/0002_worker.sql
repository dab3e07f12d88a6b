-- Worker state: the containers this node runs, so that a restarted daemon re-adopts them,
-- and the addresses it handed out from its subnet.
CREATE TABLE local_replicas (
    id         TEXT PRIMARY KEY,
    service    TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    spec       TEXT    NOT NULL,      -- JSON of the service spec it was started from
    ip         TEXT,
    restarts   INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER
);

CREATE TABLE ip_allocations (
    ip      TEXT PRIMARY KEY,
    replica TEXT NOT NULL UNIQUE
);
