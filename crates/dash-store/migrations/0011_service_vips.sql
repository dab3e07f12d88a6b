-- Services' virtual IPs (issue 12): a service with ports has one, from the range recorded in
-- settings (`service_cidr`, the first master's --service-cidr), kept across its updates.
ALTER TABLE services ADD COLUMN vip TEXT;
CREATE UNIQUE INDEX services_vip ON services (vip) WHERE vip IS NOT NULL;

-- Cluster-wide settings recorded once through the log.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
