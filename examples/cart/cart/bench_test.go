package cart_test

import (
	"fmt"
	"testing"

	"github.com/troupehq/troupe/examples/cart/cart"
)

// activeCart returns an active cart holding n distinct SKUs.
func activeCart(n int) cart.State {
	d := cart.Decider()
	events := []cart.Event{created()}
	for i := range n {
		events = append(events, added(item(fmt.Sprintf("SKU-%d", i), "Item", "19.99", 2)))
	}
	return d.Fold(d.InitialState(), events...)
}

func BenchmarkDecideAndEvolveAddItem(b *testing.B) {
	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			s := activeCart(n)
			cmd := addCmd(item("SKU-0", "Item", "19.99", 1))
			b.ReportAllocs()
			for b.Loop() {
				events, err := cart.Decide(cmd, s)
				if err != nil {
					b.Fatal(err)
				}
				_ = cart.Evolve(s, events[0])
			}
		})
	}
}

func BenchmarkCheckout(b *testing.B) {
	s := activeCart(20)
	cmd := checkoutCmd("order-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cart.Decide(cmd, s); err != nil {
			b.Fatal(err)
		}
	}
}
