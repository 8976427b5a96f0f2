package cartview

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
)

// Table is the read-model table.
const Table = "carts"

// DefaultName is the name the troupe command gives the projection: its
// checkpoint, lease and status are kept under it.
const DefaultName = "carts"

// SchemaSQL creates the read-model table when it is missing. It is the
// carts table of the cart example's service (examples/cart/service), and
// the projection writes it the same way under the same name, so `troupe
// projections rebuild carts` rebuilds that service's read model.
const SchemaSQL = `CREATE TABLE IF NOT EXISTS carts (
    tenant_id       text    NOT NULL,
    cart_id         text    NOT NULL,
    partition       text    NOT NULL,
    currency        text,
    total           numeric,
    order_id        text,
    items_json      jsonb   NOT NULL DEFAULT '[]'::jsonb,
    is_checked_out  boolean NOT NULL DEFAULT false,
    is_cancelled    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, cart_id, partition)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS carts_default PARTITION OF carts DEFAULT;`

// Execer is what EnsureSchema needs: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// EnsureSchema creates the carts table when it is missing. The event
// store's migrations must have been applied first.
func EnsureSchema(ctx context.Context, db Execer) error {
	if _, err := db.Exec(ctx, SchemaSQL); err != nil {
		return fmt.Errorf("create the %s read-model table: %w", Table, err)
	}
	return nil
}

// Codec returns a codec with every cart event registered.
func Codec() (*store.JSONCodec, error) {
	c := store.NewJSONCodec()
	if err := cart.RegisterEvents(c); err != nil {
		return nil, err
	}
	return c, nil
}

// EventTypes are the cart event types the projection applies.
var EventTypes = []string{cart.TypeCartCreated, cart.TypeItemAddedToCart, cart.TypeItemRemovedFromCart,
	cart.TypeCartEmptied, cart.TypeCartCheckedOut, cart.TypeCartCancelled}

// NewSnapshot returns the snapshot projection writing the carts table.
// cacheSize is the number of cart states kept in memory between batches (0:
// readmodel.DefaultCacheSize, negative: none).
func NewSnapshot(cacheSize int) (*readmodel.Projection[cart.State], error) {
	codec, err := Codec()
	if err != nil {
		return nil, err
	}
	return readmodel.New(&readmodel.Config[cart.State]{
		Table:      Table,
		Storage:    readmodel.InTable,
		EventTypes: EventTypes,
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"tenant_id": partition, "cart_id": string(e.StreamID), "partition": partition}, nil
		},
		Evolve: func(s cart.State, e store.Event) (cart.State, error) {
			v, err := store.Decode(codec, e)
			if err != nil {
				return s, err
			}
			ev, ok := v.(cart.Event)
			if !ok {
				return s, fmt.Errorf("event %s decoded to %T, which is not a cart event", e, v)
			}
			return cart.Evolve(s, ev), nil
		},
		Initial:      cart.InitialState,
		MapToColumns: columns,
		CacheSize:    cacheSize,
	})
}

// Options configure New.
type Options struct {
	// Name of the projection. Defaults to DefaultName.
	Name string
	// Store is read with ReadAll. Defaults to a store/postgres store on the
	// pool.
	Store store.EventStore
	// BatchSize is the most events applied per transaction. Defaults to
	// projection.DefaultBatchSize.
	BatchSize int
	// CacheSize: see NewSnapshot. Defaults to
	// readmodel.DefaultCacheSize.
	CacheSize int
	// Logger receives the projection's diagnostics. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// New returns the carts projection on pool, not yet running. It does not
// create the table; call EnsureSchema.
func New(pool *pgxpool.Pool, opts Options) (*projection.Projection, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	snap, err := NewSnapshot(opts.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("carts projection: %w", err)
	}
	p, err := projection.New(pool, &projection.Config{
		Name:          opts.Name,
		Store:         opts.Store,
		BatchHandlers: []projection.BatchHandler{snap},
		BatchSize:     opts.BatchSize,
		Logger:        opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("carts projection: %w", err)
	}
	return p, nil
}

// Row is one row of the carts table. Total and OrderID are set for
// checked-out carts only; Total is the decimal as PostgreSQL prints it.
type Row struct {
	TenantID     string
	CartID       string
	Partition    string
	Currency     string
	Total        *string
	OrderID      *string
	Items        []cart.Item
	IsCheckedOut bool
	IsCancelled  bool
}

// RowFromState returns the row the projection writes for a cart in state s.
func RowFromState(partition, cartID string, s cart.State) Row {
	r := Row{TenantID: partition, CartID: cartID, Partition: partition, Currency: s.Currency,
		Items: s.Items, IsCheckedOut: s.Status == cart.StatusCheckedOut, IsCancelled: s.Status == cart.StatusCancelled}
	if r.Items == nil {
		r.Items = []cart.Item{}
	}
	if r.IsCheckedOut {
		total, order := s.Total.String(), s.OrderID
		r.Total, r.OrderID = &total, &order
	}
	return r
}

// columns maps a cart state to the read-model columns.
func columns(s cart.State) map[string]any {
	items := s.Items
	if items == nil {
		items = []cart.Item{}
	}
	itemsJSON, err := json.Marshal(items)
	if err != nil {
		// cart.Item holds strings, ints and a Decimal, which always
		// marshal; keep the column valid JSON regardless.
		itemsJSON = []byte("[]")
	}
	cols := map[string]any{
		"currency":       s.Currency,
		"total":          nil,
		"order_id":       nil,
		"items_json":     string(itemsJSON),
		"is_checked_out": s.Status == cart.StatusCheckedOut,
		"is_cancelled":   s.Status == cart.StatusCancelled,
	}
	if s.Status == cart.StatusCheckedOut {
		var total pgtype.Numeric
		if err := total.Scan(s.Total.String()); err == nil {
			cols["total"] = total
		}
		cols["order_id"] = s.OrderID
	}
	return cols
}

const readRowsSQL = `SELECT tenant_id, cart_id, partition, COALESCE(currency, ''), total::text, order_id, items_json::text,
       is_checked_out, is_cancelled
FROM carts ORDER BY partition, tenant_id, cart_id`

// ReadRows returns every row of the carts table, ordered by partition,
// tenant id and cart id.
func ReadRows(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) ([]Row, error) {
	rows, err := db.Query(ctx, readRowsSQL)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Table, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
		var row Row
		var items string
		if err := r.Scan(&row.TenantID, &row.CartID, &row.Partition, &row.Currency, &row.Total, &row.OrderID,
			&items, &row.IsCheckedOut, &row.IsCancelled); err != nil {
			return row, err
		}
		if err := json.Unmarshal([]byte(items), &row.Items); err != nil {
			return row, fmt.Errorf("items_json of cart %q: %w", row.CartID, err)
		}
		return row, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Table, err)
	}
	return out, nil
}
