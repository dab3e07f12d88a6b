-- User namespaces of this node's replicas (`[security] user_namespace`, `--default-userns`):
-- each holds a slot of 65,536 host ids of its own (dash_store::worker::USERNS_BASE + slot ×
-- 65,536), never shared with another replica, freed when it is removed.
CREATE TABLE userns_slots (
    slot    INTEGER PRIMARY KEY,
    replica TEXT NOT NULL UNIQUE
);
