// Package readmodel keeps read models whose rows each hold the fold of an
// Evolve function over the events of one key, the same fold an aggregate
// does: the seed's "snapshot projections". The state they store is a
// read-model row's, not an aggregate snapshot (those are
// actor.SnapshotConfig).
//
// A [Projection] is built from a [Config] with [New]. Its state lives in
// the read-model row itself ([InRow]: key columns, snapshot, stream_id,
// last_stream_position, last_global_position and the mapped columns) or in
// the shared snapshots table under (Table, [RowID] of the keys) ([InTable]:
// the row holds only keys and mapped columns). The table and column names
// are those of the TypeScript package's schema, so both can share a
// database.
//
// Evolve functions are typed ([Config].Evolvers, made by [On]: each gets
// its event decoded by [Config].Codec, and the event types applied are the
// codec's names for their Go types) or take the stored event
// ([Config].EventTypes and [Config].Evolve). Either may return [Delete] to
// delete the row; its position is kept in the snapshots table (for InRow
// read models too), so an old event never brings the row back and a later
// event of the stream writes it again from Initial.
//
// It runs inside another engine's transaction: as per-event handlers
// (Handler, Registry) of a perstream.Runner or a consumer.Consumer, or as a
// projection.BatchHandler of a continuous projection.Projection, which
// applies a whole batch with a few multi-row statements and keeps row
// states in an in-memory LRU between batches.
//
// # Guarantees
//
//   - Rows are locked while applied (FOR UPDATE); an event at or before a
//     row's stored position is skipped without calling Evolve or
//     MapToColumns, also after the row was deleted; MapToColumns is called
//     exactly once per applied event (none for a Delete);
//     a row never moves to an older position.
//   - Each row's events are folded in stream order, even when the global
//     log (commit order) holds them out of order: the events a row misses
//     are read back from its stream and applied first.
//   - Two transactions inserting the first row of a key at once can't both
//     win: the loser's batch fails and is retried, then finding the row.
//   - A cached state is used only if the locked row's position still
//     matches it, and enters the cache only once its transaction committed.
//   - Every identifier is quoted; the table name is one identifier.
//   - ResetReadModel (called by projection.Projection.Rebuild) deletes the
//     rows and stored states of one partition, or of all of them.
//
// # Failures
//
// Configuration errors match projection.ErrInvalidConfig and name the
// field (readmodel.Config.Table is empty; an evolver's Go type the codec
// does not know is named with its index in Config.Evolvers). ExtractKeys changing its key
// columns is a *[KeySetError] ([ErrKeySetChanged]); a stored state that is
// not valid JSON for S is a *[StateParseError] ([ErrInvalidState]) showing
// at most 200 characters of it. Errors of ExtractKeys, Evolve and the
// database are wrapped with the table and the event; they fail the
// engine's transaction, whose engine then retries or reports them.
package readmodel
