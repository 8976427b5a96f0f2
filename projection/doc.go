// Package projection turns the event log into read models on PostgreSQL.
//
// It has four parts, all actor-free (plain goroutine components):
//
//   - [Runner], the seed's per-stream runner: ProjectEvents reads the next
//     batch of one stream after a subscription's checkpoint, runs the
//     handlers of a [Registry] and advances the checkpoint in one
//     transaction; Drain repeats until caught up.
//   - [SnapshotProjection], the seed's snapshot projections in both
//     variants ([SnapshotInRow], [SnapshotInTable]): each read-model row
//     holds the fold of an Evolve function over the events of its key, as an
//     aggregate would, usable as per-event handlers or as a [BatchHandler]
//     with multi-row writes and an in-memory cache.
//   - [Projection], a continuous projection: reads the global log with the
//     store's gap-free ReadAll from its checkpoint, batch by batch, and
//     commits the read-model writes and the new checkpoint in one
//     transaction per batch. It wakes on the store's NOTIFY and polls as a
//     fallback, can be limited to one partition (tenant), retries failing
//     events and then stops or dead-letters them, rebuilds, reports status
//     and lag, lets callers wait for their writes, and runs in one process
//     at a time (advisory-lock lease) with others standing by.
//   - [Consumer], the seed's consumer on the same engine: handlers
//     subscribed per event type or to every event.
//
// # Guarantees
//
//   - Exactly-once effect: a batch's handler writes (through the pgx.Tx they
//     are given) and its checkpoint commit together or not at all, and a
//     batch commits only if the checkpoint is still where the batch started
//     (compare-and-set), so a crash, a cancelled context, a dropped
//     connection or two runners racing never lose or double-apply an event.
//     Effects outside the transaction are at-least-once.
//   - No skipped events: the log is read in commit-safe order
//     (store.Position), so an event committed late by an older transaction
//     is read before the checkpoint passes it.
//   - A handler error never moves the checkpoint past its event: the batch
//     rolls back, the events are retried one by one with backoff, and then
//     [FailStop] stops at the event (status "failed" names it) or [FailSkip]
//     records it in projection_dead_letters in the transaction that moves
//     the checkpoint past it.
//   - Creating a checkpoint never resets an existing one.
//   - One active runner per projection and partition across processes: a
//     session advisory lock on a dedicated connection; standbys retry and
//     take over when the owner's connection ends.
//   - Snapshot rows are locked while applied (FOR UPDATE), skip events at or
//     before their stored position, call MapToColumns exactly once per
//     applied event, never move backwards, and quote every identifier.
//
// # Storage
//
// Continuous projections and consumers checkpoint a store.Position in the
// subscriptions table (subscription_id = the projection's name, partition =
// its partition or [AllPartitions]). The per-stream runner checkpoints a
// stream position per (subscription, partition, stream) in
// projection_stream_checkpoints. Status and dead letters live in
// projection_status and projection_dead_letters. All three tables come with
// schema version 2 of store/postgres (postgres.Migrate applies it).
//
// # Telemetry
//
// With the TracerProvider and MeterProvider of the configs (the
// OpenTelemetry globals by default) every batch a [Projection] commits is a "projection <name>" span
// ("consumer <name>" for a [Consumer]; the [Runner] names it after the
// subscription) covering its handler writes and its checkpoint: a child of
// the command span whose events it applies when they all come from one
// command, a root span linked to each command span otherwise, found in the
// trace context the actor host saved in the events' metadata. A batch span
// is never a child of the span current when the projection was started.
// Batches record troupe.projection.batch.duration and
// troupe.projection.events; dead-lettered events
// troupe.projection.dead_lettered. While a runner holds the lease it
// reports troupe.projection.lag.events and troupe.projection.lag.time from
// what it already knows (its reads, the store's notifications and the head
// of the log read once when it takes the lease), without querying on
// collection; the callback is unregistered when it stops. docs/telemetry.md
// has the details. Telemetry never makes a batch fail.
//
// # Failures
//
// Configuration errors match [ErrInvalidConfig] and name the field. Handler
// failures are *[HandlerError] (matching [ErrHandlerFailed]) naming the
// event. Snapshot projections return *[KeySetError] ([ErrKeySetChanged])
// when ExtractKeys changes its key columns and *[SnapshotParseError]
// ([ErrInvalidSnapshot]) for a stored snapshot that is not valid JSON, with
// at most 200 characters of it. Database errors are wrapped with what was
// being done; a running projection retries them with backoff for as long as
// it runs (they are not the handler's failure and never dead-letter an
// event).
package projection
