// Package cart is the shopping-cart domain of the example service: its
// commands, events, state and rules as a pure [decider.Decider]. It has no
// HTTP, SQL or actors; the service around it (examples/cart) hosts it with
// Troupe's actor host, stores its events and projects them.
//
// # Streams and events
//
// A cart is one stream: stream id = cart id, partition = tenant id, stream
// type [StreamType] ("cart"). Events are stored in the seed application's
// shape, {"eventData": {...}, "eventMeta": {"tenantId", "cartId",
// "createdBy", "version"}}, under the names registered by [RegisterEvents]:
//
//	CartCreated          {"currency"}
//	ItemAddedToCart      {"item": {"sku", "name", "unitPrice", "quantity"}}
//	ItemRemovedFromCart  {"sku", "quantity"}
//	CartEmptied          null
//	CartCheckedOut       {"orderId", "total"}
//	CartCancelled        {"reason"}
//
// Money is a [Decimal]: exact, written as a JSON number (19.99), read from
// a JSON number or numeric string. Totals are never rounded.
//
// # Rules
//
// A cart is init (not created), active, checked out or cancelled.
//
//   - CreateCart only for a cart still in its init state (not yet created):
//     [ErrCartNotInitialized] ("Cart is not initialized", the seed's text).
//   - Every other command only for an active cart: [ErrCartNotActive]
//     ("Cart is not active"). Checked out and cancelled are final.
//   - Quantities are positive: [ErrQuantityNotPositive] ("Quantity must be
//     positive").
//   - RemoveItem of a SKU not in the cart: [ErrItemNotInCart] ("Item not in
//     cart"); of more units than held: [ErrRemoveTooMany] ("Cannot remove
//     more than in cart"). A line whose quantity reaches 0 leaves the cart.
//   - AddItem of a SKU already in the cart adds to its quantity and keeps the
//     first name and unit price.
//   - Unit prices are not negative: [ErrNegativePrice]. Zero is allowed.
//   - CheckoutCart records total = Σ unit price × quantity; an empty cart may
//     be checked out with total 0. The order id comes in the command.
//   - Required fields (tenant and cart ids, currency, SKU, order id, cancel
//     reason) are checked too, each with its own sentinel.
//
// # Failures
//
// Decide reports a broken rule as one of the Err* sentinels marked with
// decider.Rejected: errors.Is(err, decider.ErrRejected) separates it from
// infrastructure failures, errors.Is(err, cart.ErrItemNotInCart) names the
// rule, and err.Error() is the message to show API clients. A nil command is
// [ErrUnknownCommand], a programming error, not a rejection. Evolve never
// fails. Decoding a malformed amount fails with [ErrInvalidDecimal].
package cart
