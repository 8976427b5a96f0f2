package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

// FuzzAPI sends arbitrary bodies, ids and waitFor tokens to every route of
// a service on the in-memory store: it never answers 500 or panics, every
// error is a JSON {"error"}, and a request answered with an error appends
// nothing. (The same bad inputs against PostgreSQL are TestBadInput.)
func FuzzAPI(f *testing.F) {
	svc, err := service.New(context.Background(), service.Config{Logger: quietLogger(),
		WaitTimeout: 5 * time.Millisecond, MaxWaitTimeout: 10 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := svc.Stop(ctx); err != nil {
			f.Error(err)
		}
	})
	h := svc.Handler()
	serve := func(method, target string, body []byte) *httptest.ResponseRecorder {
		req, err := http.NewRequestWithContext(context.Background(), method, "http://cart.test"+target, bytes.NewReader(body))
		if err != nil {
			return nil
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// A tenant and a cart to aim at.
	serve("POST", "/api/tenants", []byte(`{"tenantId":"acme","name":"Acme"}`))
	rec := serve("POST", "/api/tenants/acme/carts", []byte(`{"currency":"USD"}`))
	var created struct{ CartID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil || created.CartID == "" {
		f.Fatalf("create cart: %d %s", rec.Code, rec.Body)
	}
	serve("PUT", "/api/tenants/acme/carts/"+created.CartID+"/items",
		[]byte(`{"action":"add","item":{"sku":"A","name":"a","unitPrice":1,"quantity":2}}`))
	es := svc.Store().(*memory.Store)
	var seen store.Position
	appended := func() int {
		res, err := es.ReadAll(context.Background(), store.ReadAllOptions{After: seen})
		if err != nil {
			f.Fatal(err)
		}
		seen = res.Next
		return len(res.Events)
	}
	appended()

	for _, s := range decoderSeedsForAPI {
		for route := range uint8(len(routes)) {
			f.Add(route, "", []byte(s), "")
		}
	}
	f.Add(uint8(3), created.CartID, []byte(nil), "1.1")
	f.Add(uint8(1), service.TenantUUID("acme"), []byte(nil), "")
	f.Add(uint8(4), "nobody", []byte(`{"action":"remove","sku":"A","quantity":1}`), "")
	f.Add(uint8(4), "../../x", []byte(`{}`), "9.9")

	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte, waitFor string) {
		r := routes[int(route)%len(routes)]
		tenant, cartID := "acme", created.CartID
		if id != "" {
			if route%2 == 0 {
				tenant = id
			} else {
				cartID = id
			}
		}
		target := strings.NewReplacer("{t}", url.PathEscape(tenant), "{c}", url.PathEscape(cartID), "{id}", url.PathEscape(id)).Replace(r.path)
		if waitFor != "" {
			target += "?waitFor=" + url.QueryEscape(waitFor)
		}
		rec := serve(r.method, target, body)
		if rec == nil {
			return
		}
		n := appended()
		if rec.Code >= 500 && !(rec.Code == http.StatusServiceUnavailable && strings.Contains(rec.Body.String(), "has not reached position")) {
			t.Fatalf("%s %s %q → %d %s", r.method, target, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s %q → %d with body %q, not a JSON error", r.method, target, body, rec.Code, rec.Body)
			}
			if n != 0 {
				t.Fatalf("%s %s %q → %d but appended %d events", r.method, target, body, rec.Code, n)
			}
		} else if rec.Code >= 300 {
			// ServeMux redirects unclean paths ("/carts/./cancel") to
			// their clean form.
			if rec.Header().Get("Location") == "" || n != 0 {
				t.Fatalf("%s %s → %d without Location, or appending %d events", r.method, target, rec.Code, n)
			}
		} else if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s → %d with invalid JSON %q", r.method, target, rec.Code, rec.Body)
		}
	})
}

var routes = []struct{ method, path string }{
	{"POST", "/api/tenants"},
	{"GET", "/api/tenants/{id}"},
	{"POST", "/api/tenants/{t}/carts"},
	{"GET", "/api/tenants/{t}/carts/{c}"},
	{"PUT", "/api/tenants/{t}/carts/{c}/items"},
	{"PUT", "/api/tenants/{t}/carts/{c}/empty"},
	{"PUT", "/api/tenants/{t}/carts/{c}/checkout"},
	{"PUT", "/api/tenants/{t}/carts/{c}/cancel"},
	{"GET", "/api/tenants/{t}/carts"},
}

var decoderSeedsForAPI = []string{
	``, `{}`, `null`, `[1]`, `{"currency":"USD"}`, `{"tenantId":"t1","name":"T"}`,
	`{"action":"add","item":{"sku":"B","name":"b","unitPrice":"0.10","quantity":3}}`,
	`{"action":"remove","sku":"A","quantity":1}`, `{"action":"remove","sku":"A","quantity":5}`,
	`{"reason":"x"}`, `{"orderId":"8c0f6d5c-8d2e-4c41-9c1f-3f3a3d3b6a55","total":2}`,
	`{"action":"add","item":{"sku":"A","name":"a","unitPrice":1,"quantity":9223372036854775807}}`,
	`{"currency":"\u0000"}`, `{"action":"add","item":{"sku":"A","name":"a","unitPrice":-1,"quantity":1}}`,
}
