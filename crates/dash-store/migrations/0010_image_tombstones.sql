-- Tags that left the image index (`dash image rm`), with the digest they had: a master that was
-- down when one left removes it when it comes back (decision 0012). Trimmed to the latest 1000.
CREATE TABLE forgotten_images (
    tag TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);

-- `dash image prune` at any master: a counter every master follows (each prunes its own store
-- when it grows).
CREATE TABLE image_prunes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    requested INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
