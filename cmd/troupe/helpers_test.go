package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// quiet is a logger for library components under test.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// result is what one in-process run of the command produced.
type result struct {
	code   int
	stdout string
	stderr string
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a
// progress bar and the command.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// onWrite, when set, sees every write.
	onWrite func(p []byte)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(p)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// invocation describes one run: its context, standard input and
// environment.
type invocation struct {
	ctx   context.Context
	stdin io.Reader
	env   map[string]string
	// stderr, when set, receives standard error (for tests reacting to
	// progress); result.stderr is still filled.
	stderr *syncBuffer
}

// troupe runs the command in-process with args.
func troupe(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	if inv.ctx == nil {
		inv.ctx = testCtx(t)
	}
	stdout := &syncBuffer{}
	stderr := inv.stderr
	if stderr == nil {
		stderr = &syncBuffer{}
	}
	getenv := func(k string) string { return inv.env[k] }
	code := run(inv.ctx, args, streams{In: inv.stdin, Out: stdout, Err: stderr}, getenv)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs the command and requires exit status 0.
func ok(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	r := troupe(t, inv, args...)
	require.Equal(t, exitOK, r.code, "troupe %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// testCtx returns a context ending with the test (or after two minutes).
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// migratedDB returns the connection string of a fresh database migrated
// with `troupe migrate`, and a pool on it.
func migratedDB(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	ok(t, invocation{}, "--database-url", url, "migrate")
	pool, err := pgxpool.New(testCtx(t), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return url, pool
}

func newStore(t testing.TB, pool *pgxpool.Pool) *postgres.Store {
	t.Helper()
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return es
}

// cartCodec returns a codec with the cart events registered.
func cartCodec(t testing.TB) *store.JSONCodec {
	t.Helper()
	c := store.NewJSONCodec()
	require.NoError(t, cart.RegisterEvents(c))
	return c
}

// appendCart decides cmds one after the other on the cart's stream (as the
// stateless handler would) and appends their events.
func appendCart(t testing.TB, es store.EventStore, codec store.Codec, cmds ...cart.Command) {
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

// item returns a cart item.
func item(sku string, cents int64, qty int) cart.Item {
	return cart.Item{SKU: sku, Name: "Item " + sku, UnitPrice: cart.NewDecimal(cents, 2), Quantity: qty}
}

// seedCarts writes n carts per tenant in assorted states: checked out,
// cancelled, emptied, with removed items, and open.
func seedCarts(t testing.TB, es store.EventStore, tenants []string, n int) {
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
