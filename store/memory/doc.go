// Package memory is an in-process [store.EventStore] (and
// [store.SnapshotStore]) for quick starts, examples and unit tests. It has
// the semantics of store/postgres and passes the same conformance suite
// (store/storetest); nothing survives the process.
//
// # Guarantees
//
//   - Every operation is atomic and safe for concurrent use: one lock
//     serialises all operations, so an append commits all its events at
//     contiguous positions or none.
//   - Expected versions, idempotent retries (same message ids at the same
//     positions return the original result), duplicate message ids (unique
//     per partition, archived events included), defaults and input
//     validation follow the store contract exactly.
//   - Transaction ids are a commit counter, so commit-safe order
//     ([store.Position]) is commit order and ReadAll never has to hold an
//     event back.
//   - A session ([Store.WithSession]) holds the store lock from start to
//     end: its writes become visible to others all at once when it
//     commits, or never. Other callers wait for the session (their context
//     can cut the wait short). Calling the Store itself with the session's
//     context returns [ErrSessionLocked] rather than deadlocking.
//   - [Store.Changed] lets readers wait for commits without polling.
//   - Readers get copies: mutating a returned event never changes the
//     store, and neither does mutating the input of an append afterwards.
//
// [NewWithConfig] with Config.Upcaster upcasts every event read, as
// store/postgres does (see docs/evolution.md).
//
// # Failures
//
// Errors match the store sentinels ([store.ErrVersionConflict] as a
// *[store.VersionConflictError], [store.ErrInvalidArgument],
// [store.ErrDuplicateMessageID], [store.ErrStreamNotFound]) and are wrapped
// with what was being done. A done context returns its error before
// anything is written.
package memory
