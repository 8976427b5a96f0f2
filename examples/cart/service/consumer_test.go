package service_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/store"
)

// The seed's consumer scenario on Troupe: a consumer subscribed to cart
// events sees what the API writes. It counts checkouts per tenant in a
// table of its own, in the transaction that moves its checkpoint, so a
// restarted consumer neither misses nor recounts one.
func TestConsumerCountsCheckouts(t *testing.T) {
	t.Parallel()
	e := newPG(t)
	ctx := testCtx(t)
	_, err := e.pool.Exec(ctx, `CREATE TABLE checkout_counts (tenant text PRIMARY KEY, n int NOT NULL)`)
	require.NoError(t, err)

	var all atomic.Int64
	newConsumer := func() *consumer.Consumer {
		c, err := consumer.New(e.pool, &consumer.Config{Name: "checkout-counter", PollInterval: 50 * time.Millisecond, Logger: quietLogger()})
		require.NoError(t, err)
		c.Subscribe(cart.TypeCartCheckedOut, func(ctx context.Context, tx pgx.Tx, ev store.Event) error {
			_, err := tx.Exec(ctx, `INSERT INTO checkout_counts (tenant, n) VALUES ($1, 1)
				ON CONFLICT (tenant) DO UPDATE SET n = checkout_counts.n + 1`, ev.Partition)
			return err
		})
		c.SubscribeToAll(func(_ context.Context, _ pgx.Tx, ev store.Event) error {
			all.Add(1)
			return nil
		})
		require.NoError(t, c.Start(ctx))
		return c
	}
	counts := func() map[string]int {
		rows, err := e.pool.Query(ctx, `SELECT tenant, n FROM checkout_counts`)
		require.NoError(t, err)
		m, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (kv [2]any, err error) {
			var k string
			var n int
			err = r.Scan(&k, &n)
			return [2]any{k, n}, err
		})
		require.NoError(t, err)
		out := map[string]int{}
		for _, kv := range m {
			out[kv[0].(string)] = kv[1].(int)
		}
		return out
	}
	checkout := func(tenant string) store.Position {
		cartID, _ := e.createCart(t, tenant)
		e.must(t, http.StatusCreated, "PUT", "/api/tenants/"+tenant+"/carts/"+cartID+"/items",
			`{"action":"add","item":{"sku":"A","name":"a","unitPrice":3,"quantity":1}}`)
		r := e.must(t, http.StatusCreated, "PUT", "/api/tenants/"+tenant+"/carts/"+cartID+"/checkout", "")
		pos, err := service.ParsePosition(r["position"].(string))
		require.NoError(t, err)
		return pos
	}

	c := newConsumer()
	e.createTenant(t, "acme")
	e.createTenant(t, "globex")
	checkout("acme")
	checkout("globex")
	cancelled, _ := e.createCart(t, "acme")
	e.must(t, http.StatusCreated, "PUT", "/api/tenants/acme/carts/"+cancelled+"/cancel", `{"reason":"no"}`)
	last := checkout("acme")

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, c.WaitFor(wctx, last))
	require.Equal(t, map[string]int{"acme": 2, "globex": 1}, counts())
	require.EqualValues(t, e.eventCount(t), all.Load(), "the consumer saw every event once")
	require.NoError(t, c.Stop(ctx))

	// Restarted, it goes on from its checkpoint.
	c = newConsumer()
	last = checkout("globex")
	require.NoError(t, c.WaitFor(wctx, last))
	require.Equal(t, map[string]int{"acme": 2, "globex": 2}, counts())
	require.EqualValues(t, e.eventCount(t), all.Load())
	require.NoError(t, c.Stop(ctx))
}
