// Package bench is `troupe bench`: a cart workload against PostgreSQL,
// run through Troupe's actor host and through a stateless command handler on
// the same store, plus the projection, lag, memory, stream-length and
// pgbench measurements the benchmark report is made of.
//
// # The workload
//
// T tenants each keep N carts open. A cart's life is CreateCart, K AddItem
// commands (SKUs sku-1..sku-K) and CheckoutCart; when a cart is checked out
// its slot starts a new cart, so the working set stays T×N carts for as long
// as a run lasts. C senders pick a random cart with work left and send its
// next command, so two senders can add items to one cart at the same time
// (as two browser tabs would); a cart's create is answered before its first
// add and its checkout is sent after its last add is answered. Every
// command produces exactly one event.
//
// The cart is the benchmark's own domain, package benchcart: the cart
// example's aggregate cut down to that life, with the same event names and
// stored JSON (about 200 bytes an event) and a read model with the same
// columns (table bench_carts), so the figures compare with the published
// ones while the troupe command depends on no example.
//
// The two modes share the store (store/postgres on one pool) and the
// workload:
//
//   - actor: actor.Host with the cart decider: state cached per stream, one
//     append per command, group commit for commands queued on one stream.
//   - stateless: for every command, store.AggregateStream reads and folds the
//     whole stream, Decide runs, and the append expects exactly the version
//     read; a version conflict is retried (same retry policy as the host:
//     5 attempts, jittered backoff from 2ms to 100ms) — what Emmett's
//     CommandHandler and the seed do.
//
// A throughput run lasts Config.Duration after Config.Warmup; commands
// answered in that window count. Database round trips are counted by a pgx
// query and batch tracer on the mode's pool: a statement, a pipelined batch
// and a transaction's BEGIN and COMMIT each count one.
//
// # Isolation
//
// Every measurement runs in a scratch database of its own (CREATE DATABASE
// troupe_bench_…, dropped afterwards), on a throwaway server from
// internal/pgserver unless Config.DatabaseURL names one whose role may create
// databases. Nothing outside the scratch databases is written.
//
// # Failures
//
// A measurement that cannot run (no database, pgbench missing when asked
// for) returns an error naming it. Failed commands are not errors of the
// benchmark: they are counted per mode (Errors) with the first message kept.
// Cancelling the context stops the benchmark at the next step boundary or
// command and returns the context's error.
package bench
