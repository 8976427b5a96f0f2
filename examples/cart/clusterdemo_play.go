package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// cartLife is the events each demo cart's stream must hold, in order.
var cartLife = []string{cart.TypeCartCreated, cart.TypeItemAddedToCart, cart.TypeItemAddedToCart,
	cart.TypeItemRemovedFromCart, cart.TypeCartCheckedOut}

// playCarts plays one cart per member, each through every member: created
// through member i, its items added through the two others, one removed
// through member i again, checked out through the next, a late add refused
// through the third. Then every cart is read through every member. It
// returns the carts' ids.
func playCarts(c *clusterClient, tenant string) ([]string, error) {
	ms := c.members
	n := len(ms)
	if _, err := c.expect(http.StatusCreated, ms[0], "POST", "/api/tenants", `{"tenantId":"`+tenant+`","name":"Cluster Shop"}`); err != nil {
		return nil, err
	}
	carts := "/api/tenants/" + tenant + "/carts"
	var ids []string
	var last string // position token of the last write
	for i := range n {
		verbose := i == 0
		if verbose {
			fmt.Fprintln(c.out, "\nA cart, created through one member and changed through the others:")
		}
		send := func(want int, m *member, method, path, body string) (memberReply, error) {
			r, err := c.call(m, method, path, body, !verbose)
			if err == nil && r.status != want {
				err = fmt.Errorf("member %d: %s %s answered %d, want %d: %s", m.n, method, path, r.status, want, r.raw)
			}
			return r, err
		}
		created, err := send(http.StatusCreated, ms[i], "POST", carts, `{"currency":"USD"}`)
		if err != nil {
			return nil, err
		}
		id, _ := created.body["cartId"].(string)
		if id == "" {
			return nil, fmt.Errorf("member %d: the create answer %s has no cartId", ms[i].n, created.raw)
		}
		ids = append(ids, id)
		path := carts + "/" + id
		for _, step := range []struct {
			m          *member
			path, body string
		}{
			{ms[(i+1)%n], path + "/items", `{"action":"add","item":{"sku":"SKU-1","name":"Item 1","unitPrice":10,"quantity":2}}`},
			{ms[(i+2)%n], path + "/items", `{"action":"add","item":{"sku":"SKU-2","name":"Item 2","unitPrice":5,"quantity":1}}`},
			{ms[i], path + "/items", `{"action":"remove","sku":"SKU-1","quantity":1}`},
		} {
			if _, err := send(http.StatusCreated, step.m, "PUT", step.path, step.body); err != nil {
				return nil, err
			}
		}
		checkout, err := send(http.StatusCreated, ms[(i+1)%n], "PUT", path+"/checkout", "")
		if err != nil {
			return nil, err
		}
		if total, _ := checkout.body["total"].(float64); total != 15 {
			return nil, fmt.Errorf("cart %s: checkout total = %v, want 15", id, checkout.body["total"])
		}
		last, _ = checkout.body["position"].(string)
		if verbose {
			fmt.Fprintln(c.out, "\nA rule broken on the owner is a 409 on whichever member was asked:")
		}
		late, err := send(http.StatusConflict, ms[(i+2)%n], "PUT", path+"/items",
			`{"action":"add","item":{"sku":"SKU-9","name":"Late","unitPrice":1,"quantity":1}}`)
		if err != nil {
			return nil, err
		}
		if msg, _ := late.body["error"].(string); msg != cart.ErrCartNotActive.Error() {
			return nil, fmt.Errorf("cart %s: the late add answered %s, want the rule %q", id, late.raw, cart.ErrCartNotActive)
		}
		if !verbose {
			fmt.Fprintf(c.out, "Cart %s: created through member %d, changed through members %d, %d and %d, checked out through member %d (owner: %s)\n",
				id, ms[i].n, ms[(i+1)%n].n, ms[(i+2)%n].n, ms[i].n, ms[(i+1)%n].n, c.name(checkout.owner))
		}
	}

	fmt.Fprintf(c.out, "\n== Every cart read through every member (the carts read model, ?waitFor=%s)\n\n", last)
	want := `"items":[{"sku":"SKU-1","name":"Item 1","unitPrice":10,"quantity":1},{"sku":"SKU-2","name":"Item 2","unitPrice":5,"quantity":1}],"isCheckedOut":true,"isCancelled":false,"total":15,`
	for _, id := range ids {
		var first []byte
		for _, m := range ms {
			r, err := c.call(m, "GET", carts+"/"+id+"?waitFor="+last, "", true)
			if err != nil {
				return nil, err
			}
			switch {
			case r.status != http.StatusOK:
				return nil, fmt.Errorf("member %d: GET cart %s answered %d: %s", m.n, id, r.status, r.raw)
			case !json.Valid(r.raw) || !strings.Contains(string(r.raw), want):
				return nil, fmt.Errorf("member %d: cart %s reads %s, want it to hold %s", m.n, id, r.raw, want)
			case first != nil && string(first) != string(r.raw):
				return nil, fmt.Errorf("cart %s reads differently through member %d (%s) and member 1 (%s)", id, m.n, r.raw, first)
			}
			first = r.raw
		}
		fmt.Fprintf(c.out, "%s (the same through members 1 to %d)\n", first, len(ms))
	}
	for _, m := range ms {
		r, err := c.call(m, "GET", carts, "", true)
		if err != nil {
			return nil, err
		}
		var views []service.CartView
		if err := json.Unmarshal(r.raw, &views); err != nil || r.status != http.StatusOK {
			return nil, fmt.Errorf("member %d: GET %s answered %d %s", m.n, carts, r.status, r.raw)
		}
		got := make([]string, len(views))
		for i, v := range views {
			got[i] = v.CartID
		}
		slices.Sort(got)
		wantIDs := slices.Sorted(slices.Values(ids))
		if !slices.Equal(got, wantIDs) {
			return nil, fmt.Errorf("member %d lists carts %v, want %v", m.n, got, wantIDs)
		}
	}
	fmt.Fprintf(c.out, "Every member lists the %d carts.\n", len(ids))
	return ids, nil
}

// checkClusterLog prints the tenant's carts table and checks that each
// cart's stream holds its life exactly once: versions 1..5, no duplicate.
func checkClusterLog(ctx context.Context, out io.Writer, pool *pgxpool.Pool, tenant string, ids []string) error {
	if err := printCartsTable(ctx, out, pool, tenant); err != nil {
		return err
	}
	es, err := postgres.New(pool, nil)
	if err != nil {
		return err
	}
	for _, id := range ids {
		res, err := es.ReadStream(ctx, store.StreamID(id), store.ReadOptions{Partition: tenant})
		if err != nil {
			return fmt.Errorf("read the stream of cart %s: %w", id, err)
		}
		var types []string
		for i, e := range res.Events {
			if e.StreamPosition != store.Version(i+1) {
				return fmt.Errorf("cart %s: event %d is at stream position %d", id, i+1, e.StreamPosition)
			}
			types = append(types, e.Type)
		}
		if !slices.Equal(types, cartLife) {
			return fmt.Errorf("cart %s: the log holds %v, want %v (each command once)", id, types, cartLife)
		}
	}
	fmt.Fprintf(out, "\nThe log holds each cart's %d events once, at versions 1 to %d.\n", len(cartLife), len(cartLife))
	return nil
}
