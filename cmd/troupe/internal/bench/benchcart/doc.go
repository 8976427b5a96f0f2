// Package benchcart is the domain `troupe bench` measures: a shopping cart
// cut down to the life the workload gives it (CreateCart, K AddItem,
// CheckoutCart), with its decider, its JSON codec and a snapshot read model.
//
// It belongs to the benchmark alone, so the troupe command depends on no
// example. It is shaped like the cart example's aggregate so the figures
// stay comparable with the published ones: the same event type names, the
// same stored JSON ({"eventData": …, "eventMeta": …}, about 200 bytes for
// ItemAddedToCart), the same fold (items merged by SKU, the total computed
// at checkout) and a read model with the same columns (the table
// bench_carts, keyed by tenant_id, cart_id and partition).
//
// # Guarantees
//
//   - Decide is pure and rejects (decider.Rejected) a command the state
//     does not allow: a second create, an add or checkout on a cart that is
//     not active, a non-positive quantity, an empty SKU or order id.
//   - Evolve never fails; an event that cannot follow the state leaves it
//     unchanged.
//   - A read-model row is the fold of its cart's events, written in the
//     transaction that moves the projection's checkpoint.
//
// # Failures
//
// EnsureSchema and the projection return database errors wrapped with what
// was being done; an event that does not decode fails the projection's
// batch with an error naming it.
package benchcart
