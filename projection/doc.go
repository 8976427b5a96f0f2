// Package projection turns the event log into read models on PostgreSQL
// with a continuous projection, and holds what every projection engine
// shares: handlers ([Handler], [Registry], [BatchHandler]), handler errors,
// status, rebuild, dead letters and leases.
//
// A [Projection] reads the global log with the store's gap-free ReadAll
// from its checkpoint, batch by batch, and commits the read-model writes
// and the new checkpoint in one transaction per batch. It wakes on the
// store's NOTIFY and polls as a fallback, can be limited to one partition
// (tenant), retries failing events and then stops or dead-letters them,
// rebuilds, reports status and lag, lets callers wait for their writes,
// and runs in one process at a time (advisory-lock lease) with others
// standing by. Create it with New(pool, cfg); LoadStatus reads any
// projection's status from any postgres.DB.
//
// Handlers can name Go event types instead of type strings: [On] makes a
// handler receiving its events decoded by a codec, and [NewRegistry] keys
// them by the codec's names for their Go types (an unregistered Go type is
// a configuration error naming it).
//
// The other engines each have a package:
//
//   - projection/readmodel: read models whose rows hold the fold of an
//     Evolve function over the events of their key (the seed's "snapshot
//     projections", not to be confused with aggregate snapshots), usable
//     as per-event handlers or as a [BatchHandler] of a Projection.
//   - projection/perstream: the seed's per-stream runner, projecting one
//     stream's next events on demand.
//   - projection/consumer: the seed's consumer, handlers subscribed per
//     event type or to every event, running on a Projection.
//
// # Connections
//
// A running Projection (or consumer) holds one connection of its own, the
// lease connection, opened from its pool's configuration. Notifications
// arrive on one LISTEN connection per pool, shared by every projection and
// consumer of the process running on that pool: opened when the first one
// starts, closed when the last one stops. So N projections on one pool
// hold N+1 connections besides the pool's. New needs a *pgxpool.Pool for
// that reason.
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
//   - A runner that lost its lease writes nothing: every checkpoint and
//     status write checks, in its transaction, that the runner's lease
//     backend still holds the lock and that the runner still owns the
//     projection_status row (which a runner taking over claims before it
//     reads the checkpoint), so a stale runner's batch, dead letter or
//     status never commits after a takeover.
//   - Notifications only hasten reads: a lost one (the listener's
//     connection dropped) delays an event by at most the poll interval,
//     and every (re)connection of the listener wakes each projection to
//     read.
//
// # Storage
//
// Continuous projections and consumers checkpoint a store.Position in the
// subscriptions table (subscription_id = the projection's name, partition =
// its partition or [AllPartitions]). Status and dead letters live in
// projection_status and projection_dead_letters, which come with schema
// version 2 of store/postgres (postgres.Migrate applies it).
//
// # Telemetry
//
// With Config.Telemetry (or providers; the OpenTelemetry globals by
// default) every batch a [Projection] commits is a "projection <name>" span
// ("consumer <name>" for a consumer) covering its handler writes and its
// checkpoint: a child of the command span whose events it applies when they all come from one
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
// Configuration errors of this package and its sub-packages match
// [ErrInvalidConfig] and name the field as pkg.Config.Field. Handler
// failures are *[HandlerError] (matching [ErrHandlerFailed]) naming the
// event. Database errors are wrapped with what was being done; a running
// projection retries them with backoff for as long as it runs (they are not
// the handler's failure and never dead-letter an event). So are transient
// database errors a handler returns (wrapped with %w): serialization
// failures, deadlocks, lock and statement timeouts, connection losses, a
// server shutting down or out of resources (docs/projections.md lists the
// SQLSTATEs); only the handler's own errors and database errors that would
// recur (a constraint violation, a type error) count as attempts. A listener that
// loses its connection logs projection_listener_failed and reconnects after
// a second; meanwhile projections poll.
package projection
