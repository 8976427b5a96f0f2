// Package cartview is the cart example's "carts" read model as the troupe
// command runs it: the snapshot-table variant of a snapshot projection that
// folds cart.Evolve over each cart's events and keeps one row per cart in
// the table carts, keyed by (tenant_id, cart_id, partition), with currency,
// total and order id (checked-out carts only), the items as JSON and the
// checked-out and cancelled flags. The folded state itself lives in the
// shared snapshots table.
//
// It is the read model of the cart example's service (examples/cart/service):
// the same table, columns, keys, fold and projection name ("carts"), so
// `troupe projections rebuild carts` rebuilds that service's read model. The
// troupe command also uses it for the projection measurements of `troupe
// bench`.
//
// # Guarantees
//
//   - [EnsureSchema] creates the table (LIST-partitioned by partition with a
//     DEFAULT partition, like every table holding tenant data) when missing
//     and never changes an existing one.
//   - A row equals [RowFromState] of the fold of the cart's events: the
//     tenant id is the event's partition and the cart id its stream id.
//   - The projection inherits package projection's guarantees: rows and
//     checkpoint commit together, events are never skipped or applied twice.
//
// # Failures
//
// Events of other types are ignored; a cart event that cannot be decoded
// fails the batch with an error naming the event (the projection then
// retries it and stops at it, see projection.FailStop). Database errors are
// returned wrapped with what was being done.
package cartview
