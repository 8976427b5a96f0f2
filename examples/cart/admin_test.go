package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/cli"
	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// adminResult is what one in-process `cart admin` run produced.
type adminResult struct {
	code           int
	stdout, stderr string
}

// cartAdmin runs `cart admin args...` in-process; stderr, when not nil,
// receives standard error as it is written.
func cartAdmin(ctx context.Context, stderr *syncBuffer, args ...string) adminResult {
	var stdout syncBuffer
	if stderr == nil {
		stderr = &syncBuffer{}
	}
	code := admin(ctx, args, strings.NewReader(""), &stdout, stderr, env(nil))
	return adminResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func adminOK(t *testing.T, args ...string) adminResult {
	t.Helper()
	r := cartAdmin(testCtx(t), nil, args...)
	require.Equal(t, cli.ExitOK, r.code, "cart admin %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// adminDB returns a fresh database migrated with `cart admin migrate`, and
// a pool and store on it.
func adminDB(t *testing.T) (string, *pgxpool.Pool, *postgres.Store) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	adminOK(t, "--database-url", url, "migrate")
	pool, err := pgxpool.New(testCtx(t), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return url, pool, es
}

func cartCodec(t testing.TB) *store.JSONCodec {
	t.Helper()
	c := store.NewJSONCodec()
	require.NoError(t, cart.RegisterEvents(c))
	return c
}

// appendCart decides cmds one after the other on the cart's stream (as the
// stateless handler would) and appends their events.
func appendCart(t *testing.T, es store.EventStore, codec store.Codec, cmds ...cart.Command) {
	t.Helper()
	ctx := testCtx(t)
	for _, cmd := range cmds {
		agg, err := store.AggregateStream(ctx, es, codec, store.StreamID(cmd.Cart()), cart.InitialState(), cart.Evolve,
			store.AggregateOptions{Partition: cmd.Tenant()})
		require.NoError(t, err)
		evs, err := cart.Decide(cmd, agg.State)
		require.NoError(t, err, "decide %T", cmd)
		vals := make([]any, len(evs))
		for i, e := range evs {
			vals[i] = e
		}
		data, err := store.Encode(codec, vals...)
		require.NoError(t, err)
		_, err = es.AppendToStream(ctx, store.StreamID(cmd.Cart()), data, store.AppendOptions{Partition: cmd.Tenant(),
			StreamType: cart.StreamType, ExpectedVersion: store.Exact(agg.CurrentVersion)})
		require.NoError(t, err)
	}
}

func item(sku string, cents int64, qty int) cart.Item {
	return cart.Item{SKU: sku, Name: "Item " + sku, UnitPrice: cart.NewDecimal(cents, 2), Quantity: qty}
}

// seedCarts writes n carts per tenant in assorted states: checked out,
// cancelled, emptied, with removed items, and open.
func seedCarts(t *testing.T, es store.EventStore, tenants []string, n int) {
	t.Helper()
	codec := cartCodec(t)
	for _, tenant := range tenants {
		for i := range n {
			id := fmt.Sprintf("cart-%d", i)
			cmds := []cart.Command{
				cart.CreateCart{TenantID: tenant, CartID: id, Currency: "EUR"},
				cart.AddItem{TenantID: tenant, CartID: id, Item: item("a", 1999, 2)},
				cart.AddItem{TenantID: tenant, CartID: id, Item: item("b", 550, 1)},
			}
			switch i % 5 {
			case 0:
				cmds = append(cmds, cart.CheckoutCart{TenantID: tenant, CartID: id, OrderID: "order-" + id})
			case 1:
				cmds = append(cmds, cart.CancelCart{TenantID: tenant, CartID: id, Reason: "changed mind"})
			case 2:
				cmds = append(cmds, cart.EmptyCart{TenantID: tenant, CartID: id})
			case 3:
				cmds = append(cmds, cart.RemoveItem{TenantID: tenant, CartID: id, SKU: "a", Quantity: 1},
					cart.CheckoutCart{TenantID: tenant, CartID: id, OrderID: "order-" + id})
			}
			appendCart(t, es, codec, cmds...)
		}
	}
}

// cartRow is one row of the carts table, as the test expects it: the
// total and order id only for checked-out carts.
type cartRow struct {
	Partition, TenantID, CartID, Currency string
	Total, OrderID                        string
	Items                                 []cart.Item
	IsCheckedOut, IsCancelled             bool
}

// foldRows returns the carts rows a from-scratch fold of every live cart
// stream gives, ordered as readModel orders them.
func foldRows(t *testing.T, pool *pgxpool.Pool, es store.EventStore) []cartRow {
	t.Helper()
	ctx := testCtx(t)
	rows, err := pool.Query(ctx, `SELECT stream_id, partition FROM streams WHERE NOT is_archived AND stream_type = $1`, cart.StreamType)
	require.NoError(t, err)
	type key struct{ id, partition string }
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (key, error) {
		var k key
		return k, r.Scan(&k.id, &k.partition)
	})
	require.NoError(t, err)
	var out []cartRow
	for _, k := range keys {
		agg, err := store.AggregateStream(ctx, es, cartCodec(t), store.StreamID(k.id), cart.InitialState(), cart.Evolve,
			store.AggregateOptions{Partition: k.partition})
		require.NoError(t, err)
		s := agg.State
		r := cartRow{Partition: k.partition, TenantID: k.partition, CartID: k.id, Currency: s.Currency, Items: s.Items,
			IsCheckedOut: s.Status == cart.StatusCheckedOut, IsCancelled: s.Status == cart.StatusCancelled}
		if r.Items == nil {
			r.Items = []cart.Item{}
		}
		if r.IsCheckedOut {
			r.Total, r.OrderID = s.Total.String(), s.OrderID
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b cartRow) int {
		return strings.Compare(a.Partition+"\x00"+a.TenantID+"\x00"+a.CartID, b.Partition+"\x00"+b.TenantID+"\x00"+b.CartID)
	})
	return out
}

// readModel returns the rows of the carts table.
func readModel(t *testing.T, pool *pgxpool.Pool) []cartRow {
	t.Helper()
	rows, err := pool.Query(testCtx(t), `SELECT partition, tenant_id, cart_id, coalesce(currency, ''), coalesce(total::text, ''),
       coalesce(order_id, ''), items_json::text, is_checked_out, is_cancelled FROM carts ORDER BY partition, tenant_id, cart_id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cartRow, error) {
		var c cartRow
		var items string
		if err := r.Scan(&c.Partition, &c.TenantID, &c.CartID, &c.Currency, &c.Total, &c.OrderID, &items,
			&c.IsCheckedOut, &c.IsCancelled); err != nil {
			return c, err
		}
		return c, json.Unmarshal([]byte(items), &c.Items)
	})
	require.NoError(t, err)
	return out
}

func eventCount(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM messages WHERE NOT is_archived`).Scan(&n))
	return n
}

// `cart admin projections rebuild carts` shows progress and leaves the
// carts table equal to a from-scratch fold, whatever state it was in.
func TestAdminRebuildCartsEqualsFold(t *testing.T) {
	t.Parallel()
	url, pool, es := adminDB(t)
	seedCarts(t, es, []string{"acme", "globex"}, 10)
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	// First build, from nothing (the table is created on demand).
	r := adminOK(t, db("projections", "rebuild", "carts")...)
	events := eventCount(t, pool)
	require.Contains(t, r.stdout, fmt.Sprintf("rebuilt projection carts: %d events replayed", events))
	want := foldRows(t, pool, es)
	require.Len(t, want, 20)
	require.Equal(t, want, readModel(t, pool))

	// Damage the read model, and write more events.
	ctx := testCtx(t)
	for _, sql := range []string{
		`UPDATE carts SET currency = 'XXX', is_cancelled = NOT is_cancelled WHERE cart_id = 'cart-1'`,
		`DELETE FROM carts WHERE cart_id = 'cart-2' AND partition = 'acme'`,
		`INSERT INTO carts (tenant_id, cart_id, partition, currency) VALUES ('acme', 'ghost', 'acme', 'EUR')`,
		`UPDATE snapshots SET snapshot = '{"status":"cancelled"}' WHERE stream_id LIKE '%cart-3%'`,
	} {
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	appendCart(t, es, cartCodec(t),
		cart.CreateCart{TenantID: "initech", CartID: "late", Currency: "GBP"},
		cart.AddItem{TenantID: "initech", CartID: "late", Item: item("z", 100, 3)},
		cart.CheckoutCart{TenantID: "initech", CartID: "late", OrderID: "o-late"})
	require.NotEqual(t, foldRows(t, pool, es), readModel(t, pool))

	r = adminOK(t, db("projections", "rebuild", "carts", "--batch-size", "7")...)
	events = eventCount(t, pool)
	require.Contains(t, r.stdout, fmt.Sprintf("rebuilt projection carts: %d events replayed", events))
	frames := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\r")
	require.GreaterOrEqual(t, len(frames), 3, "progress: %q", r.stderr)
	require.Contains(t, frames[1], "rebuild carts [")
	require.Contains(t, frames[len(frames)-1], fmt.Sprintf("100%%  %d/%d events", events, events))
	require.Equal(t, foldRows(t, pool, es), readModel(t, pool))

	// status reports the projection, caught up.
	r = adminOK(t, db("projections", "status")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	var lastGlobal int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(global_position) FROM messages`).Scan(&lastGlobal))
	require.Regexp(t, fmt.Sprintf(`^carts\s+\*\s+stopped\s+%d\s+0\s+-$`, lastGlobal), lines[1])
}

// Ctrl-C during a rebuild of carts stops it between batches; the next
// rebuild starts over and completes.
func TestAdminRebuildCartsCancel(t *testing.T) {
	t.Parallel()
	url, pool, es := adminDB(t)
	codec := cartCodec(t)
	for i := range 80 { // 80 carts of 5 events, one append per cart
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
	r := cartAdmin(ctx, stderr, "--database-url", url, "projections", "rebuild", "carts", "--batch-size", "5")
	require.Equal(t, cli.ExitError, r.code, r.stderr)
	require.Regexp(t, `cart admin: error: rebuild of carts cancelled after \d+ of 400 events`, r.stderr)

	st, err := projection.LoadStatus(testCtx(t), pool, "carts", projection.AllPartitions)
	require.NoError(t, err)
	require.Positive(t, st.LagEvents, "a cancelled rebuild leaves events to apply")

	r = adminOK(t, "--database-url", url, "projections", "rebuild", "carts", "--batch-size", "100")
	require.Contains(t, r.stdout, "400 events replayed")
	require.Equal(t, foldRows(t, pool, es), readModel(t, pool))
}

// The admin command is package cli under the cart binary: its help names
// it, and names other than carts are not rebuildable.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	r := adminOK(t, "--help")
	require.Contains(t, r.stdout, "Usage: cart admin <command>")
	r = adminOK(t, "projections", "rebuild", "--help")
	require.Contains(t, strings.Join(strings.Fields(r.stdout), " "), "Registered in this binary: carts (the carts read model of the cart service).")
	r = cartAdmin(testCtx(t), nil, "--database-url", pgtest.NewDatabase(t), "projections", "rebuild", "orders")
	require.Equal(t, cli.ExitError, r.code)
	require.Contains(t, r.stderr, `cart admin: error: projection "orders" is not registered in this binary (registered: carts)`)
}
