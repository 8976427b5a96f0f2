// Package consumer feeds the global event log to handlers subscribed per
// event type or to every event: the seed's event store consumer, made
// reliable.
//
// A [Consumer] runs on the continuous projection engine
// (projection.Projection): create it with New(pool, cfg), subscribe with
// Subscribe and SubscribeToAll, and run it with Start and Stop or Run. Its
// checkpoint is a row of the subscriptions table under its name; like a
// projection it holds a lease connection of its own while it runs and
// shares the pool's one listener connection.
//
// # Guarantees
//
// Those of a continuous projection: the log is read gap-free; handler
// writes through the batch's transaction commit with the checkpoint
// (exactly-once), other effects are at-least-once; one batch at a time,
// never two polls at once; Stop waits for the batch in flight; one active
// consumer of a name and partition across processes; a failing handler
// stops the consumer at its event (projection.FailStop) or, with
// projection.FailSkip, its event is recorded in projection_dead_letters.
// Each event carries its partition.
//
// # Failures
//
// Configuration errors match projection.ErrInvalidConfig and name the
// field; a handler failure under FailStop is a *projection.HandlerError
// returned by Run and Err.
package consumer
