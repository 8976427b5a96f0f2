package service_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/troupetest"
)

func cartCodec(t testing.TB) *store.JSONCodec {
	t.Helper()
	c := store.NewJSONCodec()
	require.NoError(t, cart.RegisterEvents(c))
	return c
}

func meta(tenant, cartID string) cart.EventMeta {
	return cart.EventMeta{TenantID: tenant, CartID: cartID, Version: cart.EventSchemaVersion}
}

func created(tenant, cartID string) cart.CartCreated {
	return cart.CartCreated{EventData: cart.CartCreatedData{Currency: "USD"}, EventMeta: meta(tenant, cartID)}
}

func added(tenant, cartID, sku string, qty int, cents int64) cart.ItemAddedToCart {
	return cart.ItemAddedToCart{EventData: cart.ItemAddedToCartData{Item: cart.Item{SKU: sku, Name: "item " + sku,
		UnitPrice: cart.NewDecimal(cents, 2), Quantity: qty}}, EventMeta: meta(tenant, cartID)}
}

const selectCartRows = `SELECT tenant_id, cart_id, currency, items_json, is_checked_out, is_cancelled, total, order_id
FROM carts ORDER BY tenant_id, cart_id`

// The carts projection, given cart events: one row per cart and tenant,
// holding the fold of the cart's events.
func TestCartsProjectionScenario(t *testing.T) {
	t.Parallel()
	pool := troupetest.NewPool(t)
	require.NoError(t, service.EnsureSchema(testCtx(t), pool))
	p, err := service.NewProjection(pool, &service.ProjectionConfig{PollInterval: 100 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	cartStream := func(tenant, id string, events ...any) troupetest.Events {
		return troupetest.Stream(id, events...).In(tenant).OfType(cart.StreamType)
	}
	troupetest.New(t, pool, &troupetest.Config{Codec: cartCodec(t), Projections: []*projection.Projection{p}}).
		Given(
			cartStream("acme", "c-1", created("acme", "c-1"), added("acme", "c-1", "A", 2, 250), added("acme", "c-1", "B", 1, 100),
				cart.ItemRemovedFromCart{EventData: cart.ItemRemovedFromCartData{SKU: "A", Quantity: 1}, EventMeta: meta("acme", "c-1")}),
			cartStream("acme", "c-2", created("acme", "c-2"), added("acme", "c-2", "A", 1, 250),
				cart.CartCheckedOut{EventData: cart.CartCheckedOutData{OrderID: "o-1", Total: cart.NewDecimal(250, 2)}, EventMeta: meta("acme", "c-2")}),
			cartStream("globex", "c-1", created("globex", "c-1"),
				cart.CartCancelled{EventData: cart.CartCancelledData{Reason: "no"}, EventMeta: meta("globex", "c-1")}),
		).
		ThenRows(selectCartRows, troupetest.Rows{
			{"acme", "c-1", "USD", []cart.Item{added("", "", "A", 1, 250).EventData.Item, added("", "", "B", 1, 100).EventData.Item}, false, false, nil, nil},
			{"acme", "c-2", "USD", []cart.Item{added("", "", "A", 1, 250).EventData.Item}, true, false, "2.5", "o-1"},
			{"globex", "c-1", "USD", []cart.Item{}, false, true, nil, nil},
		})
}

// httpStatus is a When step's error: the service answered with this
// status instead of 201.
type httpStatus int

func (s httpStatus) Error() string { return fmt.Sprintf("HTTP status %d", int(s)) }

// request returns a When step sending one request to the service.
func request(e *env, method, path, body string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := e.client.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			return httpStatus(res.StatusCode)
		}
		return nil
	}
}

// The whole service: given a cart's events in the store, a request sends
// a command through the service's actor host, which appends its events,
// and the carts read model shows them; a refused command appends nothing.
func TestCartServiceScenario(t *testing.T) {
	t.Parallel()
	e := newPG(t)
	e.createTenant(t, "acme")
	id := uuid.NewString()
	items := "/api/tenants/acme/carts/" + id + "/items"
	troupetest.New(t, e.pool, &troupetest.Config{Codec: cartCodec(t), Store: e.svc.Store(), WaitFor: []troupetest.Waiter{e.svc}}).
		Given(troupetest.Stream(id, created("acme", id), added("acme", id, "A", 1, 250)).In("acme").OfType(cart.StreamType)).
		When(request(e, "PUT", items, `{"action":"add","item":{"sku":"B","name":"item B","unitPrice":1.00,"quantity":3}}`)).
		ThenEvents(troupetest.Stream(id, added("acme", id, "B", 3, 100)).In("acme")).
		ThenRows(`SELECT items_json, is_checked_out FROM carts WHERE cart_id = $1`, troupetest.Rows{
			{[]cart.Item{added("", "", "A", 1, 250).EventData.Item, added("", "", "B", 3, 100).EventData.Item}, false},
		}, id).
		When(request(e, "PUT", items, `{"action":"remove","sku":"C","quantity":1}`)).
		ThenError(httpStatus(http.StatusConflict)).
		ThenEvents(troupetest.Stream(id, added("acme", id, "B", 3, 100)).In("acme"))
}
