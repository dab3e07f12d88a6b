-- Replicas removed for good (replaced by an update or a rollback, scaled down, drained, moved
-- off a lost node): kept so that `dash logs --previous` and `dash logs <replica>` find where
-- their logs are. Bounded: the newest 20 per service (see Command::DeleteReplica).
CREATE TABLE removed_replicas (
    id         TEXT PRIMARY KEY,
    service    TEXT    NOT NULL,
    node       TEXT,
    version    INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    removed_ms INTEGER NOT NULL
);
CREATE INDEX removed_replicas_by_service ON removed_replicas (service, removed_ms);
