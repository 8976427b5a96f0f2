package service_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/examples/cart/service"
)

func dec(t testing.TB, s string) cart.Decimal {
	t.Helper()
	d, err := cart.ParseDecimal(s)
	require.NoError(t, err)
	return d
}

// The seed's shopping-cart scenario: add SKU-123 ×2 @25 and SKU-456 ×1 @15,
// remove one SKU-123, check out: total 40, order id set, read model shows it.
func TestSeedScenario(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, pos := e.createCart(t, "acme")
		_, err := uuid.Parse(cartID)
		require.NoError(t, err, "cart id %q is not a UUID", cartID)

		v := e.getCart(t, "acme", cartID, pos)
		require.Equal(t, service.CartView{TenantID: "acme", CartID: cartID, Currency: "USD", Items: []cart.Item{}}, v)

		items := "/api/tenants/acme/carts/" + cartID + "/items"
		add1 := e.must(t, http.StatusCreated, "PUT", items,
			`{"action":"add","item":{"sku":"SKU-123","name":"Item 123","unitPrice":25,"quantity":2}}`)
		require.Equal(t, "OK", add1["message"])
		require.EqualValues(t, 2, add1["version"])
		add2 := e.must(t, http.StatusCreated, "PUT", items,
			`{"action":"add","item":{"sku":"SKU-456","name":"Item 456","unitPrice":15,"quantity":1}}`)
		require.EqualValues(t, 3, add2["version"])
		require.Greater(t, add2["globalPosition"].(float64), add1["globalPosition"].(float64))
		rm := e.must(t, http.StatusCreated, "PUT", items, `{"action":"remove","sku":"SKU-123","quantity":1}`)
		require.EqualValues(t, 4, rm["version"])

		v = e.getCart(t, "acme", cartID, rm["position"].(string))
		require.Equal(t, []cart.Item{
			{SKU: "SKU-123", Name: "Item 123", UnitPrice: dec(t, "25"), Quantity: 1},
			{SKU: "SKU-456", Name: "Item 456", UnitPrice: dec(t, "15"), Quantity: 1},
		}, v.Items)
		require.False(t, v.IsCheckedOut)
		require.Nil(t, v.Total)

		co := e.must(t, http.StatusCreated, "PUT", "/api/tenants/acme/carts/"+cartID+"/checkout", "")
		require.Equal(t, "Checked out", co["message"])
		require.EqualValues(t, 40, co["total"])
		orderID := co["orderId"].(string)
		_, err = uuid.Parse(orderID)
		require.NoError(t, err)
		require.EqualValues(t, 5, co["version"])

		v = e.getCart(t, "acme", cartID, co["position"].(string))
		require.True(t, v.IsCheckedOut)
		require.False(t, v.IsCancelled)
		require.NotNil(t, v.Total)
		require.Equal(t, "40", v.Total.String())
		require.Equal(t, orderID, v.OrderID)
		require.Len(t, v.Items, 2)

		// The raw body has exactly the seed's fields (plus total and
		// orderId once checked out), items as numbers.
		raw := e.must(t, http.StatusOK, "GET", "/api/tenants/acme/carts/"+cartID, "")
		require.ElementsMatch(t, []string{"tenantId", "cartId", "currency", "items", "isCheckedOut", "isCancelled", "total", "orderId"}, keys(raw))
		require.EqualValues(t, 25, raw["items"].([]any)[0].(map[string]any)["unitPrice"])

		// A checked-out cart takes no more commands.
		r := e.do(t, "PUT", items, `{"action":"add","item":{"sku":"X","name":"x","unitPrice":1,"quantity":1}}`)
		require.Equal(t, http.StatusConflict, r.Status)
		require.Equal(t, "Cart is not active", r.Error(t))
		require.EqualValues(t, 5, e.streamVersion(t, "acme", cartID))

		if e.pool != nil {
			// The read-model row itself, as the seed's test reads it.
			var currency, itemsJSON, total, order string
			var checkedOut, cancelled bool
			require.NoError(t, e.pool.QueryRow(testCtx(t), `SELECT currency, items_json::text, total::text, order_id,
				is_checked_out, is_cancelled FROM carts WHERE tenant_id = 'acme' AND cart_id = $1 AND partition = 'acme'`, cartID).
				Scan(&currency, &itemsJSON, &total, &order, &checkedOut, &cancelled))
			require.Equal(t, "USD", currency)
			require.JSONEq(t, `[{"sku":"SKU-123","name":"Item 123","unitPrice":25,"quantity":1},
				{"sku":"SKU-456","name":"Item 456","unitPrice":15,"quantity":1}]`, itemsJSON)
			require.Equal(t, "40", total)
			require.Equal(t, orderID, order)
			require.True(t, checkedOut)
			require.False(t, cancelled)
			// Snapshot-table variant: the state lives in snapshots.
			var n int
			require.NoError(t, e.pool.QueryRow(testCtx(t), `SELECT count(*) FROM snapshots
				WHERE readmodel_table_name = 'carts' AND stream_id = $1 AND last_stream_position = 5`,
				"cart_id:"+cartID+"|partition:acme|tenant_id:acme").Scan(&n))
			require.Equal(t, 1, n)
		}
	})
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestEmptyCart(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, _ := e.createCart(t, "acme")
		base := "/api/tenants/acme/carts/" + cartID
		e.must(t, http.StatusCreated, "PUT", base+"/items", `{"action":"add","item":{"sku":"A","name":"a","unitPrice":"19.99","quantity":3}}`)
		emptied := e.must(t, http.StatusCreated, "PUT", base+"/empty", "")
		require.Equal(t, "Emptied", emptied["message"])
		v := e.getCart(t, "acme", cartID, emptied["position"].(string))
		require.Empty(t, v.Items)
		require.NotNil(t, v.Items, "items is [] not null")
		// An empty object body is fine too; the cart stays active.
		e.must(t, http.StatusCreated, "PUT", base+"/empty", `{}`)
		e.must(t, http.StatusCreated, "PUT", base+"/items", `{"action":"add","item":{"sku":"B","name":"b","unitPrice":0.1,"quantity":3}}`)
		co := e.must(t, http.StatusCreated, "PUT", base+"/checkout", "")
		require.EqualValues(t, 0.3, co["total"])
		v = e.getCart(t, "acme", cartID, co["position"].(string))
		require.Equal(t, "0.3", v.Total.String())
	})
}

func TestCheckoutEmptyCartTotalZero(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, _ := e.createCart(t, "acme")
		co := e.must(t, http.StatusCreated, "PUT", "/api/tenants/acme/carts/"+cartID+"/checkout", "")
		require.EqualValues(t, 0, co["total"])
		v := e.getCart(t, "acme", cartID, co["position"].(string))
		require.True(t, v.IsCheckedOut)
		require.Equal(t, "0", v.Total.String())
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, _ := e.createCart(t, "acme")
		base := "/api/tenants/acme/carts/" + cartID
		c := e.must(t, http.StatusCreated, "PUT", base+"/cancel", `{"reason":"Customer requested"}`)
		require.Equal(t, "Cancelled", c["message"])
		v := e.getCart(t, "acme", cartID, c["position"].(string))
		require.True(t, v.IsCancelled)
		require.False(t, v.IsCheckedOut)
		require.Nil(t, v.Total)
		require.Empty(t, v.OrderID)
		for _, step := range []struct{ path, body string }{
			{"/cancel", `{"reason":"again"}`},
			{"/checkout", ""},
			{"/empty", ""},
			{"/items", `{"action":"remove","sku":"A","quantity":1}`},
		} {
			r := e.do(t, "PUT", base+step.path, step.body)
			require.Equal(t, http.StatusConflict, r.Status, "%s: %s", step.path, r.Body)
			require.Equal(t, "Cart is not active", r.Error(t))
		}
		require.EqualValues(t, 2, e.streamVersion(t, "acme", cartID))
	})
}

// Tenant B can neither see nor touch tenant A's cart, by tenantId or by
// the tenant's UUID.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "tenant-a")
		e.createTenant(t, "tenant-b")
		cartID, pos := e.createCart(t, "tenant-a")
		add := e.must(t, http.StatusCreated, "PUT", "/api/tenants/tenant-a/carts/"+cartID+"/items",
			`{"action":"add","item":{"sku":"A","name":"a","unitPrice":5,"quantity":1}}`)
		e.getCart(t, "tenant-a", cartID, add["position"].(string))
		before := e.eventCount(t)

		for _, b := range []string{"tenant-b", service.TenantUUID("tenant-b")} {
			r := e.do(t, "GET", "/api/tenants/"+b+"/carts/"+cartID+"?waitFor="+pos, "")
			require.Equal(t, http.StatusNotFound, r.Status, "%s", r.Body)
			require.Contains(t, r.Error(t), "not found")
			list := e.do(t, "GET", "/api/tenants/"+b+"/carts", "")
			require.Equal(t, http.StatusOK, list.Status)
			require.JSONEq(t, `[]`, string(list.Body))
			for _, w := range []struct{ path, body string }{
				{"/items", `{"action":"add","item":{"sku":"B","name":"b","unitPrice":1,"quantity":1}}`},
				{"/items", `{"action":"remove","sku":"A","quantity":1}`},
				{"/empty", ""},
				{"/checkout", ""},
				{"/cancel", `{"reason":"mine now"}`},
			} {
				r := e.do(t, "PUT", "/api/tenants/"+b+"/carts/"+cartID+w.path, w.body)
				require.Equal(t, http.StatusNotFound, r.Status, "%s %s", w.path, r.Body)
				require.Equal(t, "cart "+cartID+" not found in tenant \"tenant-b\"", r.Error(t))
			}
		}
		require.Equal(t, before, e.eventCount(t), "a rejected request appended events")
		require.EqualValues(t, 2, e.streamVersion(t, "tenant-a", cartID))
		require.EqualValues(t, 0, e.streamVersion(t, "tenant-b", cartID))
		v := e.getCart(t, "tenant-a", cartID, add["position"].(string))
		require.Len(t, v.Items, 1)
		// The tenant's UUID works in cart paths too (the seed's clients
		// use it there).
		v = e.getCart(t, service.TenantUUID("tenant-a"), cartID, add["position"].(string))
		require.Equal(t, "tenant-a", v.TenantID)
		if e.pool != nil {
			// Each tenant's rows sit in its own partition of carts.
			var n int
			require.NoError(t, e.pool.QueryRow(testCtx(t), `SELECT count(*) FROM carts_t_tenant_0a WHERE cart_id = $1`, cartID).Scan(&n))
			require.Equal(t, 1, n)
			require.NoError(t, e.pool.QueryRow(testCtx(t), `SELECT count(*) FROM carts_t_tenant_0b`).Scan(&n))
			require.Equal(t, 0, n)
		}
	})
}

func TestTenants(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		created := e.must(t, http.StatusCreated, "POST", "/api/tenants", `{"tenantId":"globex","name":"Globex Corporation"}`)
		require.Equal(t, map[string]any{"id": service.TenantUUID("globex"), "tenantId": "globex", "name": "Globex Corporation"}, created)
		e.createTenant(t, "acme")

		byTenantID := e.must(t, http.StatusOK, "GET", "/api/tenants/globex", "")
		require.Equal(t, created, byTenantID)
		byID := e.must(t, http.StatusOK, "GET", "/api/tenants/"+created["id"].(string), "")
		require.Equal(t, created, byID)

		list := e.do(t, "GET", "/api/tenants", "")
		require.Equal(t, http.StatusOK, list.Status)
		require.JSONEq(t, `[{"id":"`+service.TenantUUID("acme")+`","tenantId":"acme","name":"Tenant acme"},
			{"id":"`+created["id"].(string)+`","tenantId":"globex","name":"Globex Corporation"}]`, string(list.Body))

		dup := e.do(t, "POST", "/api/tenants", `{"tenantId":"globex","name":"Other"}`)
		require.Equal(t, http.StatusConflict, dup.Status)
		require.Equal(t, `tenant "globex" already exists`, dup.Error(t))
		require.Equal(t, "Globex Corporation", e.must(t, http.StatusOK, "GET", "/api/tenants/globex", "")["name"])

		r := e.do(t, "GET", "/api/tenants/initech", "")
		require.Equal(t, http.StatusNotFound, r.Status)
		require.Equal(t, `tenant "initech" not found`, r.Error(t))
		r = e.do(t, "GET", "/api/tenants/"+service.TenantUUID("initech"), "")
		require.Equal(t, http.StatusNotFound, r.Status)

		if e.pool != nil {
			// Creating a tenant created its partitions, the carts read
			// model's included.
			var n int
			require.NoError(t, e.pool.QueryRow(testCtx(t), `SELECT count(*) FROM pg_inherits i
				JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname IN ('carts_t_globex', 'messages_t_globex', 'streams_t_globex')`).Scan(&n))
			require.Equal(t, 3, n)
		}
	})
}

// The seed's clients send {"orderId", "total"} to checkout and a text/plain
// content type; both work unchanged.
func TestSeedClientBodies(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, _ := e.createCart(t, "acme")
		base := "/api/tenants/acme/carts/" + cartID
		e.must(t, http.StatusCreated, "PUT", base+"/items", `{"action":"add","item":{"sku":"SKU-123","name":"Test Item","unitPrice":25,"quantity":1}}`)
		orderID := uuid.NewString()
		co := e.must(t, http.StatusCreated, "PUT", base+"/checkout", `{"orderId":"`+orderID+`","total":25}`)
		require.Equal(t, orderID, co["orderId"])
		v := e.getCart(t, "acme", cartID, co["position"].(string))
		require.Equal(t, orderID, v.OrderID)
		require.Equal(t, "25", v.Total.String())
	})
}

// A read with ?waitFor sees the write that returned the token, every time.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, _ := e.createCart(t, "acme")
		for i := 1; i <= 25; i++ {
			w := e.must(t, http.StatusCreated, "PUT", "/api/tenants/acme/carts/"+cartID+"/items",
				`{"action":"add","item":{"sku":"A","name":"a","unitPrice":1,"quantity":1}}`)
			v := e.getCart(t, "acme", cartID, w["position"].(string))
			require.Len(t, v.Items, 1)
			require.Equal(t, i, v.Items[0].Quantity, "read %d did not see its write", i)
			list := e.do(t, "GET", "/api/tenants/acme/carts?waitFor="+w["position"].(string), "")
			require.Equal(t, http.StatusOK, list.Status)
			var carts []service.CartView
			require.NoError(t, json.Unmarshal(list.Body, &carts))
			require.Len(t, carts, 1)
			require.Equal(t, i, carts[0].Items[0].Quantity, "list %d did not see its write", i)
		}
	})
}

// A position the read model never reaches answers 503 after the timeout.
func TestWaitForTimeout(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, _ := e.createCart(t, "acme")
		r := e.do(t, "GET", "/api/tenants/acme/carts/"+cartID+"?waitFor=99999999999.99999999&timeout=50ms", "")
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
		require.Contains(t, r.Error(t), "has not reached position 99999999999.99999999 within 50ms")
		require.Equal(t, "1", r.Header.Get("Retry-After"))
	})
}
