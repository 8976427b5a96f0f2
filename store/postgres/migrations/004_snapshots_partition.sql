-- Troupe schema, version 4: the read-model snapshots table records each row's
-- partition, so erasing a tenant (tenancy.Manager.Drop) can delete its
-- snapshots too. The table stays unpartitioned (a snapshot row is keyed by
-- read-model table and stream id); projections write the partition of the
-- event they applied last.

ALTER TABLE snapshots ADD COLUMN IF NOT EXISTS partition text NOT NULL DEFAULT 'default_partition';

-- Rows written before this migration: a snapshot's stream id is its key
-- columns as "key:value" pairs joined with '|', both sides URI-encoded.
-- Tenant ids ([A-Za-z0-9_-]) encode to themselves, so a "partition" key
-- holding a valid tenant id names the row's partition. Rows without one keep
-- 'default_partition' until their projection writes them again.
UPDATE snapshots
SET partition = substring(stream_id FROM '(?:^|\|)partition:([A-Za-z0-9_-]{1,63})(?:\||$)')
WHERE partition = 'default_partition'
  AND stream_id ~ '(?:^|\|)partition:[A-Za-z0-9_-]{1,63}(?:\||$)';

CREATE INDEX IF NOT EXISTS snapshots_partition_idx ON snapshots (partition);
