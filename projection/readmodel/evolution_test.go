package readmodel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// cartSchema is the test carts' history: ItemAdded was {"cart","sku","n":"2"}
// (v1), then {"n":2} (v2), now {"qty":2} (v3); CartOpened was called
// CartStarted; ItemsAdded {"cart","skus":[...]} was split into one
// ItemAdded per sku; Debug events are dropped.
func cartSchema() *store.JSONCodec {
	c := store.NewJSONCodec()
	c.MustRegisterUpcaster(projtest.TypeAdded, 1, func(data json.RawMessage) (json.RawMessage, error) {
		var v1 map[string]any
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(v1["n"].(string))
		if err != nil {
			return nil, err
		}
		v1["n"] = n
		return json.Marshal(v1)
	}).MustRegisterUpcaster(projtest.TypeAdded, 2, func(data json.RawMessage) (json.RawMessage, error) {
		var v2 struct {
			Cart, SKU string
			N         int
		}
		if err := json.Unmarshal(data, &v2); err != nil {
			return nil, err
		}
		return json.Marshal(projtest.CartData{Cart: v2.Cart, SKU: v2.SKU, Qty: v2.N})
	}).MustRegisterRename("CartStarted", projtest.TypeOpened).
		MustRegisterSplit("ItemsAdded", 1, []string{projtest.TypeAdded}, func(data json.RawMessage) ([]store.UpcastEvent, error) {
			var d struct {
				Cart string
				SKUs []string
			}
			if err := json.Unmarshal(data, &d); err != nil {
				return nil, err
			}
			var out []store.UpcastEvent
			for _, sku := range d.SKUs {
				b, _ := json.Marshal(projtest.CartData{Cart: d.Cart, SKU: sku, Qty: 1})
				out = append(out, store.UpcastEvent{Type: projtest.TypeAdded, Version: 3, Data: b})
			}
			return out, nil
		}).MustRegisterDrop("Debug")
	return c
}

func v1Event(typ, data string) store.EventData {
	return store.EventData{Type: typ, Data: json.RawMessage(data), SchemaVersion: "1"}
}

// v1Cart is cart c1 as the first build wrote it: it folds to an open cart
// holding y and z (x was added twice and removed) after 6 applied events.
var v1Cart = []store.EventData{
	v1Event("CartStarted", `{"cart":"c1"}`),
	v1Event(projtest.TypeAdded, `{"cart":"c1","sku":"x","n":"2"}`),
	v1Event("Debug", `{"cart":"c1"}`),
	v1Event("ItemsAdded", `{"cart":"c1","skus":["y","z"]}`),
	v1Event("Debug", `{"cart":"c1"}`),
	v1Event(projtest.TypeRemoved, `{"cart":"c1","sku":"x","qty":2}`),
	v1Event(projtest.TypeAdded, `{"cart":"c1","sku":"z","n":"1"}`),
}

var v1CartState = projtest.CartState{Open: true, Items: map[string]int{"y": 1, "z": 2}, Applied: 6}

// upcastCarts is a migrated database of carts written by the first build:
// raw stores events as given, es upcasts them with schema.
type upcastCarts struct {
	pool    *pgxpool.Pool
	raw, es *postgres.Store
	schema  *store.JSONCodec
}

func newUpcastCarts(t *testing.T) upcastCarts {
	t.Helper()
	pool, raw := projtest.NewDB(t)
	schema := cartSchema()
	es, err := postgres.New(pool, &postgres.Config{Upcaster: schema})
	require.NoError(t, err)
	return upcastCarts{pool: pool, raw: raw, es: es, schema: schema}
}

// readModel creates table and returns the cart read model on it, reading
// the events it lacks with upcaster.
func (u upcastCarts) readModel(t *testing.T, table string, storage readmodel.Storage, upcaster store.Upcaster) *readmodel.Projection[projtest.CartState] {
	t.Helper()
	projtest.CreateCartTable(t, u.pool, table, storage)
	rm, err := readmodel.New(&readmodel.Config[projtest.CartState]{
		Table: table, Storage: storage, EventTypes: projtest.CartTypes, ExtractKeys: projtest.CartKeys,
		Evolve: projtest.EvolveCart, Initial: projtest.NewCart, MapToColumns: projtest.CartColumns, Upcaster: upcaster,
	})
	require.NoError(t, err)
	return rm
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Must show: a stream written at v1 is read as v3 (through two upcasters,
// a rename, a split and drops) by a projection and by its rebuild.
func TestReadModelOfUpcastEvents(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			u := newUpcastCarts(t)
			pool, raw, es := u.pool, u.raw, u.es
			ctx := projtest.Ctx(t)
			rm := u.readModel(t, "carts", storage, u.schema)
			last := projtest.AppendCart(t, raw, "", "c1", v1Cart...)

			p, err := projection.New(pool, &projection.Config{Name: "carts", Store: es, BatchHandlers: []projection.BatchHandler{rm},
				BatchSize: 2, PollInterval: 20 * time.Millisecond, DisableNotify: true})
			require.NoError(t, err)
			require.NoError(t, p.Start(ctx))
			require.NoError(t, p.WaitFor(ctx, last.LastPosition()))
			require.NoError(t, p.Stop(ctx))
			row := projtest.ReadCarts(t, pool, "carts", storage)["default_partition/c1"]
			require.Equal(t, v1CartState, row.State)
			require.Equal(t, 3, row.ItemCount)
			require.EqualValues(t, 7, row.Position)

			require.NoError(t, p.Rebuild(ctx, projection.RebuildOptions{}))
			row = projtest.ReadCarts(t, pool, "carts", storage)["default_partition/c1"]
			require.Equal(t, v1CartState, row.State, "the rebuild reads upcast events too")

			// A row that misses earlier events reads them from the
			// messages table itself, upcast with Config.Upcaster.
			rm2 := u.readModel(t, "carts2", storage, u.schema)
			res, err := es.ReadStream(ctx, "c1", store.ReadOptions{From: 7})
			require.NoError(t, err)
			require.Len(t, res.Events, 1)
			require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return rm2.HandleBatch(ctx, tx, res.Events) }))
			require.Equal(t, v1CartState, projtest.ReadCarts(t, pool, "carts2", storage)["default_partition/c1"].State)
		})
	}
}

// Bad input: an event of a version newer than the projection's build
// knows fails the batch before any read-model write; the projection
// retries, the checkpoint stays, and the logs name the event.
func TestProjectionStallsOnEventItCannotUpcast(t *testing.T) {
	t.Parallel()
	u := newUpcastCarts(t)
	pool, raw, es := u.pool, u.raw, u.es
	ctx := projtest.Ctx(t)
	rm := u.readModel(t, "carts", readmodel.InRow, u.schema)
	projtest.AppendCart(t, raw, "", "c1", v1Cart[:2]...)
	newer := v1Event(projtest.TypeAdded, `{"cart":"c2","sku":"x","qty":1,"unit":"kg"}`)
	newer.SchemaVersion = "4"
	projtest.AppendCart(t, raw, "", "c2", v1Event("CartStarted", `{"cart":"c2"}`), newer)

	logs := &syncBuffer{}
	p, err := projection.New(pool, &projection.Config{Name: "carts", Store: es, BatchHandlers: []projection.BatchHandler{rm},
		PollInterval: 20 * time.Millisecond, DisableNotify: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err)
	require.NoError(t, p.Start(ctx))
	projtest.Eventually(t, 10*time.Second, "the batch failure is logged", func() bool {
		return strings.Contains(logs.String(), "projection_batch_failed")
	})
	require.NoError(t, p.Stop(ctx))
	out := logs.String()
	for _, want := range []string{`stream \"c2\"`, "position 2", "ItemAdded", `version \"4\"`, "newer than 3"} {
		require.Contains(t, out, want)
	}
	require.Empty(t, projtest.ReadCarts(t, pool, "carts", readmodel.InRow), "no read-model write")
	require.Equal(t, store.Position{}, projtest.LoadCheckpoint(t, pool, "carts", projection.AllPartitions))
}

// When a batch fails and its events are applied one by one to find the
// failing one, the events of a split are still applied together: the read
// model gets both halves.
func TestSplitSurvivesBatchIsolation(t *testing.T) {
	t.Parallel()
	u := newUpcastCarts(t)
	pool, raw, es := u.pool, u.raw, u.es
	ctx := projtest.Ctx(t)
	rm := u.readModel(t, "carts", readmodel.InRow, u.schema)
	last := projtest.AppendCart(t, raw, "", "c1", v1Cart...)
	var calls atomic.Int32
	flaky := func(context.Context, pgx.Tx, store.Event) error {
		if calls.Add(1) == 1 {
			return errors.New("the first try fails")
		}
		return nil
	}
	p, err := projection.New(pool, &projection.Config{Name: "carts", Store: es,
		Handlers:      projection.Registry{projtest.TypeRemoved: {flaky}},
		BatchHandlers: []projection.BatchHandler{rm}, PollInterval: 20 * time.Millisecond, DisableNotify: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, p.Start(ctx))
	require.NoError(t, p.WaitFor(ctx, last.LastPosition()))
	require.NoError(t, p.Stop(ctx))
	require.Equal(t, v1CartState, projtest.ReadCarts(t, pool, "carts", readmodel.InRow)["default_partition/c1"].State)
	require.EqualValues(t, 2, calls.Load(), "the batch failed once, then its events were applied one unit at a time")
}

// A read model's per-event Handler, fed by an upcasting store one event at
// a time, applies every event of a split: the first it is given reads the
// stored event back and applies the whole split, the others find the row
// at their position. Without an upcaster it says what to set.
func TestSplitThroughPerEventHandler(t *testing.T) {
	t.Parallel()
	u := newUpcastCarts(t)
	pool, raw, es := u.pool, u.raw, u.es
	ctx := projtest.Ctx(t)
	rm := u.readModel(t, "carts", readmodel.InRow, u.schema)
	last := projtest.AppendCart(t, raw, "", "c1", v1Cart...)
	reg := projection.Registry{}
	for _, typ := range projtest.CartTypes {
		reg[typ] = []projection.Handler{rm.Handler()}
	}
	p, err := projection.New(pool, &projection.Config{Name: "carts", Store: es, Handlers: reg,
		PollInterval: 20 * time.Millisecond, DisableNotify: true})
	require.NoError(t, err)
	require.NoError(t, p.Start(ctx))
	require.NoError(t, p.WaitFor(ctx, last.LastPosition()))
	require.NoError(t, p.Stop(ctx))
	require.Equal(t, v1CartState, projtest.ReadCarts(t, pool, "carts", readmodel.InRow)["default_partition/c1"].State)

	// Each event of the split, handed over again, changes nothing.
	res, err := es.ReadStream(ctx, "c1", store.ReadOptions{From: 4, To: 4})
	require.NoError(t, err)
	require.Len(t, res.Events, 2, "ItemsAdded reads as two ItemAdded")
	for i, e := range res.Events {
		require.Equal(t, i, e.Metadata[store.MetaSplitPart], "the place of event %d in the split", i)
		require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return rm.Handler()(ctx, tx, e) }))
	}
	require.Equal(t, v1CartState, projtest.ReadCarts(t, pool, "carts", readmodel.InRow)["default_partition/c1"].State)

	// A read model without an upcaster can't read the rest of a split.
	bare := u.readModel(t, "carts_bare", readmodel.InRow, nil)
	err = inTx(t, pool, func(tx pgx.Tx) error { return bare.Handler()(ctx, tx, res.Events[1]) })
	require.ErrorContains(t, err, "is part of a split: set readmodel.Config.Upcaster")
	require.Empty(t, projtest.ReadCarts(t, pool, "carts_bare", readmodel.InRow), "nothing written")
}
