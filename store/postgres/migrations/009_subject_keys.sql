-- Troupe schema, version 9: the keys of data subjects (store/shred).
-- Personal fields of events are encrypted with their data subject's key;
-- forgetting the subject deletes the key (crypto-shredding). A subject lives
-- in one partition (tenant), so the table is a tenant table: each tenant gets
-- a partition of it, and dropping the tenant drops its keys with its events.
--
--   partition   the tenant of the subject's events.
--   subject     the value of the events' subject field.
--   version     the key's version, recorded in every value it encrypts.
--   key         the AES-256 key; NULL once the subject is forgotten.
--   forgotten   when the subject was forgotten; NULL while it has a key.
--               A forgotten subject keeps its row (a tombstone), so an
--               append of personal data for it is refused instead of
--               getting a new key.

CREATE TABLE IF NOT EXISTS subject_keys (
    partition  text        NOT NULL,
    subject    text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    key        bytea,
    created    timestamptz NOT NULL DEFAULT now(),
    forgotten  timestamptz,
    PRIMARY KEY (partition, subject),
    CONSTRAINT subject_keys_key_or_forgotten CHECK ((key IS NULL) = (forgotten IS NOT NULL))
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS subject_keys_default PARTITION OF subject_keys DEFAULT;

INSERT INTO tenant_tables (relation, partitioned, lock_order, row_level_security)
VALUES ('subject_keys', true, 50, true)
ON CONFLICT (relation) DO NOTHING;

-- A database that already runs with row-level security gets the policy on
-- the new table now (the one EnableRowLevelSecurity creates), as migration 6
-- did for the tables it registered.
DO $$
DECLARE
    part  regclass;
    expr  text := format('%I = current_setting(%L, true)', 'partition', 'troupe.tenant');
BEGIN
    IF NOT EXISTS (SELECT FROM tenant_tables r JOIN pg_class c ON c.oid = r.relation
                   WHERE r.row_level_security AND c.relrowsecurity
                     AND r.relation <> 'subject_keys'::regclass) THEN
        RETURN;
    END IF;
    FOR part IN SELECT 'subject_keys'::regclass UNION SELECT relid FROM pg_partition_tree('subject_keys') LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('DROP POLICY IF EXISTS troupe_tenant_isolation ON %s', part);
        EXECUTE format('CREATE POLICY troupe_tenant_isolation ON %s USING (%s) WITH CHECK (%s)', part, expr, expr);
    END LOOP;
END $$;
