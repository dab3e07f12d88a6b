-- The image index of the cluster: every image imported or pulled at a master, so that every
-- master fetches it (decision 0012).
CREATE TABLE images (
    tag TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    origin TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
