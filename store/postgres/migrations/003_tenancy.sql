-- Troupe schema, version 3: the tenant registry.
-- A tenant's data lives in its own partitions of every table partitioned by
-- LIST (partition); those are created and dropped at run time by
-- tenancy.Manager, not here. This table records which tenants exist and
-- their display names. Its id follows tenancy.Validate.

CREATE TABLE IF NOT EXISTS tenants (
    id       text           NOT NULL PRIMARY KEY
             CONSTRAINT tenants_id_valid CHECK (id ~ '^[A-Za-z0-9_-]{1,63}$' AND octet_length(id) <= 63),
    name     text           NOT NULL DEFAULT '',
    created  timestamptz(3) NOT NULL DEFAULT now()
);
