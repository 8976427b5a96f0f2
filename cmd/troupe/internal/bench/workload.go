package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
)

// workload hands out the cart commands of T×N cart slots: each slot runs
// create, K adds and checkout, then starts a new cart. It never hands out a
// command that could be rejected: adds only once the create is answered,
// the checkout only once every add is answered.
type workload struct {
	items  int
	prefix string

	mu     sync.Mutex
	cond   *sync.Cond
	slots  []*slot
	closed bool
}

type slot struct {
	tenant string
	index  int
	gen    int
	// life of the current cart
	created     bool
	creating    bool
	addsIssued  int
	addsDone    int
	checkingOut bool
}

// token identifies a handed-out command so its answer reaches its slot.
type token struct {
	slot *slot
	gen  int
	kind int
}

const (
	kindCreate = iota
	kindAdd
	kindCheckout
)

// newWorkload returns the workload of tenants×carts slots with items adds
// per cart; prefix keeps cart ids of different workloads apart.
func newWorkload(tenants, carts, items int, prefix string) *workload {
	w := &workload{items: items, prefix: prefix}
	w.cond = sync.NewCond(&w.mu)
	for t := 0; t < tenants; t++ {
		for c := 0; c < carts; c++ {
			w.slots = append(w.slots, &slot{tenant: TenantID(t), index: t*carts + c})
		}
	}
	return w
}

// TenantID is the id of the benchmark's tenant number n.
func TenantID(n int) string { return fmt.Sprintf("bench-t%d", n+1) }

func (w *workload) cartID(s *slot) string { return fmt.Sprintf("%s-c%d-%d", w.prefix, s.index, s.gen) }

// next returns a command to send, waiting while every slot is busy. It
// returns false once the workload is closed or ctx is done.
func (w *workload) next(ctx context.Context, rng *rand.Rand) (benchcart.Command, token, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if w.closed || ctx.Err() != nil {
			return nil, token{}, false
		}
		start := rng.IntN(len(w.slots))
		for i := range w.slots {
			s := w.slots[(start+i)%len(w.slots)]
			if cmd, tok, ok := w.take(s); ok {
				return cmd, tok, true
			}
		}
		w.cond.Wait()
	}
}

// take returns the slot's next command if it has one ready. w.mu is held.
func (w *workload) take(s *slot) (benchcart.Command, token, bool) {
	id := w.cartID(s)
	switch {
	case !s.created:
		if s.creating {
			return nil, token{}, false
		}
		s.creating = true
		return benchcart.CreateCart{TenantID: s.tenant, CartID: id, Currency: "EUR", CreatedBy: "bench"},
			token{slot: s, gen: s.gen, kind: kindCreate}, true
	case s.addsIssued < w.items:
		s.addsIssued++
		n := s.addsIssued
		return benchcart.AddItem{TenantID: s.tenant, CartID: id, CreatedBy: "bench", Item: benchcart.Item{
				SKU: fmt.Sprintf("sku-%d", n), Name: fmt.Sprintf("Item %d", n),
				UnitPrice: benchcart.Price(100*n + 99), Quantity: 1 + n%3}},
			token{slot: s, gen: s.gen, kind: kindAdd}, true
	case s.addsDone < w.items || s.checkingOut:
		return nil, token{}, false
	default:
		s.checkingOut = true
		return benchcart.CheckoutCart{TenantID: s.tenant, CartID: id, OrderID: "order-" + id, CreatedBy: "bench"},
			token{slot: s, gen: s.gen, kind: kindCheckout}, true
	}
}

// done records the answer to a handed-out command. A failed create or
// checkout abandons the cart and starts a new one in the slot; a failed add
// counts as answered.
func (w *workload) done(tok token, failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := tok.slot
	if s == nil || tok.gen != s.gen {
		return
	}
	switch tok.kind {
	case kindCreate:
		s.creating = false
		if failed {
			w.restart(s)
		} else {
			s.created = true
		}
	case kindAdd:
		s.addsDone++
	case kindCheckout:
		w.restart(s)
	}
	w.cond.Broadcast()
}

func (w *workload) restart(s *slot) {
	s.gen++
	s.created, s.creating, s.addsIssued, s.addsDone, s.checkingOut = false, false, 0, 0, false
}

// close wakes every waiting next, which then returns false.
func (w *workload) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cond.Broadcast()
}
