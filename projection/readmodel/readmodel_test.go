package readmodel_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/projection/readmodel"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// inTx runs fn in a transaction, committing when it returns nil.
func inTx(t testing.TB, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	t.Helper()
	return pgx.BeginFunc(projtest.Ctx(t), pool, fn)
}

// counted wraps a cart projection config with call counters.
type counters struct{ evolve, mapped atomic.Int64 }

func countedCartConfig(table string, storage readmodel.Storage, c *counters) readmodel.Config[projtest.CartState] {
	return readmodel.Config[projtest.CartState]{
		Table: table, Storage: storage, EventTypes: projtest.CartTypes, ExtractKeys: projtest.CartKeys, Initial: projtest.NewCart,
		Evolve: func(s projtest.CartState, e store.Event) (projtest.CartState, error) {
			c.evolve.Add(1)
			return projtest.EvolveCart(s, e)
		},
		MapToColumns: func(s projtest.CartState) map[string]any {
			c.mapped.Add(1)
			return projtest.CartColumns(s)
		},
	}
}

func TestReadModelWithRunner(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			var c counters
			sp, err := readmodel.New(new(countedCartConfig("carts", storage, &c)))
			require.NoError(t, err)
			projtest.AppendCart(t, es, "tenant-a", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 2),
				projtest.CartEvent(projtest.TypeNoted, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "y", 1), projtest.CartEvent(projtest.TypeRemoved, "c1", "x", 1))
			projtest.AppendCart(t, es, "tenant-b", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))

			r, err := perstream.New(pool, &perstream.Config{Registry: sp.Registry()})
			require.NoError(t, err)
			_, err = r.Drain(ctx, "carts", "c1", perstream.ProjectOptions{Partition: "tenant-a", BatchSize: 2})
			require.NoError(t, err)
			_, err = r.Drain(ctx, "carts", "c1", perstream.ProjectOptions{Partition: "tenant-b"})
			require.NoError(t, err)

			projtest.RequireReadModelMatchesLog(t, pool, es, "carts", storage, "")
			require.Equal(t, []string{"cart_id", "partition"}, sp.KeyColumns())
			// Map-to-columns ran exactly once per applied event.
			require.EqualValues(t, 5, c.evolve.Load())
			require.EqualValues(t, 5, c.mapped.Load())
			rows := projtest.ReadCarts(t, pool, "carts", storage)
			require.EqualValues(t, 5, rows["tenant-a/c1"].Position)
			require.Equal(t, 2, rows["tenant-a/c1"].ItemCount)

			// Replaying events at or before the stored position changes
			// nothing and calls neither Evolve nor MapToColumns.
			events := projtest.ReadAllEvents(t, pool, es, "tenant-a")
			h := sp.Handler()
			require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error {
				for _, e := range events {
					if e.Type == projtest.TypeNoted {
						continue
					}
					if err := h(ctx, tx, e); err != nil {
						return err
					}
				}
				return nil
			}))
			require.EqualValues(t, 5, c.evolve.Load())
			require.EqualValues(t, 5, c.mapped.Load())
			require.Equal(t, rows, projtest.ReadCarts(t, pool, "carts", storage))

			if storage == readmodel.InRow {
				var streamID string
				var global int64
				require.NoError(t, pool.QueryRow(ctx, `SELECT stream_id, last_global_position FROM carts WHERE cart_id = 'c1' AND partition = 'tenant-a'`).
					Scan(&streamID, &global))
				require.Equal(t, "c1", streamID)
				require.EqualValues(t, events[len(events)-1].GlobalPosition, global)
			} else {
				var n int
				require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM snapshots WHERE readmodel_table_name = 'carts'
AND stream_id IN ('cart_id:c1|partition:tenant-a', 'cart_id:c1|partition:tenant-b')`).Scan(&n))
				require.Equal(t, 2, n)
			}
		})
	}
}

func TestReadModelKeySetMustNotChange(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InRow)
	cfg := countedCartConfig("carts", readmodel.InRow, &counters{})
	cfg.ExtractKeys = func(e store.Event, partition string) (map[string]any, error) {
		keys, err := projtest.CartKeys(e, partition)
		if e.StreamPosition > 1 {
			delete(keys, "partition")
			keys["tenant"] = partition
		}
		return keys, err
	}
	sp, err := readmodel.New(&cfg)
	require.NoError(t, err)
	projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))
	r, err := perstream.New(pool, &perstream.Config{Registry: sp.Registry()})
	require.NoError(t, err)
	_, err = r.ProjectEvents(ctx, "carts", "c1", perstream.ProjectOptions{BatchSize: 1})
	require.NoError(t, err)
	_, err = r.ProjectEvents(ctx, "carts", "c1", perstream.ProjectOptions{})
	require.ErrorIs(t, err, readmodel.ErrKeySetChanged)
	var kerr *readmodel.KeySetError
	require.ErrorAs(t, err, &kerr)
	require.Equal(t, "carts", kerr.Table)
	require.Equal(t, []string{"cart_id", "partition"}, kerr.Expected)
	require.Equal(t, []string{"cart_id", "tenant"}, kerr.Received)
	require.ErrorContains(t, err, `"carts"`)
	require.ErrorContains(t, err, "cart_id, partition")
	require.ErrorContains(t, err, "cart_id, tenant")
}

func TestReadModelParse(t *testing.T) {
	t.Parallel()
	sp, err := readmodel.New(new(countedCartConfig("carts", readmodel.InRow, &counters{})))
	require.NoError(t, err)
	str := func(s string) *string { return &s }
	for _, raw := range []*string{nil, str(""), str("  \n"), str("null")} {
		s, err := sp.Parse(raw)
		require.NoError(t, err)
		require.Equal(t, projtest.NewCart(), s)
	}
	s, err := sp.Parse(str(`{"open":true,"items":{"x":2},"applied":3}`))
	require.NoError(t, err)
	require.Equal(t, projtest.CartState{Open: true, Items: map[string]int{"x": 2}, Applied: 3}, s)

	long := "{" + strings.Repeat("é", 300) // invalid, and longer than 200 characters
	_, err = sp.Parse(&long)
	require.ErrorIs(t, err, readmodel.ErrInvalidState)
	var perr *readmodel.StateParseError
	require.ErrorAs(t, err, &perr)
	require.Equal(t, "carts", perr.Table)
	require.True(t, perr.Truncated)
	require.Equal(t, 200, utf8.RuneCountInString(perr.Value))
	require.True(t, strings.HasPrefix(long, perr.Value))
	require.ErrorContains(t, err, `"carts"`)
	require.NotContains(t, err.Error(), strings.Repeat("é", 200))

	short := "not json"
	_, err = sp.Parse(&short)
	require.ErrorAs(t, err, &perr)
	require.Equal(t, "not json", perr.Value)
	require.False(t, perr.Truncated)
	require.ErrorContains(t, err, `"not json"`)
}

func TestReadModelStoredValuesInRow(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	// A legacy table whose snapshot column is text, so it can hold
	// anything.
	_, err := pool.Exec(ctx, `CREATE TABLE legacy (cart_id text, partition text, snapshot text, stream_id text,
last_stream_position bigint, last_global_position bigint, item_count int, is_open boolean, PRIMARY KEY (cart_id, partition))`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO legacy (cart_id, partition, snapshot, last_stream_position) VALUES
('empty', 'default_partition', '', 0), ('nullsnap', 'default_partition', NULL, 0), ('bad', 'default_partition', $1, 0)`,
		"{oops "+strings.Repeat("x", 500))
	require.NoError(t, err)
	sp, err := readmodel.New(new(countedCartConfig("legacy", readmodel.InRow, &counters{})))
	require.NoError(t, err)
	for _, cart := range []string{"empty", "nullsnap", "bad"} {
		projtest.AppendCart(t, es, "", cart, projtest.CartEvent(projtest.TypeAdded, cart, "x", 1))
	}
	events := projtest.ReadAllEvents(t, pool, es, "")
	h := sp.Handler()
	for _, e := range events[:2] {
		require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return h(ctx, tx, e) }))
	}
	for _, cart := range []string{"empty", "nullsnap"} {
		var snap string
		require.NoError(t, pool.QueryRow(ctx, `SELECT snapshot FROM legacy WHERE cart_id = $1`, cart).Scan(&snap))
		var s projtest.CartState
		require.NoError(t, json.Unmarshal([]byte(snap), &s))
		require.Equal(t, projtest.CartState{Items: map[string]int{"x": 1}, Applied: 1}, s, cart) // from the initial state
	}

	err = inTx(t, pool, func(tx pgx.Tx) error { return h(ctx, tx, events[2]) })
	require.ErrorIs(t, err, readmodel.ErrInvalidState)
	require.ErrorContains(t, err, `"legacy"`)
	var perr *readmodel.StateParseError
	require.ErrorAs(t, err, &perr)
	require.Len(t, perr.Value, 200)
}

func TestReadModelQuotedIdentifiers(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			table := `Cart "Model"; DROP TABLE messages; --`
			extra := ""
			if storage == readmodel.InRow {
				extra = `snapshot jsonb, stream_id text, last_stream_position bigint, last_global_position bigint,`
			}
			_, err := pool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{table}.Sanitize()+` ("Cart Id" text, "select" text, `+extra+
				` "Item Count" int, PRIMARY KEY ("Cart Id", "select"))`)
			require.NoError(t, err)
			sp, err := readmodel.New(&readmodel.Config[projtest.CartState]{
				Table: table, Storage: storage, EventTypes: projtest.CartTypes, Evolve: projtest.EvolveCart, Initial: projtest.NewCart,
				ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
					return map[string]any{"Cart Id": string(e.StreamID), "select": partition}, nil
				},
				MapToColumns: func(s projtest.CartState) map[string]any { return map[string]any{"Item Count": projtest.ItemCount(s)} },
			})
			require.NoError(t, err)
			projtest.AppendCart(t, es, "", "c'1", projtest.CartEvent(projtest.TypeAdded, "c'1", "x", 2), projtest.CartEvent(projtest.TypeAdded, "c'1", "x", 3))
			r, err := perstream.New(pool, &perstream.Config{Registry: sp.Registry()})
			require.NoError(t, err)
			_, err = r.Drain(ctx, "q", "c'1", perstream.ProjectOptions{})
			require.NoError(t, err)
			var n int
			require.NoError(t, pool.QueryRow(ctx, `SELECT "Item Count" FROM `+pgx.Identifier{table}.Sanitize()+` WHERE "Cart Id" = $1`, "c'1").Scan(&n))
			require.Equal(t, 5, n)
			var exists bool
			require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('messages') IS NOT NULL`).Scan(&exists))
			require.True(t, exists)
		})
	}
}

// waitForLockWait waits until some backend of the database waits for a
// lock.
func TestReadModelFirstEventIsSafeUnderConcurrency(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			sp := projtest.CartProjection(t, "carts", storage, nil)
			projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))
			e := projtest.ReadAllEvents(t, pool, es, "")[0]
			h := sp.Handler()

			// Two runners apply the first event of a key at once: the
			// second waits for the first, then must not write its own
			// copy of the row.
			tx1, err := pool.Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, h(ctx, tx1, e))
			second := make(chan error, 1)
			go func() {
				second <- pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return h(ctx, tx, e) })
			}()
			projtest.WaitForLockWait(t, pool)
			require.NoError(t, tx1.Commit(ctx))
			err = <-second
			require.ErrorIs(t, err, readmodel.ErrConcurrentWrite)

			// Retried, the second finds the row and skips the event.
			require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return h(ctx, tx, e) }))
			rows := projtest.ReadCarts(t, pool, "carts", storage)
			require.Equal(t, 1, rows["default_partition/c1"].State.Applied)
		})
	}
}

func TestReadModelWriteNeverMovesBackwards(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			sp := projtest.CartProjection(t, "carts", storage, nil)
			projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))
			events := projtest.ReadAllEvents(t, pool, es, "")
			h := sp.Handler()
			for _, e := range events {
				require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return h(ctx, tx, e) }))
			}
			// A write of an older position (as if the row had been read
			// before a newer event was applied) is refused by the upsert.
			keys, err := projtest.CartKeys(events[0], "default_partition")
			require.NoError(t, err)
			err = inTx(t, pool, func(tx pgx.Tx) error {
				return sp.WriteStale(ctx, tx, keys, projtest.NewCart(), events[1], projtest.CartColumns(projtest.NewCart()))
			})
			require.ErrorIs(t, err, readmodel.ErrConcurrentWrite)
			rows := projtest.ReadCarts(t, pool, "carts", storage)
			require.EqualValues(t, 3, rows["default_partition/c1"].Position)
			require.Equal(t, 3, rows["default_partition/c1"].State.Applied)
		})
	}
}

func TestReadModelHandleBatch(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			var c counters
			sp, err := readmodel.New(new(countedCartConfig("carts", storage, &c)))
			require.NoError(t, err)
			projtest.SeedCarts(t, es, "tenant-a", 30, 4)
			projtest.AppendCart(t, es, "tenant-a", "cart-3", projtest.CartEvent(projtest.TypeNoted, "cart-3", "", 0), projtest.CartEvent(projtest.TypeRemoved, "cart-3", "sku-0", 1))
			events := projtest.ReadAllEvents(t, pool, es, "")

			apply := func(evs []store.Event, commit bool) {
				t.Helper()
				tx, err := pool.Begin(ctx)
				require.NoError(t, err)
				require.NoError(t, sp.HandleBatch(ctx, tx, evs))
				if commit {
					require.NoError(t, tx.Commit(ctx))
				} else {
					require.NoError(t, tx.Rollback(ctx))
				}
				sp.FinishBatch(tx, commit)
			}
			// A rolled-back batch leaves no trace, in the table or in the
			// cache (Evolve modifies the cached maps in place).
			apply(events[:40], false)
			require.Empty(t, projtest.ReadCarts(t, pool, "carts", storage))
			apply(events[:40], true)
			apply(events[:40], true) // replay: skipped
			apply(events[40:100], false)
			apply(events[40:], true)
			projtest.RequireReadModelMatchesLog(t, pool, es, "carts", storage, "")
			require.EqualValues(t, 30*5+1+40+60, c.mapped.Load(), "map-to-columns once per applied event")

			// The cache is checked against the stored position: a row
			// changed behind the projection's back is read again.
			if storage == readmodel.InRow {
				_, err = pool.Exec(ctx, `UPDATE carts SET snapshot = '{"open":false,"items":{},"applied":100}', last_stream_position = 99 WHERE cart_id = 'cart-5'`)
			} else {
				_, err = pool.Exec(ctx, `UPDATE snapshots SET snapshot = '{"open":false,"items":{},"applied":100}', last_stream_position = 99 WHERE stream_id = 'cart_id:cart-5|partition:tenant-a'`)
			}
			require.NoError(t, err)
			projtest.AppendCart(t, es, "tenant-a", "cart-5", projtest.CartEvent(projtest.TypeOpened, "cart-5", "", 0))
			// Stream position 6 <= 99: skipped.
			more := projtest.ReadAllEvents(t, pool, es, "")[len(events):]
			apply(more, true)
			require.Equal(t, 100, projtest.ReadCarts(t, pool, "carts", storage)["tenant-a/cart-5"].State.Applied)

			// A deleted row is rebuilt from its stream: the events it
			// misses are read back.
			if storage == readmodel.InRow {
				_, err = pool.Exec(ctx, `DELETE FROM carts WHERE cart_id = 'cart-6'`)
			} else {
				_, err = pool.Exec(ctx, `DELETE FROM snapshots WHERE stream_id = 'cart_id:cart-6|partition:tenant-a'`)
			}
			require.NoError(t, err)
			projtest.AppendCart(t, es, "tenant-a", "cart-6", projtest.CartEvent(projtest.TypeAdded, "cart-6", "z", 7))
			more = projtest.ReadAllEvents(t, pool, es, "")[len(events)+1:]
			before := c.mapped.Load()
			apply(more, true)
			got := projtest.ReadCarts(t, pool, "carts", storage)["tenant-a/cart-6"]
			require.Equal(t, projtest.FoldLog(t, pool, es, "tenant-a")["tenant-a/cart-6"], got.State)
			require.Equal(t, 6, got.State.Applied)
			require.EqualValues(t, 6, c.mapped.Load()-before)
		})
	}
}

// The global log is in commit order, which can put a stream's later event
// before an earlier one. A snapshot row must still fold them in stream
// order and apply each once.
func TestReadModelOutOfOrderEvents(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			var c counters
			sp, err := readmodel.New(new(countedCartConfig("carts", storage, &c)))
			require.NoError(t, err)
			projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeNoted, "c1", "", 0),
				projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1), projtest.CartEvent(projtest.TypeAdded, "c1", "y", 2), projtest.CartEvent(projtest.TypeRemoved, "c1", "x", 1))
			events := projtest.ReadAllEvents(t, pool, es, "")
			batch := func(evs ...store.Event) {
				t.Helper()
				tx, err := pool.Begin(ctx)
				require.NoError(t, err)
				require.NoError(t, sp.HandleBatch(ctx, tx, evs))
				require.NoError(t, tx.Commit(ctx))
				sp.FinishBatch(tx, true)
			}
			// Inverted within a batch, and across batches: position 4
			// first (1-3 are read from the stream), then 1-3 (skipped),
			// then 5.
			batch(events[3], events[0])
			require.EqualValues(t, 4, projtest.ReadCarts(t, pool, "carts", storage)["default_partition/c1"].Position)
			batch(events[2], events[1])
			batch(events[4])
			want := projtest.FoldLog(t, pool, es, "")
			require.Equal(t, want["default_partition/c1"], projtest.ReadCarts(t, pool, "carts", storage)["default_partition/c1"].State)
			require.EqualValues(t, 4, c.evolve.Load(), "each relevant event applied once")
			require.EqualValues(t, 4, c.mapped.Load())

			// The per-event handler reads what it misses too.
			sp2, err := readmodel.New(new(countedCartConfig("carts2", storage, &counters{})))
			require.NoError(t, err)
			projtest.CreateCartTable(t, pool, "carts2", storage)
			require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return sp2.Handler()(ctx, tx, events[4]) }))
			require.Equal(t, want["default_partition/c1"], projtest.ReadCarts(t, pool, "carts2", storage)["default_partition/c1"].State)
		})
	}
}

func TestReadModelResetReadModel(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			projtest.CreateCartTable(t, pool, "other", storage)
			sp := projtest.CartProjection(t, "carts", storage, nil)
			other := projtest.CartProjection(t, "other", storage, nil)
			projtest.SeedCarts(t, es, "tenant_a", 3, 1) // '_' must not act as a LIKE wildcard
			projtest.SeedCarts(t, es, "tenantXa", 2, 1)
			events := projtest.ReadAllEvents(t, pool, es, "")
			require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error {
				if err := sp.HandleBatch(ctx, tx, events); err != nil {
					return err
				}
				return other.HandleBatch(ctx, tx, events)
			}))
			require.Len(t, projtest.ReadCarts(t, pool, "carts", storage), 5)

			require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return sp.ResetReadModel(ctx, tx, "tenant_a") }))
			got := projtest.ReadCarts(t, pool, "carts", storage)
			require.Len(t, got, 2)
			for k := range got {
				require.True(t, strings.HasPrefix(k, "tenantXa/"), k)
			}
			if storage == readmodel.InTable {
				var n int
				require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM snapshots WHERE readmodel_table_name = 'carts'`).Scan(&n))
				require.Equal(t, 2, n)
			}
			require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return sp.ResetReadModel(ctx, tx, projection.AllPartitions) }))
			require.Empty(t, projtest.ReadCarts(t, pool, "carts", storage))
			require.Len(t, projtest.ReadCarts(t, pool, "other", storage), 5)
		})
	}
}

func TestReadModelErrorsNameTheEvent(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InRow)
	cfg := countedCartConfig("carts", readmodel.InRow, &counters{})
	boom := errors.New("boom")
	cfg.Evolve = func(projtest.CartState, store.Event) (projtest.CartState, error) { return projtest.CartState{}, boom }
	sp, err := readmodel.New(&cfg)
	require.NoError(t, err)
	projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))
	e := projtest.ReadAllEvents(t, pool, es, "")[0]
	err = inTx(t, pool, func(tx pgx.Tx) error { return sp.Handler()(ctx, tx, e) })
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, e.String())

	cfg.Evolve = projtest.EvolveCart
	cfg.MapToColumns = func(projtest.CartState) map[string]any { return map[string]any{"snapshot": 1} }
	sp, err = readmodel.New(&cfg)
	require.NoError(t, err)
	err = inTx(t, pool, func(tx pgx.Tx) error { return sp.Handler()(ctx, tx, e) })
	require.ErrorContains(t, err, `"snapshot"`)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	base := countedCartConfig("carts", readmodel.InRow, &counters{})
	cases := map[string]func(*readmodel.Config[projtest.CartState]){
		"Table":         func(c *readmodel.Config[projtest.CartState]) { c.Table = "" },
		"Storage":       func(c *readmodel.Config[projtest.CartState]) { c.Storage = 7 },
		"EventTypes":    func(c *readmodel.Config[projtest.CartState]) { c.EventTypes = nil },
		"EventTypes[1]": func(c *readmodel.Config[projtest.CartState]) { c.EventTypes = []string{"a", ""} },
		"ExtractKeys":   func(c *readmodel.Config[projtest.CartState]) { c.ExtractKeys = nil },
		"Evolve":        func(c *readmodel.Config[projtest.CartState]) { c.Evolve = nil },
		"Initial":       func(c *readmodel.Config[projtest.CartState]) { c.Initial = nil },
	}
	for field, mutate := range cases {
		cfg := base
		mutate(&cfg)
		_, err := readmodel.New(&cfg)
		require.ErrorIs(t, err, projection.ErrInvalidConfig, field)
		require.ErrorContains(t, err, "Config."+field)
	}
	sp, err := readmodel.New(&base)
	require.NoError(t, err)
	require.Equal(t, "carts", sp.Table())
	require.Nil(t, sp.KeyColumns())
	require.Len(t, sp.Registry(), 3)
}

func ExampleRowID() {
	fmt.Println(readmodel.RowID(map[string]any{"tenant_id": "t1", "cart_id": "a|b", "partition": "p"}))
	// Output: cart_id:a%7Cb|partition:p|tenant_id:t1
}

// Key columns of other types than text are matched with their own types.
func TestReadModelTypedKeys(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			extra := ""
			if storage == readmodel.InRow {
				extra = `snapshot jsonb, stream_id text, last_stream_position bigint, last_global_position bigint,`
			}
			_, err := pool.Exec(ctx, `CREATE TABLE typed (id uuid, shard int, day date, `+extra+` items int, PRIMARY KEY (id, shard, day))`)
			require.NoError(t, err)
			ids := map[string]string{"a": "6f1c2c9e-55a3-4c1e-9d7e-0f5b6f1e2a3b", "b": "0A4E7C2D-1B3F-4E5A-8C6D-7E8F9A0B1C2D"}
			day := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
			sp, err := readmodel.New(&readmodel.Config[projtest.CartState]{
				Table: "typed", Storage: storage, EventTypes: projtest.CartTypes, Evolve: projtest.EvolveCart, Initial: projtest.NewCart,
				ExtractKeys: func(e store.Event, _ string) (map[string]any, error) {
					return map[string]any{"id": ids[string(e.StreamID)], "shard": int64(len(e.StreamID)), "day": day}, nil
				},
				MapToColumns: func(s projtest.CartState) map[string]any { return map[string]any{"items": projtest.ItemCount(s)} },
			})
			require.NoError(t, err)
			for i := 0; i < 3; i++ {
				projtest.AppendCart(t, es, "", "a", projtest.CartEvent(projtest.TypeAdded, "a", "x", 1))
				projtest.AppendCart(t, es, "", "b", projtest.CartEvent(projtest.TypeAdded, "b", "x", 2))
			}
			events := projtest.ReadAllEvents(t, pool, es, "")
			for _, evs := range [][]store.Event{events[:3], events[3:]} {
				tx, err := pool.Begin(ctx)
				require.NoError(t, err)
				require.NoError(t, sp.HandleBatch(ctx, tx, evs))
				require.NoError(t, tx.Commit(ctx))
				sp.FinishBatch(tx, true)
			}
			var a, b int
			require.NoError(t, pool.QueryRow(ctx, `SELECT items FROM typed WHERE id = $1`, ids["a"]).Scan(&a))
			require.NoError(t, pool.QueryRow(ctx, `SELECT items FROM typed WHERE id = $1`, ids["b"]).Scan(&b))
			require.Equal(t, 3, a)
			require.Equal(t, 6, b)
		})
	}
}
