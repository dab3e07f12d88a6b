-- Secrets and configs (`dash secret`, `dash config`): each one's current version, and every
-- version a service or a replica still uses, its value sealed with the cluster's data key
-- (never in clear in the state, its Raft log or a backup).
CREATE TABLE secrets (
    kind TEXT NOT NULL,             -- secret | config
    name TEXT NOT NULL,
    version INTEGER NOT NULL,       -- the current one
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE secret_versions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sealed TEXT NOT NULL,           -- k<data key id>:v1:<base64>
    size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, name, version)
);
-- The cluster's data keys, each sealed with the key derived from the CA's (every master has
-- them on its disk, in this state, sealed). The highest id seals new values; `dash secret
-- rotate-key` adds one, seals every value again with it, and drops the others.
CREATE TABLE data_keys (
    id INTEGER PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
