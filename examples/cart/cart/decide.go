package cart

import (
	"fmt"
	"math"

	"github.com/troupehq/troupe/decider"
)

// Decider returns the cart aggregate: Decide, Evolve and InitialState.
func Decider() decider.Decider[Command, Event, State] {
	return decider.Decider[Command, Event, State]{
		Decide:       Decide,
		Evolve:       Evolve,
		InitialState: InitialState,
	}
}

// Decide returns the events cmd produces for a cart in state s, or the
// broken rule (one of the Err* sentinels, marked with decider.Rejected).
// It is pure: the same command and state always give the same result.
//
// Rules, checked in this order: the command names a tenant and a cart;
// CreateCart needs a cart that does not exist yet, every other command an
// active cart; quantities are positive; a removed SKU is in the cart with
// at least that many units; unit prices are not negative. The checkout
// total is Σ unit price × quantity (0 for an empty cart).
func Decide(cmd Command, s State) ([]Event, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%w: nil", ErrUnknownCommand)
	}
	if cmd.Tenant() == "" {
		return reject(ErrMissingTenantID)
	}
	if cmd.Cart() == "" {
		return reject(ErrMissingCartID)
	}
	if _, ok := cmd.(CreateCart); !ok && s.Status != StatusActive {
		return reject(ErrCartNotActive)
	}
	switch c := cmd.(type) {
	case CreateCart:
		if s.Status != StatusInit {
			return reject(ErrCartNotInitialized)
		}
		if c.Currency == "" {
			return reject(ErrMissingCurrency)
		}
		return one(CartCreated{EventData: CartCreatedData{Currency: c.Currency}, EventMeta: meta(c, c.CreatedBy)})
	case AddItem:
		it := c.Item
		switch {
		case it.Quantity <= 0:
			return reject(ErrQuantityNotPositive)
		case it.SKU == "":
			return reject(ErrMissingSKU)
		case it.UnitPrice.Sign() < 0:
			return reject(ErrNegativePrice)
		case !it.UnitPrice.inRange():
			return reject(ErrPriceOutOfRange)
		}
		if have, ok := s.Item(it.SKU); ok && have.Quantity > math.MaxInt-it.Quantity {
			return reject(ErrQuantityTooLarge)
		}
		return one(ItemAddedToCart{EventData: ItemAddedToCartData{Item: it}, EventMeta: meta(c, c.CreatedBy)})
	case RemoveItem:
		if c.Quantity <= 0 {
			return reject(ErrQuantityNotPositive)
		}
		if c.SKU == "" {
			return reject(ErrMissingSKU)
		}
		have, ok := s.Item(c.SKU)
		if !ok {
			return reject(ErrItemNotInCart)
		}
		if c.Quantity > have.Quantity {
			return reject(ErrRemoveTooMany)
		}
		return one(ItemRemovedFromCart{EventData: ItemRemovedFromCartData{SKU: c.SKU, Quantity: c.Quantity},
			EventMeta: meta(c, c.CreatedBy)})
	case EmptyCart:
		return one(CartEmptied{EventMeta: meta(c, c.CreatedBy)})
	case CheckoutCart:
		if c.OrderID == "" {
			return reject(ErrMissingOrderID)
		}
		total := s.ItemsTotal()
		if !total.inRange() {
			return reject(ErrTotalOutOfRange)
		}
		return one(CartCheckedOut{EventData: CartCheckedOutData{OrderID: c.OrderID, Total: total},
			EventMeta: meta(c, c.CreatedBy)})
	case CancelCart:
		if c.Reason == "" {
			return reject(ErrMissingReason)
		}
		return one(CartCancelled{EventData: CartCancelledData{Reason: c.Reason}, EventMeta: meta(c, c.CreatedBy)})
	}
	return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, cmd)
}

func reject(err error) ([]Event, error) { return nil, decider.Rejected(err) }

func one(e Event) ([]Event, error) { return []Event{e}, nil }

func meta(c Command, createdBy string) EventMeta {
	return EventMeta{TenantID: c.Tenant(), CartID: c.Cart(), CreatedBy: createdBy, Version: EventSchemaVersion}
}
