// Package perstream projects one stream's events on demand: the seed's
// projection runner.
//
// [Runner.ProjectEvents] reads the next events of a stream after a
// subscription's checkpoint, runs the handlers a projection.Registry holds
// for each event's type and advances the checkpoint, all in one
// transaction; [Runner.Drain] repeats until caught up. The checkpoint is
// kept per (subscription id, partition, stream id) in
// projection_stream_checkpoints (schema version 2 of store/postgres), as
// the stream position of the last event projected.
//
// Create a Runner with New(db, cfg): db is a pool, a connection or a
// transaction (postgres.DB); with a transaction, each call runs in a
// savepoint of it.
//
// # Guarantees
//
//   - Handler writes (through the transaction they are given) and the
//     checkpoint commit together or not at all.
//   - Creating a checkpoint never resets an existing one.
//   - The checkpoint row is locked while a call runs, so concurrent calls
//     for one subscription and stream run one after the other and never
//     apply an event twice.
//
// # Failures
//
// A handler error rolls the call back and is returned as a
// *projection.HandlerError naming the event; the checkpoint stays before
// the batch. Invalid arguments match store.ErrInvalidArgument; database
// errors are wrapped with the stream, partition and subscription.
// Configuration errors match projection.ErrInvalidConfig.
package perstream
