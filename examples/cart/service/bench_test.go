package service_test

import (
	"net/http"
	"testing"
)

// BenchmarkAddItem is one PUT …/items (add) over HTTP: decode, tenant
// lookup, the cached cart actor's decide and one append.
func BenchmarkAddItem(b *testing.B) {
	for _, store := range []string{"postgres", "memory"} {
		b.Run(store, func(b *testing.B) {
			e := benchEnv(b, store)
			e.createTenant(b, "acme")
			cartID, _ := e.createCart(b, "acme")
			path := "/api/tenants/acme/carts/" + cartID + "/items"
			b.ReportAllocs()
			for b.Loop() {
				e.must(b, http.StatusCreated, "PUT", path, `{"action":"add","item":{"sku":"A","name":"a","unitPrice":1,"quantity":1}}`)
			}
		})
	}
}

// BenchmarkReadYourWrite is a write followed by a read of the read model
// that waits for it (?waitFor): the latency a client sees from command to
// its effect on the read model.
func BenchmarkReadYourWrite(b *testing.B) {
	for _, store := range []string{"postgres", "memory"} {
		b.Run(store, func(b *testing.B) {
			e := benchEnv(b, store)
			e.createTenant(b, "acme")
			cartID, _ := e.createCart(b, "acme")
			path := "/api/tenants/acme/carts/" + cartID
			b.ReportAllocs()
			for b.Loop() {
				w := e.must(b, http.StatusCreated, "PUT", path+"/items", `{"action":"add","item":{"sku":"A","name":"a","unitPrice":1,"quantity":1}}`)
				e.must(b, http.StatusOK, "GET", path+"?waitFor="+w["position"].(string), "")
			}
		})
	}
}

func benchEnv(b *testing.B, store string) *env {
	if store == "memory" {
		return newMem(b)
	}
	return newPG(b)
}
