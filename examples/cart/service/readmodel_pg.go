package service

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/cli"
	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

//go:embed schema.sql
var schemaSQL string

// schemaLock is the advisory lock key serialising start-ups that create
// the carts table at once.
const schemaLock = 0x7472_6f75_7065_0007

// EnsureSchema creates the carts read-model table if it is missing. The
// event store's migrations must have been applied first. Concurrent calls
// are serialised by an advisory lock.
func EnsureSchema(ctx context.Context, db postgres.DB) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
			return fmt.Errorf("lock the carts schema: %w", err)
		}
		if _, err := tx.Exec(ctx, schemaSQL); err != nil {
			return fmt.Errorf("create the carts table: %w", err)
		}
		return nil
	})
}

// evolveCart folds one decoded cart event of Go type E into s: the typed
// evolver of each cart event (readmodel.On), so the read model applies the
// types the codec names these Go types, decoded by the codec.
func evolveCart[E cart.Event](s cart.State, e E, _ store.Event) (cart.State, error) {
	return cart.Evolve(s, e), nil
}

// cartEvolvers are the read model's evolvers, one per cart event type.
func cartEvolvers() []readmodel.Evolver[cart.State] {
	return []readmodel.Evolver[cart.State]{
		readmodel.On(evolveCart[cart.CartCreated]),
		readmodel.On(evolveCart[cart.ItemAddedToCart]),
		readmodel.On(evolveCart[cart.ItemRemovedFromCart]),
		readmodel.On(evolveCart[cart.CartEmptied]),
		readmodel.On(evolveCart[cart.CartCheckedOut]),
		readmodel.On(evolveCart[cart.CartCancelled]),
	}
}

// evolveStored folds one stored cart event into s, decoded by codec (the
// in-memory read model's fold).
func evolveStored(codec store.Codec, s cart.State, e store.Event) (cart.State, error) {
	ce, err := projection.DecodeAs[cart.Event](codec, e)
	if err != nil {
		return s, err
	}
	return cart.Evolve(s, ce), nil
}

// cartColumns maps a cart's state to the carts row's columns.
func cartColumns(s cart.State) map[string]any {
	items := s.Items
	if items == nil {
		items = []cart.Item{}
	}
	itemsJSON, err := json.Marshal(items)
	if err != nil {
		// Items hold strings, ints and Decimals, which always encode.
		itemsJSON = []byte("[]")
	}
	cols := map[string]any{
		"currency":       s.Currency,
		"items_json":     string(itemsJSON),
		"is_checked_out": s.Status == cart.StatusCheckedOut,
		"is_cancelled":   s.Status == cart.StatusCancelled,
		"total":          nil,
		"order_id":       nil,
	}
	if s.Status == cart.StatusCheckedOut {
		cols["total"] = s.Total.String()
		cols["order_id"] = s.OrderID
	}
	return cols
}

// ProjectionConfig configures NewProjection. A nil *ProjectionConfig means
// every default.
type ProjectionConfig struct {
	// Name names the projection's checkpoint, lease and status row.
	// Defaults to DefaultProjectionName ("carts").
	Name string
	// Store is read with ReadAll. Defaults to a store/postgres store on the
	// pool.
	Store store.EventStore
	// Codec decodes the cart events. Defaults to a JSON codec with
	// cart.RegisterEvents.
	Codec store.Codec
	// BatchSize is the most events applied per transaction. Defaults to
	// 500.
	BatchSize int
	// PollInterval is how often the log is read when no notification
	// wakes the projection. Defaults to DefaultProjectionPoll.
	PollInterval time.Duration
	// Logger receives the projection's diagnostics. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// TracerProvider makes the "projection carts" spans. Defaults to
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider records the projection's metrics. Defaults to
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// NewProjection returns the continuous projection keeping the carts table
// (see schema.sql), not yet running: a snapshot projection folding
// cart.Evolve over each cart's events, one row per cart keyed by tenant,
// cart and partition. It does not create the table: call EnsureSchema.
func NewProjection(pool *pgxpool.Pool, cfg *ProjectionConfig) (*projection.Projection, error) {
	var c ProjectionConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Name == "" {
		c.Name = DefaultProjectionName
	}
	if c.BatchSize == 0 {
		c.BatchSize = defaultProjectionBatch
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultProjectionPoll
	}
	codec := c.Codec
	if codec == nil {
		jc := store.NewJSONCodec()
		if err := cart.RegisterEvents(jc); err != nil {
			return nil, err
		}
		codec = jc
	}
	snap, err := readmodel.New(&readmodel.Config[cart.State]{
		Table:    DefaultReadModelTable,
		Storage:  readmodel.InTable,
		Codec:    codec,
		Evolvers: cartEvolvers(),
		// The stream and partition say which cart and tenant an event is
		// for; the ids inside the event body are not trusted for that.
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"tenant_id": partition, "cart_id": string(e.StreamID), "partition": partition}, nil
		},
		Initial:      cart.InitialState,
		MapToColumns: cartColumns,
	})
	if err != nil {
		return nil, fmt.Errorf("carts snapshot projection: %w", err)
	}
	proj, err := projection.New(pool, &projection.Config{
		Name:           c.Name,
		Store:          c.Store,
		BatchHandlers:  []projection.BatchHandler{snap},
		BatchSize:      c.BatchSize,
		PollInterval:   c.PollInterval,
		Logger:         c.Logger,
		TracerProvider: c.TracerProvider,
		MeterProvider:  c.MeterProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("carts projection: %w", err)
	}
	return proj, nil
}

// AdminProjections are the service's projections for its admin command
// line (package cli): "carts", which creates its table when it is missing.
func AdminProjections() []cli.Projection {
	return []cli.Projection{{
		Name: DefaultProjectionName,
		Help: "the carts read model of the cart service",
		New: func(ctx context.Context, pool *pgxpool.Pool, opts cli.ProjectionOptions) (*projection.Projection, error) {
			if err := EnsureSchema(ctx, pool); err != nil {
				return nil, err
			}
			return NewProjection(pool, &ProjectionConfig{BatchSize: opts.BatchSize, Logger: opts.Logger})
		},
	}}
}

// pgReadModel is the carts table and the continuous projection keeping it.
type pgReadModel struct {
	pool *pgxpool.Pool
	proj *projection.Projection
	// byHost: the actor host runs the projection (cluster mode: one
	// runner across the cluster, placed by name); start and stop leave it
	// to the host.
	byHost bool
}

func newPGReadModel(pool *pgxpool.Pool, es store.EventStore, codec store.Codec, tp trace.TracerProvider, cfg Config) (*pgReadModel, error) {
	proj, err := NewProjection(pool, &ProjectionConfig{Name: cfg.ProjectionName, Store: es, Codec: codec, PollInterval: cfg.ProjectionPollInterval,
		Logger: cfg.Logger, TracerProvider: tp, MeterProvider: cfg.MeterProvider})
	if err != nil {
		return nil, err
	}
	return &pgReadModel{pool: pool, proj: proj}, nil
}

func (m *pgReadModel) start(ctx context.Context) error {
	if m.byHost {
		return nil
	}
	return m.proj.Start(ctx)
}

func (m *pgReadModel) stop(ctx context.Context) error {
	if m.byHost {
		return nil
	}
	return m.proj.Stop(ctx)
}

func (m *pgReadModel) waitFor(ctx context.Context, pos store.Position) error {
	err := m.proj.WaitFor(ctx, pos)
	if errors.Is(err, projection.ErrFailed) {
		return fmt.Errorf("%w: %w", errReadModelFailed, err)
	}
	return err
}

const selectCarts = `SELECT tenant_id, cart_id, coalesce(currency, ''), total::text, coalesce(order_id, ''),
       items_json::text, is_checked_out, is_cancelled
FROM carts WHERE partition = $1 AND tenant_id = $1`

func (m *pgReadModel) get(ctx context.Context, tenant, cartID string) (CartView, bool, error) {
	rows, err := m.pool.Query(ctx, selectCarts+` AND cart_id = $2`, tenant, cartID)
	if err != nil {
		return CartView{}, false, fmt.Errorf("read cart %s of tenant %s: %w", cartID, tenant, err)
	}
	views, err := scanCarts(rows)
	if err != nil {
		return CartView{}, false, fmt.Errorf("read cart %s of tenant %s: %w", cartID, tenant, err)
	}
	if len(views) == 0 {
		return CartView{}, false, nil
	}
	return views[0], true, nil
}

func (m *pgReadModel) list(ctx context.Context, tenant string) ([]CartView, error) {
	rows, err := m.pool.Query(ctx, selectCarts+` ORDER BY cart_id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list carts of tenant %s: %w", tenant, err)
	}
	views, err := scanCarts(rows)
	if err != nil {
		return nil, fmt.Errorf("list carts of tenant %s: %w", tenant, err)
	}
	return views, nil
}

func scanCarts(rows pgx.Rows) ([]CartView, error) {
	defer rows.Close()
	views := []CartView{}
	for rows.Next() {
		var v CartView
		var total *string
		var items string
		if err := rows.Scan(&v.TenantID, &v.CartID, &v.Currency, &total, &v.OrderID, &items,
			&v.IsCheckedOut, &v.IsCancelled); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(items), &v.Items); err != nil {
			return nil, fmt.Errorf("items_json of cart %s: %w", v.CartID, err)
		}
		if v.Items == nil {
			v.Items = []cart.Item{}
		}
		if total != nil && v.IsCheckedOut {
			d, err := cart.ParseDecimal(*total)
			if err != nil {
				return nil, fmt.Errorf("total of cart %s: %w", v.CartID, err)
			}
			v.Total = &d
		} else {
			v.OrderID = ""
		}
		views = append(views, v)
	}
	return views, rows.Err()
}
