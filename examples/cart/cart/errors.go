package cart

import "errors"

// Domain rule violations. Decide returns them marked with
// decider.Rejected, so errors.Is(err, decider.ErrRejected) tells them apart
// from infrastructure failures and errors.Is(err, cart.ErrCartNotActive)
// (and so on) tells which rule was broken. Their messages are meant to be
// shown to API clients as they are.
var (
	// ErrCartNotInitialized: CreateCart sent to a cart that was already
	// created (whatever its status now): creating is allowed only from the
	// "init" state. The message is the seed application's, word for word,
	// so its clients see the same text.
	ErrCartNotInitialized = errors.New("Cart is not initialized")
	// ErrCartNotActive: any command other than CreateCart sent to a cart
	// that has not been created, or was checked out or cancelled.
	ErrCartNotActive = errors.New("Cart is not active")
	// ErrQuantityNotPositive: AddItem or RemoveItem with a quantity ≤ 0.
	ErrQuantityNotPositive = errors.New("Quantity must be positive")
	// ErrItemNotInCart: RemoveItem for a SKU the cart does not hold.
	ErrItemNotInCart = errors.New("Item not in cart")
	// ErrRemoveTooMany: RemoveItem for more units than the cart holds.
	ErrRemoveTooMany = errors.New("Cannot remove more than in cart")
	// ErrNegativePrice: AddItem with a unit price below zero. (Zero is
	// allowed: free items.)
	ErrNegativePrice = errors.New("Unit price must not be negative")
	// ErrPriceOutOfRange: AddItem with a unit price beyond the limits of
	// ParseDecimal, which could not be read back from the stored event.
	ErrPriceOutOfRange = errors.New("Unit price out of range")
	// ErrQuantityTooLarge: AddItem that would overflow the item's quantity.
	ErrQuantityTooLarge = errors.New("Quantity too large")
	// ErrTotalOutOfRange: CheckoutCart of a cart whose total is beyond the
	// limits of ParseDecimal.
	ErrTotalOutOfRange = errors.New("Total out of range")
	// ErrMissingTenantID: a command without a tenant id.
	ErrMissingTenantID = errors.New("Tenant id is required")
	// ErrMissingCartID: a command without a cart id.
	ErrMissingCartID = errors.New("Cart id is required")
	// ErrMissingCurrency: CreateCart without a currency.
	ErrMissingCurrency = errors.New("Currency is required")
	// ErrMissingSKU: AddItem or RemoveItem without a SKU.
	ErrMissingSKU = errors.New("SKU is required")
	// ErrMissingOrderID: CheckoutCart without an order id.
	ErrMissingOrderID = errors.New("Order id is required")
	// ErrMissingReason: CancelCart without a reason.
	ErrMissingReason = errors.New("Reason is required")
)

// ErrUnknownCommand is returned by Decide for a command value it does not
// know (including nil). It is a programming error, not a broken rule, so it
// is not marked with decider.Rejected.
var ErrUnknownCommand = errors.New("unknown cart command")

// Rules lists every rule violation above. A host in cluster mode is given
// them (actor.Kind.Errors), so a rejection decided on another member
// arrives as the same error: errors.Is(err, ErrCartNotActive) holds on the
// member that sent the command too.
func Rules() []error {
	return []error{ErrCartNotInitialized, ErrCartNotActive, ErrQuantityNotPositive, ErrItemNotInCart,
		ErrRemoveTooMany, ErrNegativePrice, ErrPriceOutOfRange, ErrQuantityTooLarge, ErrTotalOutOfRange,
		ErrMissingTenantID, ErrMissingCartID, ErrMissingCurrency, ErrMissingSKU, ErrMissingOrderID,
		ErrMissingReason}
}
