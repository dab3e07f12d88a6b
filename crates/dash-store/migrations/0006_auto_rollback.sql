-- The version an automatic rollback made, per service (0: none), so that the guard against
-- rolling it back again is part of the replicated state, not of one master's memory.
ALTER TABLE services ADD COLUMN auto_rollback_version INTEGER NOT NULL DEFAULT 0;
