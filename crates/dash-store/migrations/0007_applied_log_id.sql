-- What a Raft state machine records with the last applied entry: its log id and the last
-- membership applied (openraft's JSON; NULL until the Raft log applies its first entry).
ALTER TABLE applied ADD COLUMN log_id TEXT;
ALTER TABLE applied ADD COLUMN membership TEXT;
