package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/cmd/troupe/internal/cartview"
	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
)

// foldRows returns the carts rows a from-scratch fold of every live cart
// stream gives, in ReadRows order.
func foldRows(t testing.TB, pool *pgxpool.Pool) []cartview.Row {
	t.Helper()
	ctx := testCtx(t)
	es := newStore(t, pool)
	codec := cartCodec(t)
	rows, err := pool.Query(ctx, `SELECT stream_id, partition FROM streams WHERE NOT is_archived AND stream_type = $1`, cart.StreamType)
	require.NoError(t, err)
	type key struct{ id, partition string }
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (key, error) {
		var k key
		return k, r.Scan(&k.id, &k.partition)
	})
	require.NoError(t, err)
	var out []cartview.Row
	for _, k := range keys {
		agg, err := store.AggregateStream(ctx, es, codec, store.StreamID(k.id), cart.InitialState(), cart.Evolve,
			store.AggregateOptions{Partition: k.partition})
		require.NoError(t, err)
		out = append(out, cartview.RowFromState(k.partition, k.id, agg.State))
	}
	slices.SortFunc(out, func(a, b cartview.Row) int {
		return strings.Compare(a.Partition+"\x00"+a.TenantID+"\x00"+a.CartID, b.Partition+"\x00"+b.TenantID+"\x00"+b.CartID)
	})
	return out
}

func readModel(t testing.TB, pool *pgxpool.Pool) []cartview.Row {
	t.Helper()
	rows, err := cartview.ReadRows(testCtx(t), pool)
	require.NoError(t, err)
	return rows
}

func eventCount(t testing.TB, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM messages WHERE NOT is_archived`).Scan(&n))
	return n
}

// Must show: `projections rebuild` shows progress and leaves the read model
// equal to a from-scratch fold, whatever state it was in.
func TestProjectionsRebuildEqualsFold(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	seedCarts(t, es, []string{"acme", "globex"}, 10)
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	// First build, from nothing (the table is created on demand).
	r := ok(t, invocation{}, db("projections", "rebuild", "carts")...)
	events := eventCount(t, pool)
	require.Contains(t, r.stdout, fmt.Sprintf("rebuilt projection carts: %d events replayed", events))
	want := foldRows(t, pool)
	require.Len(t, want, 20)
	require.Equal(t, want, readModel(t, pool))

	// Damage the read model, and write more events.
	ctx := testCtx(t)
	_, err := pool.Exec(ctx, `UPDATE carts SET currency = 'XXX', is_cancelled = NOT is_cancelled WHERE cart_id = 'cart-1'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM carts WHERE cart_id = 'cart-2' AND partition = 'acme'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO carts (tenant_id, cart_id, partition, currency) VALUES ('acme', 'ghost', 'acme', 'EUR')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE snapshots SET snapshot = '{"status":"cancelled"}' WHERE stream_id LIKE '%cart-3%'`)
	require.NoError(t, err)
	appendCart(t, es, cartCodec(t),
		cart.CreateCart{TenantID: "initech", CartID: "late", Currency: "GBP"},
		cart.AddItem{TenantID: "initech", CartID: "late", Item: item("z", 100, 3)},
		cart.CheckoutCart{TenantID: "initech", CartID: "late", OrderID: "o-late"})
	require.NotEqual(t, foldRows(t, pool), readModel(t, pool))

	stderr := &syncBuffer{}
	r = ok(t, invocation{stderr: stderr}, db("projections", "rebuild", "carts", "--batch-size", "7")...)
	events = eventCount(t, pool)
	require.Contains(t, r.stdout, fmt.Sprintf("rebuilt projection carts: %d events replayed", events))
	frames := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\r")
	require.GreaterOrEqual(t, len(frames), 3, "progress: %q", r.stderr)
	require.Contains(t, frames[1], "rebuild carts [")
	require.Contains(t, frames[1], fmt.Sprintf("  0%%  0/%d events", events))
	require.Contains(t, frames[len(frames)-1], fmt.Sprintf("100%%  %d/%d events", events, events))
	require.True(t, strings.HasSuffix(r.stderr, "\n"))
	require.Equal(t, foldRows(t, pool), readModel(t, pool))

	// status reports the projection, caught up.
	r = ok(t, invocation{}, db("projections", "status")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	require.Regexp(t, `^NAME\s+PARTITION\s+STATE\s+CHECKPOINT\s+LAG\s+LAST ERROR$`, lines[0])
	var lastGlobal int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(global_position) FROM messages`).Scan(&lastGlobal))
	require.Regexp(t, fmt.Sprintf(`^carts\s+\*\s+stopped\s+%d\s+0\s+-$`, lastGlobal), lines[1])
}

// Ctrl-C during a rebuild stops it between batches with status 1 and a
// message; the next rebuild starts over and completes.
func TestProjectionsRebuildCancel(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	codec := cartCodec(t)
	// 80 carts of 5 events, written one append per cart.
	for i := range 80 {
		id := fmt.Sprintf("c%d", i)
		meta := cart.EventMeta{TenantID: "acme", CartID: id, Version: 1}
		evs := []any{cart.CartCreated{EventData: cart.CartCreatedData{Currency: "EUR"}, EventMeta: meta}}
		for j := range 3 {
			evs = append(evs, cart.ItemAddedToCart{EventData: cart.ItemAddedToCartData{Item: item(fmt.Sprint(j), 100, 1)}, EventMeta: meta})
		}
		evs = append(evs, cart.CartCheckedOut{EventData: cart.CartCheckedOutData{OrderID: "o", Total: cart.NewDecimal(300, 2)}, EventMeta: meta})
		data, err := store.Encode(codec, evs...)
		require.NoError(t, err)
		_, err = es.AppendToStream(testCtx(t), store.StreamID(id), data, store.AppendOptions{Partition: "acme", StreamType: cart.StreamType})
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	stderr := &syncBuffer{onWrite: func(p []byte) {
		if strings.Contains(string(p), "rebuild carts [") {
			cancel() // as Ctrl-C would, once the progress bar shows
		}
	}}
	r := troupe(t, invocation{ctx: ctx, stderr: stderr}, "--database-url", url, "projections", "rebuild", "carts", "--batch-size", "5")
	require.Equal(t, exitError, r.code, r.stderr)
	require.Regexp(t, `troupe: error: rebuild of carts cancelled after \d+ of 400 events`, r.stderr)
	require.Contains(t, r.stderr, "the read model is consistent with its checkpoint")

	st, err := projection.LoadStatus(testCtx(t), pool, cartview.DefaultName, projection.AllPartitions)
	require.NoError(t, err)
	require.Positive(t, st.LagEvents, "a cancelled rebuild leaves events to apply")
	require.False(t, st.Active)

	r = ok(t, invocation{}, "--database-url", url, "projections", "rebuild", "carts", "--batch-size", "100")
	require.Contains(t, r.stdout, "400 events replayed")
	require.Equal(t, foldRows(t, pool), readModel(t, pool))
}

func TestProjectionsRebuildUnknown(t *testing.T) {
	t.Parallel()
	url, _ := migratedDB(t)
	r := troupe(t, invocation{}, "--database-url", url, "projections", "rebuild", "orders")
	require.Equal(t, exitError, r.code)
	require.Contains(t, r.stderr, `projection "orders" is not known to this binary (it can rebuild: carts)`)
}

// status lists every projection and consumer from the tables, with lag
// and the error of a failed one, in a table or JSON.
func TestProjectionsStatus(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	ctx := testCtx(t)
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	r := ok(t, invocation{}, db("projections", "status")...)
	require.Equal(t, "no projections have run on this database\n", r.stdout)

	tick := func(stream string, n int) store.AppendResult {
		evs := make([]store.EventData, n)
		for i := range evs {
			evs[i] = store.EventData{Type: "Tick", Data: json.RawMessage(`{}`)}
		}
		res, err := es.AppendToStream(ctx, store.StreamID(stream), evs, store.AppendOptions{Partition: "acme"})
		require.NoError(t, err)
		return res
	}
	last := tick("s1", 3)

	// A projection that caught up, then stopped.
	counter, err := projection.New(pool, &projection.Config{Name: "counter", Logger: quiet, Handlers: projection.Registry{
		"Tick": {func(context.Context, pgx.Tx, store.Event) error { return nil }}}})
	require.NoError(t, err)
	require.NoError(t, counter.Start(ctx))
	require.NoError(t, counter.WaitFor(ctx, last.LastPosition()))
	require.NoError(t, counter.Stop(ctx))

	// A projection limited to one partition that fails on its first event.
	failing, err := projection.New(pool, &projection.Config{Name: "fragile", Partition: "acme", Logger: quiet,
		Retry: projection.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond},
		Handlers: projection.Registry{"Tick": {func(context.Context, pgx.Tx, store.Event) error {
			return errors.New("boom:\nthe handler failed")
		}}}})
	require.NoError(t, err)
	runErr := failing.Run(ctx)
	require.ErrorIs(t, runErr, projection.ErrHandlerFailed)

	tick("s2", 2) // two events the counter has not seen

	r = ok(t, invocation{}, db("projections", "status")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, fmt.Sprintf(`^counter\s+\*\s+stopped\s+%d\s+2 events \(\d.*\)\s+-$`, last.LastGlobalPosition), lines[1])
	require.Regexp(t, `^fragile\s+acme\s+failed\s+0\s+5 events \(.*\)\s+boom: the handler failed at Tick@acme/s1#1$`, lines[2])

	r = ok(t, invocation{}, db("projections", "status", "--format", "json")...)
	var sts []statusJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sts))
	require.Len(t, sts, 2)
	require.Equal(t, "counter", sts[0].Name)
	require.Equal(t, "stopped", sts[0].State)
	require.Equal(t, int64(last.LastGlobalPosition), sts[0].Checkpoint.GlobalPosition)
	require.Equal(t, int64(2), sts[0].LagEvents)
	require.Equal(t, "fragile", sts[1].Name)
	require.Equal(t, "acme", sts[1].Partition)
	require.Equal(t, "failed", sts[1].State)
	require.Contains(t, sts[1].Error, "boom")
	require.NotNil(t, sts[1].FailedAt)
}
