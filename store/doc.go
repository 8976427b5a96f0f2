// Package store defines Troupe's event store: the event envelope, the
// expected-version rules, the errors, the codec and the [EventStore]
// interface that every backend (store/postgres, store/memory) implements and
// that store/storetest checks.
//
// # Guarantees
//
//   - An append either commits all its events at contiguous stream positions
//     or commits nothing. A failed expected-version check, including two
//     writers racing to create the same stream, returns a
//     *[VersionConflictError] matching [ErrVersionConflict].
//   - Re-sending an append whose message ids are already stored at those
//     positions returns the original result and writes nothing.
//   - [EventStore.ReadAll] returns the global log in commit-safe order
//     ([Position]): never an event while an older transaction that could
//     still commit before it is in flight.
//
// # Failures
//
// Bad input (no events, empty stream id, invalid partition, event without a
// type or with invalid JSON) returns an error matching [ErrInvalidArgument]
// naming what was wrong; nothing is written.
package store
