-- Master state: desired services, their replicas and the nodes that run them.
CREATE TABLE services (
    name          TEXT PRIMARY KEY,
    spec          TEXT    NOT NULL,            -- JSON of dash_core::ServiceSpec
    version       INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    removing      INTEGER NOT NULL DEFAULT 0,
    last_batch_ms INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE service_versions (
    name       TEXT    NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    spec       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    address      TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    labels       TEXT    NOT NULL DEFAULT '{}',
    cpu_millis   INTEGER NOT NULL DEFAULT 0,
    memory_bytes INTEGER NOT NULL DEFAULT 0,
    subnet       TEXT    NOT NULL,
    runtime      TEXT    NOT NULL DEFAULT '',
    last_seen_ms INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE replicas (
    id         TEXT PRIMARY KEY,
    service    TEXT    NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    node       TEXT REFERENCES nodes(id),
    desired    TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    ip         TEXT,
    restarts   INTEGER NOT NULL DEFAULT 0,
    exit_code  INTEGER,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    message    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX replicas_by_service ON replicas(service);
CREATE INDEX replicas_by_node ON replicas(node);
