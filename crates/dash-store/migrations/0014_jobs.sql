-- Jobs (`kind = "job"`): each job's schedule state and its runs. A run is recorded here before
-- any of its replicas exists (the leader's decision, replicated), so a failover never starts a
-- slot twice and never loses one silently.
CREATE TABLE jobs (
    service TEXT PRIMARY KEY REFERENCES services(name) ON DELETE CASCADE,
    suspended INTEGER NOT NULL DEFAULT 0,
    -- Slots at or before this instant (ms) are decided: run or skipped.
    last_slot_ms INTEGER NOT NULL,
    next_run INTEGER NOT NULL DEFAULT 1,
    -- Slots skipped since the job was created.
    skipped INTEGER NOT NULL DEFAULT 0,
    -- The version the last apply-triggered run was for (a job without a schedule runs once per
    -- new version).
    applied_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE job_runs (
    service TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    run INTEGER NOT NULL,
    version INTEGER NOT NULL,
    trigger TEXT NOT NULL,          -- schedule | manual | apply
    slot_ms INTEGER,                -- a scheduled run's slot
    state TEXT NOT NULL,            -- running | succeeded | failed | stopped
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    exit_code INTEGER,
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (service, run)
);
-- A job's replica is an attempt of a run; `start_at_ms`: its node starts the container at this
-- instant (a run recorded ahead of its slot).
ALTER TABLE replicas ADD COLUMN run INTEGER;
ALTER TABLE replicas ADD COLUMN start_at_ms INTEGER;
