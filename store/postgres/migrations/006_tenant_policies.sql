-- Troupe schema, version 6: row-level security covers every tenant table.
-- Until now only the event tables (streams, messages, aggregate_snapshots,
-- subscriptions) were registered for row-level security; the projection
-- tables and the read-model snapshots table held tenants' rows without a
-- policy. They are registered now, so EnableRowLevelSecurity covers them.
--
--   scope_column  (new, optional) a second column that must also equal the
--                 tenant for a tenant-scoped role. projection_dead_letters
--                 records, besides the event's partition, the partition the
--                 projection is limited to ("scope", '*' for a projection of
--                 every partition): a tenant sees and writes the dead
--                 letters of its own projections only; those of projections
--                 over every partition are the owner's business, like their
--                 checkpoints ('*' rows of subscriptions) and statuses ('*'
--                 rows of projection_status).

ALTER TABLE tenant_tables ADD COLUMN IF NOT EXISTS scope_column name;

UPDATE tenant_tables SET row_level_security = true
WHERE relation IN (to_regclass('projection_dead_letters'), to_regclass('projection_status'),
                   to_regclass('projection_stream_checkpoints'), to_regclass('snapshots'))
  AND NOT row_level_security;

UPDATE tenant_tables SET scope_column = 'scope'
WHERE relation = to_regclass('projection_dead_letters') AND scope_column IS NULL;

-- A database that already runs with row-level security (a registered table
-- has it enabled) gets the policies on the newly registered tables now,
-- instead of holding them unprotected until EnableRowLevelSecurity runs
-- again. The policy is the one EnableRowLevelSecurity creates.
DO $$
DECLARE
    t     record;
    part  regclass;
    expr  text;
BEGIN
    IF NOT EXISTS (SELECT FROM tenant_tables r JOIN pg_class c ON c.oid = r.relation
                   WHERE r.row_level_security AND c.relrowsecurity) THEN
        RETURN;
    END IF;
    FOR t IN SELECT r.relation, r.partition_column, r.scope_column FROM tenant_tables r
             JOIN pg_class c ON c.oid = r.relation WHERE r.row_level_security LOOP
        expr := format('%I = current_setting(%L, true)', t.partition_column, 'troupe.tenant');
        IF t.scope_column IS NOT NULL THEN
            expr := expr || format(' AND %I = current_setting(%L, true)', t.scope_column, 'troupe.tenant');
        END IF;
        -- pg_partition_tree returns nothing for an unpartitioned table.
        FOR part IN SELECT t.relation UNION SELECT relid FROM pg_partition_tree(t.relation) LOOP
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
            EXECUTE format('DROP POLICY IF EXISTS troupe_tenant_isolation ON %s', part);
            EXECUTE format('CREATE POLICY troupe_tenant_isolation ON %s USING (%s) WITH CHECK (%s)', part, expr, expr);
        END LOOP;
    END LOOP;
END $$;
