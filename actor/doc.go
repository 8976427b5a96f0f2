// Package actor is Troupe's aggregate runtime: it keeps every active event
// stream as an in-process actor (on protoactor-go) that holds the stream's
// decider state in memory, so a command costs one append instead of a
// re-read of the stream.
//
// A [Host] is created from a [Config] (an event store, a default codec, a
// logger and optional OpenTelemetry providers). Aggregate kinds are added
// with [Register], which returns a typed [Aggregate] handle; commands are
// sent with [Aggregate.Send] and the state is read with [Aggregate.State].
// The package is the only one in Troupe that imports protoactor-go.
//
//	h, _ := actor.New(st, &actor.Config{Codec: codec})
//	counters, _ := actor.Register(h, actor.Kind[Cmd, Event, State]{
//		Name:    "counter",
//		Decider: counterDecider,
//		Route:   func(c Cmd) (string, store.StreamID) { return c.Tenant, store.StreamID(c.ID) },
//	})
//	_ = h.Start(ctx)
//	defer h.Stop(ctx)
//	res, err := counters.Send(ctx, Cmd{Tenant: "acme", ID: "c-1", By: 1})
//
// # Guarantees
//
//   - One actor per (tenant, kind, stream id) per host. It handles commands
//     one at a time in mailbox order; on activation it rebuilds its state
//     from the latest aggregate snapshot (if the kind takes snapshots) plus
//     the events after it.
//   - The actor's state is never ahead of the store: it advances only after
//     a successful append with expected version = the actor's version. After
//     a failure whose outcome is unknown (connection lost during commit) the
//     actor reads the tail after its version before its next command.
//   - Correctness across processes rests on the store's version check, not
//     on an actor being alone: on a version conflict the actor waits a
//     jittered backoff, reads only the tail after its version, decides the
//     same command again and retries (Config.Retry, 5 attempts by default).
//   - Group commit: while an append is in flight, further commands for the
//     stream queue up; when it finishes they are decided one by one against
//     the speculative state and written as one append (at most
//     Config.MaxBatch commands), each answered separately. A command whose
//     decide fails is answered with its error and does not sink the batch.
//   - Idempotent commands: a command sent with SendOptions.CommandID that was
//     already applied to the stream returns its original result with
//     Result.Duplicate set and appends nothing. The events of such a command
//     get deterministic message ids and carry the id in their metadata, so
//     this also holds after a restart and across processes, within the
//     actor's window of recent ids (Config.CommandIDWindow).
//   - Bounded memory: at most Config.MaxActors actors are alive; the least
//     recently used one is passivated to make room, and actors idle for
//     Config.IdleTimeout are passivated by a scan owned by the host (not
//     protoactor's ReceiveTimeout, which races). A passivating actor first
//     answers every command already sent to it; a command for its stream
//     waits for it to stop and goes to the next activation.
//   - Stop drains: new commands fail with [ErrStopped]; every accepted
//     command is answered; in-flight appends and snapshot writes are waited
//     for; the actor system and the idle scanner stop. No goroutine is left.
//
// # Failures
//
// A domain error returned by Decide comes back as it is, marked with
// decider.Rejected: errors.Is matches both decider.ErrRejected and the
// domain's own error, and its message is the domain's. A conflict that
// outlives the retry budget returns an error wrapping the store's
// *store.VersionConflictError. An append with an unknown outcome returns
// [ErrOutcomeUnknown] (re-send with the same command id to be safe). A
// panic in Decide, Evolve, Route, the codec or a snapshot encoder becomes a
// [*PanicError] (matching [ErrPanic]) for that command only: the actor keeps
// running and its state does not advance. A cancelled context returns
// promptly with an error wrapping ctx.Err(); the actor skips a command
// whose caller has gone. A snapshot that cannot be decoded is logged and
// ignored, and the stream is replayed from its start.
//
// # Cluster mode
//
// With Config.Cluster set, the host is a member of a protoactor-go cluster
// (see [ClusterConfig] and docs/cluster.md). Every stream is owned by one
// member at a time, placed by protoactor's identity lookup under the grain
// identity "tenant/kind/stream"; Send and State keep their signatures and
// go to the owner from any member, where the stream actor runs exactly as
// above. Commands, results and states cross the wire through the kind's
// codec (commands must be registered in it too); typed errors arrive as the
// same Go errors, with [Kind.Errors] naming the domain sentinels a
// rejection may match. Placement failures (an unreachable or leaving owner,
// a timeout) are retried with ClusterConfig.Retry and the same command id,
// which Send generates when the caller gave none: correctness rests on the
// store's version check and the command ids, never on a stream being
// active on one member only. Start joins the cluster and Stop leaves it
// gracefully (the other members stop routing here, the local actors drain,
// then the member shuts down). [StaticMembers] is the simplest membership
// provider. Without Config.Cluster nothing of this runs.
//
// Decide and Evolve must be pure and deterministic: commands are decided
// against speculative states that are thrown away when an append fails, so
// Evolve must not change the state it is given in place, and idempotent
// re-sends rely on a command producing the same events again. They run on
// the stream actor's loop, so they must not block or call the host.
package actor
