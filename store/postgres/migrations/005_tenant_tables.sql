-- Troupe schema, version 5: the registry of tenant tables.
-- Every table that holds tenants' rows is declared here, by the migration
-- that creates it (an application registers its own read-model tables the
-- same way), so the code that acts on every tenant's rows (the tenant
-- lifecycle of the tenancy package, row-level security in store/postgres)
-- reads this table instead of naming tables itself.
--
--   relation            the table.
--   partition_column    the column holding the row's tenant (partition).
--   partitioned         true: the table is partitioned by LIST on that
--                       column and each tenant gets a partition of its own;
--                       false: it is not, and erasing a tenant deletes its
--                       rows by that column.
--   lock_order          tenant lifecycle operations lock tables in
--                       increasing lock_order (then schema and name), the
--                       order application transactions usually touch them.
--   row_level_security  row-level security covers the table whenever it is
--                       enabled (EnableRowLevelSecurity).

CREATE TABLE IF NOT EXISTS tenant_tables (
    relation            regclass NOT NULL PRIMARY KEY,
    partition_column    name     NOT NULL DEFAULT 'partition',
    partitioned         boolean  NOT NULL DEFAULT true,
    lock_order          integer  NOT NULL DEFAULT 1000,
    row_level_security  boolean  NOT NULL DEFAULT false
);

-- The tables of migrations 001, 002 and 004.
INSERT INTO tenant_tables (relation, partitioned, lock_order, row_level_security) VALUES
    ('streams',                       true,  10,  true),
    ('messages',                      true,  20,  true),
    ('aggregate_snapshots',           true,  30,  true),
    ('subscriptions',                 true,  40,  true),
    ('projection_dead_letters',       true,  100, false),
    ('projection_status',             true,  110, false),
    ('projection_stream_checkpoints', true,  120, false),
    ('snapshots',                     false, 200, false)
ON CONFLICT (relation) DO NOTHING;
