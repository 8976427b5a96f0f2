-- Troupe projections schema, version 2: what package projection needs beyond
-- the event store's own tables. Like schema v1, every table is LIST-partitioned
-- by "partition" with a DEFAULT partition.

-- Checkpoints of the per-stream runner (projection.Runner): one row per
-- subscription, partition and stream, holding the last stream position the
-- subscription projected. Continuous projections and consumers checkpoint a
-- global-log position in "subscriptions" instead.
CREATE TABLE IF NOT EXISTS projection_stream_checkpoints (
    subscription_id          text        NOT NULL,
    partition                text        NOT NULL DEFAULT 'default_partition',
    stream_id                text        NOT NULL,
    last_processed_position  bigint      NOT NULL DEFAULT 0,
    updated                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, partition, stream_id)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS projection_stream_checkpoints_default
    PARTITION OF projection_stream_checkpoints DEFAULT;

-- Events a projection skipped under its skip policy, with the error of the
-- last attempt. "partition" is the event's partition; "scope" is the
-- partition the projection is limited to ('*' for every partition).
CREATE TABLE IF NOT EXISTS projection_dead_letters (
    projection        text        NOT NULL,
    scope             text        NOT NULL,
    partition         text        NOT NULL,
    transaction_id    xid8        NOT NULL,
    global_position   bigint      NOT NULL,
    stream_id         text        NOT NULL,
    stream_position   bigint      NOT NULL,
    message_id        text        NOT NULL,
    message_type      text        NOT NULL,
    message_data      jsonb       NOT NULL,
    message_metadata  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error             text        NOT NULL,
    attempts          integer     NOT NULL,
    created           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, scope, partition, global_position)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS projection_dead_letters_default
    PARTITION OF projection_dead_letters DEFAULT;

-- The state of each projection as last reported by its active runner:
-- running, rebuilding, failed (with the failing event and error) or stopped.
-- "partition" is the partition the projection is limited to ('*' for every
-- partition).
CREATE TABLE IF NOT EXISTS projection_status (
    projection                text        NOT NULL,
    partition                 text        NOT NULL,
    state                     text        NOT NULL,
    error                     text        NOT NULL DEFAULT '',
    failed_partition          text,
    failed_transaction_id     xid8,
    failed_global_position    bigint,
    failed_stream_id          text,
    failed_stream_position    bigint,
    failed_message_id         text,
    failed_message_type       text,
    owner                     text        NOT NULL DEFAULT '',
    updated                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, partition)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS projection_status_default
    PARTITION OF projection_status DEFAULT;
