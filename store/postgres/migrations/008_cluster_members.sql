-- Troupe schema, version 8: cluster membership.
-- The members of each cluster whose membership provider is the PostgreSQL
-- one (package actor/pgmembership). A member inserts its row when it starts,
-- refreshes heartbeat_at every heartbeat interval with the database clock,
-- and deletes the row when it leaves; the other members delete a row whose
-- heartbeat is older than their time-to-live. member_id is new at every
-- process start, so a restarted member is a new row. The table holds no
-- tenant's rows: it is not registered in tenant_tables.

CREATE TABLE IF NOT EXISTS cluster_members (
    cluster       text        NOT NULL,
    member_id     text        NOT NULL,
    host          text        NOT NULL,
    port          integer     NOT NULL,
    kinds         text[]      NOT NULL DEFAULT '{}',
    joined_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, member_id)
);
