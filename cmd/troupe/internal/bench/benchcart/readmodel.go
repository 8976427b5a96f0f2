package benchcart

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// Table is the read-model table, and the name of its projection.
const Table = "bench_carts"

// schemaSQL creates the read-model table, LIST-partitioned by partition
// with a DEFAULT partition like every table holding tenant data.
const schemaSQL = `CREATE TABLE IF NOT EXISTS bench_carts (
    tenant_id       text    NOT NULL,
    cart_id         text    NOT NULL,
    partition       text    NOT NULL,
    currency        text,
    total           numeric,
    order_id        text,
    items_json      jsonb   NOT NULL DEFAULT '[]'::jsonb,
    is_checked_out  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, cart_id, partition)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS bench_carts_default PARTITION OF bench_carts DEFAULT;`

// EnsureSchema creates the read-model table when it is missing. The event
// store's migrations must have been applied first.
func EnsureSchema(ctx context.Context, db postgres.DB) error {
	if _, err := db.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create the %s read-model table: %w", Table, err)
	}
	return nil
}

// NewProjection returns the continuous projection keeping the read model
// (a snapshot projection, its states in the snapshots table), not yet
// running, under name, applying at most batchSize events per transaction
// (0: projection.DefaultBatchSize).
func NewProjection(pool *pgxpool.Pool, name string, batchSize int, logger *slog.Logger) (*projection.Projection, error) {
	codec, err := NewCodec()
	if err != nil {
		return nil, err
	}
	snap, err := readmodel.New(&readmodel.Config[State]{
		Table:      Table,
		Storage:    readmodel.InTable,
		EventTypes: []string{TypeCartCreated, TypeItemAddedToCart, TypeCartCheckedOut},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"tenant_id": partition, "cart_id": string(e.StreamID), "partition": partition}, nil
		},
		Evolve: func(s State, e store.Event) (State, error) {
			v, err := store.Decode(codec, e)
			if err != nil {
				return s, err
			}
			ev, ok := v.(Event)
			if !ok {
				return s, fmt.Errorf("event %s decoded to %T, which is not a cart event", e, v)
			}
			return Evolve(s, ev), nil
		},
		Initial:      InitialState,
		MapToColumns: columns,
	})
	if err != nil {
		return nil, fmt.Errorf("%s projection: %w", name, err)
	}
	p, err := projection.New(pool, &projection.Config{
		Name:          name,
		BatchHandlers: []projection.BatchHandler{snap},
		BatchSize:     batchSize,
		Logger:        logger})
	if err != nil {
		return nil, fmt.Errorf("%s projection: %w", name, err)
	}
	return p, nil
}

// columns maps a cart state to the read-model columns.
func columns(s State) map[string]any {
	items := s.Items
	if items == nil {
		items = []Item{}
	}
	itemsJSON, err := json.Marshal(items)
	if err != nil {
		itemsJSON = []byte("[]") // items hold strings and ints, which always marshal
	}
	cols := map[string]any{
		"currency":       s.Currency,
		"total":          nil,
		"order_id":       nil,
		"items_json":     string(itemsJSON),
		"is_checked_out": s.Status == StatusCheckedOut,
	}
	if s.Status == StatusCheckedOut {
		cols["total"] = s.Total.String()
		cols["order_id"] = s.OrderID
	}
	return cols
}
