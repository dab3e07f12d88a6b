-- A node's own records (node.db), apart from the master's state (dash.db), which a Raft
-- snapshot replaces whole: the containers this node runs, so that a restarted daemon re-adopts
-- them, and the addresses it handed out from its subnet. (Data dirs written before this file
-- existed kept these tables in dash.db: `open_node` copies them over once.)
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

-- Facts about this file: `legacy_checked` once the records of a data dir's older dash.db were
-- copied here (or there were none), written in the copy's own transaction.
CREATE TABLE node_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
