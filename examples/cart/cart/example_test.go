package cart_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/examples/cart/cart"
)

func ExampleDecider() {
	d := cart.Decider()
	state := d.InitialState()
	send := func(cmd cart.Command) []cart.Event {
		events, err := d.Decide(cmd, state)
		if err != nil {
			fmt.Printf("rejected: %v (domain error: %v)\n", err, errors.Is(err, decider.ErrRejected))
			return nil
		}
		state = d.Fold(state, events...)
		return events
	}
	price := func(s string) cart.Decimal { p, _ := cart.ParseDecimal(s); return p }

	send(cart.CreateCart{TenantID: "acme", CartID: "c1", Currency: "USD"})
	send(cart.AddItem{TenantID: "acme", CartID: "c1", Item: cart.Item{SKU: "SKU-123", Name: "Mug", UnitPrice: price("25"), Quantity: 2}})
	send(cart.AddItem{TenantID: "acme", CartID: "c1", Item: cart.Item{SKU: "SKU-456", Name: "Pen", UnitPrice: price("15"), Quantity: 1}})
	send(cart.RemoveItem{TenantID: "acme", CartID: "c1", SKU: "SKU-123", Quantity: 1})
	send(cart.RemoveItem{TenantID: "acme", CartID: "c1", SKU: "SKU-999", Quantity: 1})
	events := send(cart.CheckoutCart{TenantID: "acme", CartID: "c1", OrderID: "order-1"})

	data, _ := json.Marshal(events[0])
	fmt.Println(events[0].EventType(), string(data))
	fmt.Println(state.Status, state.Total)
	// Output:
	// rejected: Item not in cart (domain error: true)
	// CartCheckedOut {"eventData":{"orderId":"order-1","total":40},"eventMeta":{"tenantId":"acme","cartId":"c1","createdBy":"","version":1}}
	// checkedOut 40
}
