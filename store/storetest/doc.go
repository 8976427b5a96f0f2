// Package storetest is the conformance suite every [store.EventStore]
// backend must pass, so that store/postgres and store/memory (and any
// future backend) are interchangeable.
//
// A backend's tests call [Run] with a function returning a fresh, empty
// store for each subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.EventStore { return memory.New() })
//	}
//
// # What it checks
//
//   - Append: every cell of the expected-version matrix on missing and
//     existing streams, with the typed *store.VersionConflictError (stream,
//     partition, expected, actual, exists) and nothing written after a
//     conflict; defaults (partition, stream type, positions from 1, schema
//     version, generated UUID message ids); result fields; stream type fixed
//     at creation; bad input rejected with store.ErrInvalidArgument and
//     nothing written; idempotent retries (Exact and Any) returning the
//     original result; reused message ids rejected with
//     store.ErrDuplicateMessageID; correlation, causation and trace metadata
//     persisted, system metadata keys overriding the caller's; no aliasing of
//     input or output buffers; a cancelled context writing nothing.
//   - Read: inclusive From/To and MaxCount, missing streams, partition
//     scoping.
//   - store.AggregateStream: folding with paging, the expected-version check,
//     *store.UnknownEventTypeError.
//   - Sessions: commit of several appends in one transaction, rollback on
//     error, on panic and after a conflict, reads of the session's own
//     writes.
//   - Archive: archived streams read as missing, can be recreated (and
//     archived again), are left out of ReadAll; archiving a missing stream is
//     store.ErrStreamNotFound.
//   - ReadAll: commit-safe order, checkpoint paging with no event skipped or
//     repeated, partition and type filters.
//   - Concurrency: 32 writers with exact expected versions (every position
//     written once, losers get only the typed conflict), writers racing to
//     create one stream (one wins), unchecked writers, a reader following
//     the log while writers append.
//   - store.BatchAppender, when the store implements it: every
//     expected-version case as parts of one batch, idempotent retries of
//     parts, two batches racing to create a stream (one wins, the other's
//     part is the typed conflict), a batch mixing conflicting, duplicate and
//     clean parts (the clean ones commit together), bad input in one part,
//     a stream twice in one batch, a cancelled context, a batch in a
//     session.
//   - store.SnapshotStore, when the store implements it: save and load, no
//     replacement by an older version, partition, stream and name scoping.
//
// [RunUpcasting] checks a store configured with a store.Upcaster: a stream
// written at version 1 read at version 3 through two upcasters by
// ReadStream (paged too), ReadAll (paged, by partition, by type) and a
// session; a rename, a split (sharing the stored event's positions) and a
// drop (reads go on past it); and the errors of an event of a newer or
// unparseable version and of a failing upcaster.
//
// # How it fails
//
// Failures are reported through the *testing.T of the failing subtest,
// named after the behaviour (for example
// TestConformance/Append/IdempotentRetry). Run never skips a subtest.
package storetest
