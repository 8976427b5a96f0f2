// Package store defines Troupe's event store: the event envelope, the
// expected-version rules, the errors, the codec and the [EventStore]
// interface that every backend (store/postgres, store/memory) implements and
// that store/storetest checks.
//
// # Tenants
//
// A tenant is a partition of the store: every stream lives in exactly one,
// and the same stream id in two tenants is two independent streams.
// Single-tenant applications use [DefaultPartition]. [ValidateTenantID]
// accepts 1 to [MaxTenantIDLength] (63) bytes of ASCII letters, digits, '_'
// and '-' (case-sensitive) and rejects everything else with an error
// matching [ErrInvalidTenantID] that says what is wrong and where, so an id
// can never carry SQL. [WithTenant] and [TenantFromContext] carry a
// [TenantID] through a context. The PostgreSQL tenant lifecycle (partitions
// per tenant) is in the tenancy package; row-level security in
// store/postgres.
//
// # Evolution
//
// Every event is stored with the schema version of its type. A [JSONCodec]
// also holds the schema's history: upcasters from each old version to the
// next, renamed, split and dropped types ([JSONCodec.RegisterUpcaster],
// [JSONCodec.RegisterRename], [JSONCodec.RegisterSplit],
// [JSONCodec.RegisterDrop]). A store configured with it (an [Upcaster])
// returns every event at the current version of its type; stored events
// never change. [Encode] writes the current version, [Decode] upcasts, and
// an event that can't be upcast is an *[UpcastError] naming its stream,
// position, type and version. See docs/evolution.md.
//
// # Guarantees
//
//   - An append either commits all its events at contiguous stream positions
//     or commits nothing. A failed expected-version check, including two
//     writers racing to create the same stream, returns a
//     *[VersionConflictError] matching [ErrVersionConflict].
//   - Re-sending an append whose message ids are already stored at those
//     positions returns the original result and writes nothing.
//   - A [BatchAppender] appends to several streams in one transaction;
//     each stream's part keeps the guarantees above on its own, and one
//     part's refusal never fails the others.
//   - [EventStore.ReadAll] returns the global log in commit-safe order
//     ([Position]): never an event while an older transaction that could
//     still commit before it is in flight.
//
// # Failures
//
// Bad input (no events, empty stream id, invalid partition, event without a
// type or with invalid JSON) returns an error matching [ErrInvalidArgument]
// naming what was wrong; nothing is written. An operation that never
// reached the database returns an error matching [ErrUnavailable] (nothing
// written, safe to retry); one the database refused for a reason other than
// its input, [ErrRefused].
package store
