-- The carts read model of the cart example, kept by the "carts" continuous
-- snapshot projection (snapshot-table variant: each cart's folded state is
-- in the snapshots table; this row holds the key and the mapped columns).
-- Partitioned by LIST (partition) like the event tables, so every tenant
-- created by tenancy.Manager gets a partition of it too.
CREATE TABLE IF NOT EXISTS carts (
    tenant_id       text     NOT NULL,
    cart_id         text     NOT NULL,
    partition       text     NOT NULL,
    currency        text,
    -- total and order_id are set when the cart is checked out.
    total           numeric,
    order_id        text,
    items_json      jsonb    NOT NULL DEFAULT '[]'::jsonb,
    is_checked_out  boolean  NOT NULL DEFAULT false,
    is_cancelled    boolean  NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, cart_id, partition)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS carts_default PARTITION OF carts DEFAULT;
