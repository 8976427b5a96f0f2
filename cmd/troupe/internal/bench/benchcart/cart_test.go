package benchcart

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/decider"
)

func TestPriceJSON(t *testing.T) {
	t.Parallel()
	for p, want := range map[Price]string{1999: "19.99", 4000: "40", 450: "4.5", 5: "0.05", -120: "-1.2"} {
		b, err := json.Marshal(p)
		require.NoError(t, err)
		require.Equal(t, want, string(b))
		var back Price
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, p, back)
	}
	var p Price
	require.Error(t, json.Unmarshal([]byte("1.999"), &p))
	require.Error(t, json.Unmarshal([]byte(`"x"`), &p))
}

// A stored ItemAddedToCart is about 200 bytes, as the cart example's is.
func TestEventSize(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(ItemAddedToCart{EventData: ItemAddedToCartData{Item: Item{SKU: "sku-1", Name: "Item 1",
		UnitPrice: 199, Quantity: 2}}, EventMeta: EventMeta{TenantID: "bench-t1", CartID: "r1-c1-0", CreatedBy: "bench", Version: 1}})
	require.NoError(t, err)
	require.InDelta(t, 170, len(b), 40, string(b))
}

func TestDecide(t *testing.T) {
	t.Parallel()
	d := Decider()
	created := CartCreated{EventData: CartCreatedData{Currency: "EUR"}, EventMeta: EventMeta{TenantID: "t", CartID: "c", Version: 1}}
	add := func(sku string, cents Price, qty int) ItemAddedToCart {
		return ItemAddedToCart{EventData: ItemAddedToCartData{Item: Item{SKU: sku, Name: sku, UnitPrice: cents, Quantity: qty}},
			EventMeta: created.EventMeta}
	}
	decider.Spec(d).When(CreateCart{TenantID: "t", CartID: "c", Currency: "EUR"}).Then(t, created)
	decider.Spec(d).Given(created).When(CreateCart{TenantID: "t", CartID: "c", Currency: "EUR"}).ThenError(t, ErrCartExists)
	decider.Spec(d).When(AddItem{TenantID: "t", CartID: "c", Item: Item{SKU: "a", Quantity: 1}}).ThenError(t, ErrCartNotActive)
	decider.Spec(d).Given(created).When(AddItem{TenantID: "t", CartID: "c", Item: Item{SKU: "a", Quantity: 0}}).ThenError(t, ErrQuantityNotPositive)
	decider.Spec(d).Given(created).When(AddItem{TenantID: "t", CartID: "c", Item: Item{Quantity: 1}}).ThenError(t, ErrMissingSKU)
	decider.Spec(d).Given(created).When(CheckoutCart{TenantID: "t", CartID: "c"}).ThenError(t, ErrMissingOrderID)
	decider.Spec(d).Given(created, add("a", 199, 2), add("b", 550, 1), add("a", 199, 1)).
		When(CheckoutCart{TenantID: "t", CartID: "c", OrderID: "o"}).
		Then(t, CartCheckedOut{EventData: CartCheckedOutData{OrderID: "o", Total: 3*199 + 550}, EventMeta: created.EventMeta})
	s := d.Fold(d.InitialState(), created, add("a", 199, 2), add("a", 199, 1))
	require.Equal(t, []Item{{SKU: "a", Name: "a", UnitPrice: 199, Quantity: 3}}, s.Items)
}
