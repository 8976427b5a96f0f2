-- Troupe schema, version 10: the state version of aggregate snapshots.
-- An aggregate's state changes shape over the years like its events do; a
-- snapshot records the version of the state it holds
-- (actor.SnapshotConfig.Version, store.Snapshot.StateVersion), and a loader
-- ignores a snapshot of another version and folds the events instead.
-- Snapshots saved before this migration are at state version 0, the version
-- of a kind that never set one.

ALTER TABLE aggregate_snapshots ADD COLUMN IF NOT EXISTS state_version integer NOT NULL DEFAULT 0;
