package cart_test

import (
	"errors"
	"math"
	"testing"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/examples/cart/cart"
)

const (
	tenant = "acme"
	cartID = "cart-1"
	user   = "alice"
)

var spec = decider.Spec(cart.Decider())

func dec(s string) cart.Decimal {
	d, err := cart.ParseDecimal(s)
	if err != nil {
		panic(err) // test constants only
	}
	return d
}

func meta() cart.EventMeta {
	return cart.EventMeta{TenantID: tenant, CartID: cartID, CreatedBy: user, Version: 1}
}

func item(sku, name, price string, qty int) cart.Item {
	return cart.Item{SKU: sku, Name: name, UnitPrice: dec(price), Quantity: qty}
}

func created() cart.Event {
	return cart.CartCreated{EventData: cart.CartCreatedData{Currency: "USD"}, EventMeta: meta()}
}

func added(it cart.Item) cart.Event {
	return cart.ItemAddedToCart{EventData: cart.ItemAddedToCartData{Item: it}, EventMeta: meta()}
}

func removed(sku string, qty int) cart.Event {
	return cart.ItemRemovedFromCart{EventData: cart.ItemRemovedFromCartData{SKU: sku, Quantity: qty}, EventMeta: meta()}
}

func emptied() cart.Event { return cart.CartEmptied{EventMeta: meta()} }

func checkedOut(order, total string) cart.Event {
	return cart.CartCheckedOut{EventData: cart.CartCheckedOutData{OrderID: order, Total: dec(total)}, EventMeta: meta()}
}

func cancelled(reason string) cart.Event {
	return cart.CartCancelled{EventData: cart.CartCancelledData{Reason: reason}, EventMeta: meta()}
}

func createCmd() cart.CreateCart {
	return cart.CreateCart{TenantID: tenant, CartID: cartID, Currency: "USD", CreatedBy: user}
}

func addCmd(it cart.Item) cart.AddItem {
	return cart.AddItem{TenantID: tenant, CartID: cartID, Item: it, CreatedBy: user}
}

func removeCmd(sku string, qty int) cart.RemoveItem {
	return cart.RemoveItem{TenantID: tenant, CartID: cartID, SKU: sku, Quantity: qty, CreatedBy: user}
}

func emptyCmd() cart.EmptyCart {
	return cart.EmptyCart{TenantID: tenant, CartID: cartID, CreatedBy: user}
}

func checkoutCmd(order string) cart.CheckoutCart {
	return cart.CheckoutCart{TenantID: tenant, CartID: cartID, OrderID: order, CreatedBy: user}
}

func cancelCmd(reason string) cart.CancelCart {
	return cart.CancelCart{TenantID: tenant, CartID: cartID, Reason: reason, CreatedBy: user}
}

// every non-create command, valid for an active cart holding SKU-1 × 2.
func activeCommands() map[string]cart.Command {
	return map[string]cart.Command{
		"add":      addCmd(item("SKU-1", "Item", "1", 1)),
		"remove":   removeCmd("SKU-1", 1),
		"empty":    emptyCmd(),
		"checkout": checkoutCmd("order-1"),
		"cancel":   cancelCmd("changed my mind"),
	}
}

func TestCreateCart(t *testing.T) {
	t.Parallel()
	spec.When(createCmd()).Then(t, created())
	spec.When(createCmd()).ThenState(t, cart.State{Status: cart.StatusActive, TenantID: tenant, CartID: cartID, Currency: "USD"})

	anonymous := createCmd()
	anonymous.CreatedBy = ""
	spec.When(anonymous).Then(t, cart.CartCreated{EventData: cart.CartCreatedData{Currency: "USD"},
		EventMeta: cart.EventMeta{TenantID: tenant, CartID: cartID, Version: cart.EventSchemaVersion}})

	noCurrency := createCmd()
	noCurrency.Currency = ""
	spec.When(noCurrency).ThenError(t, cart.ErrMissingCurrency)
}

func TestCreateCartOnlyFromInit(t *testing.T) {
	t.Parallel()
	for name, given := range map[string][]cart.Event{
		"active":      {created()},
		"with items":  {created(), added(item("SKU-1", "Item", "1", 1))},
		"checked out": {created(), checkedOut("order-1", "0")},
		"cancelled":   {created(), cancelled("no")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec.Given(given...).When(createCmd()).ThenError(t, cart.ErrCartNotInitialized)
		})
	}
}

func TestCommandsNeedActiveCart(t *testing.T) {
	t.Parallel()
	for state, given := range map[string][]cart.Event{
		"init":        nil,
		"checked out": {created(), added(item("SKU-1", "Item", "1", 2)), checkedOut("order-1", "2")},
		"cancelled":   {created(), added(item("SKU-1", "Item", "1", 2)), cancelled("no")},
	} {
		for name, cmd := range activeCommands() {
			t.Run(state+"/"+name, func(t *testing.T) {
				t.Parallel()
				spec.Given(given...).When(cmd).ThenError(t, cart.ErrCartNotActive)
			})
		}
	}
	// The same commands are accepted by an active cart.
	active := cart.Decider().Fold(cart.InitialState(), created(), added(item("SKU-1", "Item", "1", 2)))
	for name, cmd := range activeCommands() {
		if events, err := cart.Decide(cmd, active); err != nil || len(events) != 1 {
			t.Errorf("%s on an active cart = %v, %v; want one event", name, events, err)
		}
	}
}

func TestCommandsNeedIDs(t *testing.T) {
	t.Parallel()
	given := []cart.Event{created(), added(item("SKU-1", "Item", "1", 2))}
	cmds := activeCommands()
	cmds["create"] = createCmd()
	for name, cmd := range cmds {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec.Given(given...).When(withIDs(cmd, "", cartID)).ThenError(t, cart.ErrMissingTenantID)
			spec.Given(given...).When(withIDs(cmd, tenant, "")).ThenError(t, cart.ErrMissingCartID)
		})
	}
}

func withIDs(cmd cart.Command, tenantID, cartID string) cart.Command {
	switch c := cmd.(type) {
	case cart.CreateCart:
		c.TenantID, c.CartID = tenantID, cartID
		return c
	case cart.AddItem:
		c.TenantID, c.CartID = tenantID, cartID
		return c
	case cart.RemoveItem:
		c.TenantID, c.CartID = tenantID, cartID
		return c
	case cart.EmptyCart:
		c.TenantID, c.CartID = tenantID, cartID
		return c
	case cart.CheckoutCart:
		c.TenantID, c.CartID = tenantID, cartID
		return c
	case cart.CancelCart:
		c.TenantID, c.CartID = tenantID, cartID
		return c
	}
	panic("unknown command")
}

func TestAddItem(t *testing.T) {
	t.Parallel()
	it := item("SKU-123", "Item 123", "25", 2)
	spec.Given(created()).When(addCmd(it)).Then(t, added(it))
	spec.Given(created()).When(addCmd(it)).ThenState(t, cart.State{Status: cart.StatusActive, TenantID: tenant,
		CartID: cartID, Currency: "USD", Items: []cart.Item{it}})

	free := item("SKU-0", "Sticker", "0", 1)
	spec.Given(created()).When(addCmd(free)).Then(t, added(free))
}

func TestAddItemQuantityMustBePositive(t *testing.T) {
	t.Parallel()
	for _, q := range []int{0, -1, math.MinInt} {
		spec.Given(created()).When(addCmd(item("SKU-1", "Item", "1", q))).ThenError(t, cart.ErrQuantityNotPositive)
	}
}

func TestAddItemValidation(t *testing.T) {
	t.Parallel()
	spec.Given(created()).When(addCmd(item("", "Item", "1", 1))).ThenError(t, cart.ErrMissingSKU)
	spec.Given(created()).When(addCmd(item("SKU-1", "Item", "-0.01", 1))).ThenError(t, cart.ErrNegativePrice)
	huge := dec("1e39").MulInt(100) // 41 digits: valid arithmetic, but unreadable from JSON
	spec.Given(created()).When(addCmd(cart.Item{SKU: "SKU-1", UnitPrice: huge, Quantity: 1})).
		ThenError(t, cart.ErrPriceOutOfRange)
	tiny := dec("1e-30").Mul(dec("0.1"))
	spec.Given(created()).When(addCmd(cart.Item{SKU: "SKU-1", UnitPrice: tiny, Quantity: 1})).
		ThenError(t, cart.ErrPriceOutOfRange)
}

func TestAddExistingSKUAddsQuantityAndKeepsFirstNameAndPrice(t *testing.T) {
	t.Parallel()
	first := item("SKU-1", "First name", "10", 1)
	again := item("SKU-1", "Other name", "99.99", 3)
	// The event records the command as sent...
	spec.Given(created(), added(first)).When(addCmd(again)).Then(t, added(again))
	// ...and the state keeps the first name and price.
	spec.Given(created(), added(first)).When(addCmd(again)).ThenState(t, cart.State{Status: cart.StatusActive,
		TenantID: tenant, CartID: cartID, Currency: "USD", Items: []cart.Item{item("SKU-1", "First name", "10", 4)}})
}

func TestItemsKeepInsertionOrder(t *testing.T) {
	t.Parallel()
	a, b, c := item("A", "a", "1", 1), item("B", "b", "2", 1), item("C", "c", "3", 1)
	spec.Given(created(), added(b), added(a), added(c), removed("A", 1)).When(addCmd(a)).ThenState(t,
		cart.State{Status: cart.StatusActive, TenantID: tenant, CartID: cartID, Currency: "USD",
			Items: []cart.Item{b, c, a}})
	spec.Given(created(), added(b), added(a)).When(addCmd(b)).ThenState(t,
		cart.State{Status: cart.StatusActive, TenantID: tenant, CartID: cartID, Currency: "USD",
			Items: []cart.Item{item("B", "b", "2", 2), a}})
}

func TestAddItemQuantityOverflow(t *testing.T) {
	t.Parallel()
	spec.Given(created(), added(item("SKU-1", "Item", "1", math.MaxInt-1))).
		When(addCmd(item("SKU-1", "Item", "1", 2))).ThenError(t, cart.ErrQuantityTooLarge)
	spec.Given(created(), added(item("SKU-1", "Item", "1", math.MaxInt-1))).
		When(addCmd(item("SKU-1", "Item", "1", 1))).Then(t, added(item("SKU-1", "Item", "1", 1)))
}

func TestRemoveItem(t *testing.T) {
	t.Parallel()
	given := []cart.Event{created(), added(item("SKU-1", "One", "25", 2)), added(item("SKU-2", "Two", "15", 1))}
	spec.Given(given...).When(removeCmd("SKU-1", 1)).Then(t, removed("SKU-1", 1))
	spec.Given(given...).When(removeCmd("SKU-1", 1)).ThenState(t, cart.State{Status: cart.StatusActive,
		TenantID: tenant, CartID: cartID, Currency: "USD",
		Items: []cart.Item{item("SKU-1", "One", "25", 1), item("SKU-2", "Two", "15", 1)}})
	// Removing every unit takes the line out of the cart.
	spec.Given(given...).When(removeCmd("SKU-1", 2)).ThenState(t, cart.State{Status: cart.StatusActive,
		TenantID: tenant, CartID: cartID, Currency: "USD", Items: []cart.Item{item("SKU-2", "Two", "15", 1)}})
	spec.Given(given...).When(removeCmd("SKU-2", 1)).Then(t, removed("SKU-2", 1))
	spec.Given(created(), added(item("SKU-2", "Two", "15", 1))).When(removeCmd("SKU-2", 1)).ThenState(t,
		cart.State{Status: cart.StatusActive, TenantID: tenant, CartID: cartID, Currency: "USD"})
}

func TestRemoveItemRules(t *testing.T) {
	t.Parallel()
	given := []cart.Event{created(), added(item("SKU-1", "One", "25", 2))}
	spec.Given(given...).When(removeCmd("SKU-1", 0)).ThenError(t, cart.ErrQuantityNotPositive)
	spec.Given(given...).When(removeCmd("SKU-1", -3)).ThenError(t, cart.ErrQuantityNotPositive)
	spec.Given(given...).When(removeCmd("", 1)).ThenError(t, cart.ErrMissingSKU)
	spec.Given(given...).When(removeCmd("SKU-9", 1)).ThenError(t, cart.ErrItemNotInCart)
	spec.Given(given...).When(removeCmd("SKU-1", 3)).ThenError(t, cart.ErrRemoveTooMany)
	// A line removed entirely is no longer in the cart.
	spec.Given(append(given, removed("SKU-1", 2))...).When(removeCmd("SKU-1", 1)).ThenError(t, cart.ErrItemNotInCart)
	// Nor after emptying.
	spec.Given(append(given, emptied())...).When(removeCmd("SKU-1", 1)).ThenError(t, cart.ErrItemNotInCart)
	spec.Given(created()).When(removeCmd("SKU-1", 1)).ThenError(t, cart.ErrItemNotInCart)
}

func TestEmptyCart(t *testing.T) {
	t.Parallel()
	given := []cart.Event{created(), added(item("SKU-1", "One", "25", 2)), added(item("SKU-2", "Two", "15", 1))}
	spec.Given(given...).When(emptyCmd()).Then(t, emptied())
	spec.Given(given...).When(emptyCmd()).ThenState(t, cart.State{Status: cart.StatusActive, TenantID: tenant,
		CartID: cartID, Currency: "USD"})
	// An empty cart can be emptied (the seed records the event too).
	spec.Given(created()).When(emptyCmd()).Then(t, emptied())
	// It stays active: items can be added again.
	it := item("SKU-3", "Three", "1", 1)
	spec.Given(append(given, emptied())...).When(addCmd(it)).Then(t, added(it))
}

func TestCheckoutTotal(t *testing.T) {
	t.Parallel()
	// The seed's scenario: 2 × 25 + 1 × 15, then one SKU-123 removed: 40.
	given := []cart.Event{created(), added(item("SKU-123", "Item 123", "25", 2)),
		added(item("SKU-456", "Item 456", "15", 1)), removed("SKU-123", 1)}
	spec.Given(given...).When(checkoutCmd("order-1")).Then(t, checkedOut("order-1", "40"))
	spec.Given(given...).When(checkoutCmd("order-1")).ThenState(t, cart.State{Status: cart.StatusCheckedOut,
		TenantID: tenant, CartID: cartID, Currency: "USD", OrderID: "order-1", Total: dec("40"),
		Items: []cart.Item{item("SKU-123", "Item 123", "25", 1), item("SKU-456", "Item 456", "15", 1)}})

	// Exact decimals: 0.1 × 3 = 0.3, 19.99 × 3 + 0.01 = 59.98.
	spec.Given(created(), added(item("A", "a", "0.1", 3))).When(checkoutCmd("o")).Then(t, checkedOut("o", "0.3"))
	spec.Given(created(), added(item("A", "a", "19.99", 3)), added(item("B", "b", "0.01", 1))).
		When(checkoutCmd("o")).Then(t, checkedOut("o", "59.98"))
	// The total uses the first price of a SKU added twice.
	spec.Given(created(), added(item("A", "a", "10", 1)), added(item("A", "a", "1000", 1))).
		When(checkoutCmd("o")).Then(t, checkedOut("o", "20"))
}

func TestCheckoutEmptyCart(t *testing.T) {
	t.Parallel()
	spec.Given(created()).When(checkoutCmd("order-1")).Then(t, checkedOut("order-1", "0"))
	spec.Given(created(), added(item("A", "a", "5", 1)), emptied()).When(checkoutCmd("order-1")).
		Then(t, checkedOut("order-1", "0"))
}

func TestCheckoutRules(t *testing.T) {
	t.Parallel()
	spec.Given(created()).When(checkoutCmd("")).ThenError(t, cart.ErrMissingOrderID)
	big := dec("1e39")
	spec.Given(created(), added(cart.Item{SKU: "A", UnitPrice: big, Quantity: 100})).When(checkoutCmd("o")).
		ThenError(t, cart.ErrTotalOutOfRange)
}

func TestCancelCart(t *testing.T) {
	t.Parallel()
	given := []cart.Event{created(), added(item("A", "a", "5", 1))}
	spec.Given(given...).When(cancelCmd("Customer requested")).Then(t, cancelled("Customer requested"))
	spec.Given(given...).When(cancelCmd("Customer requested")).ThenState(t, cart.State{Status: cart.StatusCancelled,
		TenantID: tenant, CartID: cartID, Currency: "USD", Items: []cart.Item{item("A", "a", "5", 1)},
		CancelReason: "Customer requested"})
	spec.Given(given...).When(cancelCmd("")).ThenError(t, cart.ErrMissingReason)
}

func TestRejectionMessages(t *testing.T) {
	t.Parallel()
	want := map[error]string{
		cart.ErrCartNotActive:       "Cart is not active",
		cart.ErrQuantityNotPositive: "Quantity must be positive",
		cart.ErrItemNotInCart:       "Item not in cart",
		cart.ErrRemoveTooMany:       "Cannot remove more than in cart",
		cart.ErrCartNotInitialized:  "Cart is not initialized",
	}
	for sentinel, msg := range want {
		err := decider.Rejected(sentinel)
		if err.Error() != msg {
			t.Errorf("message %q, want %q", err.Error(), msg)
		}
	}
	// What Decide returns carries exactly that message.
	_, err := cart.Decide(removeCmd("SKU-1", 1), cart.Decider().Fold(cart.InitialState(), created()))
	if err == nil || err.Error() != "Item not in cart" || !errors.Is(err, decider.ErrRejected) {
		t.Fatalf("Decide error = %v, want the rejected %q", err, "Item not in cart")
	}
}

func TestNilCommandIsNotARejection(t *testing.T) {
	t.Parallel()
	events, err := cart.Decide(nil, cart.InitialState())
	if !errors.Is(err, cart.ErrUnknownCommand) || errors.Is(err, decider.ErrRejected) || events != nil {
		t.Fatalf("Decide(nil) = %v, %v; want ErrUnknownCommand, not a rejection", events, err)
	}
}

func TestEvolveIgnoresEventsThatCannotFollow(t *testing.T) {
	t.Parallel()
	d := cart.Decider()
	init := d.InitialState()
	for _, e := range []cart.Event{added(item("A", "a", "1", 1)), removed("A", 1), emptied(),
		checkedOut("o", "1"), cancelled("x")} {
		if got := d.Evolve(init, e); got.Status != cart.StatusInit || got.Items != nil {
			t.Errorf("%s on a cart that does not exist changed it: %+v", e.EventType(), got)
		}
	}
	done := d.Fold(init, created(), added(item("A", "a", "1", 1)), checkedOut("o", "1"))
	for _, e := range []cart.Event{created(), added(item("B", "b", "1", 1)), removed("A", 1), emptied(), cancelled("x")} {
		if got := d.Evolve(done, e); got.Status != cart.StatusCheckedOut || len(got.Items) != 1 || got.OrderID != "o" {
			t.Errorf("%s on a checked-out cart changed it: %+v", e.EventType(), got)
		}
	}
	// Removing a SKU that is not there changes nothing.
	active := d.Fold(init, created(), added(item("A", "a", "1", 1)))
	if got := d.Evolve(active, removed("Z", 1)); len(got.Items) != 1 || got.Items[0].Quantity != 1 {
		t.Errorf("removing an absent SKU changed the items: %+v", got.Items)
	}
}

// Evolve never modifies the state it is given, so a host may keep old
// states (for example to retry a command) without copying them.
func TestEvolveDoesNotModifyItsInput(t *testing.T) {
	t.Parallel()
	d := cart.Decider()
	base := d.Fold(d.InitialState(), created(), added(item("A", "a", "1", 2)), added(item("B", "b", "1", 1)))
	base.Items = append(make([]cart.Item, 0, 8), base.Items...) // spare capacity invites aliasing bugs
	snapshot := append([]cart.Item(nil), base.Items...)
	for _, e := range []cart.Event{added(item("A", "a", "1", 5)), added(item("C", "c", "1", 1)),
		removed("A", 1), removed("B", 1), emptied(), checkedOut("o", "1"), cancelled("x")} {
		_ = d.Evolve(base, e)
		if len(base.Items) != len(snapshot) {
			t.Fatalf("%s changed the input's items to %+v", e.EventType(), base.Items)
		}
		for i := range snapshot {
			if base.Items[i] != snapshot[i] {
				t.Fatalf("%s changed the input's item %d to %+v", e.EventType(), i, base.Items[i])
			}
		}
		if extra := base.Items[:cap(base.Items)][len(base.Items)]; extra != (cart.Item{}) {
			t.Fatalf("%s wrote into the input's spare capacity: %+v", e.EventType(), extra)
		}
	}
}

func TestCommandsNameTheirStream(t *testing.T) {
	t.Parallel()
	cmds := activeCommands()
	cmds["create"] = createCmd()
	for name, cmd := range cmds {
		if cmd.Tenant() != tenant || cmd.Cart() != cartID {
			t.Errorf("%s routes to %q/%q, want %q/%q", name, cmd.Tenant(), cmd.Cart(), tenant, cartID)
		}
	}
}
