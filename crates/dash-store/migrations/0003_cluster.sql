-- The cluster: join tokens (only a hash of each secret is kept) and the certificate serials
-- a node may present (the current one and, during a rotation, the one before).
CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    role        TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER,
    revoked_ms  INTEGER
);

ALTER TABLE nodes ADD COLUMN cert_serial TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN prev_cert_serial TEXT NOT NULL DEFAULT '';
