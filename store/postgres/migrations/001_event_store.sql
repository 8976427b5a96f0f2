-- Troupe event store schema, version 1.
-- Every table that holds tenant data is LIST-partitioned by "partition" with a
-- DEFAULT partition, so a tenant can get partitions of its own (and be erased
-- by dropping them).

CREATE SEQUENCE IF NOT EXISTS emt_global_message_position;

CREATE TABLE IF NOT EXISTS streams (
    stream_id        text        NOT NULL,
    stream_position  bigint      NOT NULL,
    partition        text        NOT NULL DEFAULT 'default_partition',
    stream_type      text        NOT NULL,
    stream_metadata  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    is_archived      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (stream_id, partition, is_archived)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS streams_default PARTITION OF streams DEFAULT;

CREATE TABLE IF NOT EXISTS messages (
    stream_id              text        NOT NULL,
    stream_position        bigint      NOT NULL,
    partition              text        NOT NULL DEFAULT 'default_partition',
    message_kind           char(1)     NOT NULL DEFAULT 'E',
    message_data           jsonb       NOT NULL,
    message_metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    message_schema_version text        NOT NULL DEFAULT '1',
    message_type           text        NOT NULL,
    message_id             text        NOT NULL,
    is_archived            boolean     NOT NULL DEFAULT false,
    global_position        bigint      NOT NULL DEFAULT nextval('emt_global_message_position'),
    transaction_id         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created                timestamptz(3) NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, stream_position, partition, is_archived),
    UNIQUE (partition, message_id)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS messages_default PARTITION OF messages DEFAULT;
-- The global read: commit-safe order is (transaction_id, global_position).
CREATE INDEX IF NOT EXISTS messages_global_read_idx ON messages (transaction_id, global_position);
CREATE INDEX IF NOT EXISTS messages_global_position_idx ON messages (global_position);

CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id                text    NOT NULL,
    version                        int     NOT NULL DEFAULT 1,
    partition                      text    NOT NULL DEFAULT 'default_partition',
    last_processed_position        bigint  NOT NULL DEFAULT 0,
    last_processed_transaction_id  xid8    NOT NULL DEFAULT '0',
    updated                        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, partition, version)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS subscriptions_default PARTITION OF subscriptions DEFAULT;

-- Read-model snapshots (the snapshot-table variant of snapshot projections).
CREATE TABLE IF NOT EXISTS snapshots (
    readmodel_table_name  text    NOT NULL,
    stream_id             text    NOT NULL,
    last_stream_position  bigint  NOT NULL,
    last_global_position  bigint  NOT NULL,
    snapshot              jsonb   NOT NULL,
    PRIMARY KEY (readmodel_table_name, stream_id)
);

-- Aggregate snapshots: the state of one stream at one version, so a cold
-- start reads the snapshot plus the tail instead of the whole stream.
CREATE TABLE IF NOT EXISTS aggregate_snapshots (
    partition       text    NOT NULL DEFAULT 'default_partition',
    stream_id       text    NOT NULL,
    name            text    NOT NULL,
    stream_version  bigint  NOT NULL,
    state           jsonb   NOT NULL,
    created         timestamptz(3) NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, stream_id, name)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS aggregate_snapshots_default PARTITION OF aggregate_snapshots DEFAULT;
