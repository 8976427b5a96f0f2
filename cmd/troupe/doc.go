// Command troupe is Troupe's operator tool: it migrates the schema, manages
// tenants, reads and archives streams, reports and rebuilds projections, and
// runs the benchmark.
//
//	troupe [--database-url URL] <command> [flags]
//
//	migrate [apply]                 apply the embedded schema migrations
//	migrate status                  list migrations and whether they are applied
//	tenants create <id> [--name]    register a tenant and create its partitions
//	tenants list                    list registered tenants
//	tenants drop <id> [--yes]       erase a tenant (asks for confirmation)
//	streams read <id>               print a stream's events (JSON lines or a table)
//	streams archive <id>            archive a stream
//	projections status              name, state, checkpoint, lag and last error
//	projections rebuild <name>      reset and replay a projection, with progress
//	bench                           the cart benchmark, actor host vs stateless
//
// Every command and subcommand takes --help. The database comes from
// --database-url or, when that is empty, the DATABASE_URL environment
// variable; bench starts a throwaway PostgreSQL when neither is set.
//
// # Projections
//
// `projections status` is generic: it reads the checkpoint (subscriptions)
// and status (projection_status) tables, so it reports every continuous
// projection and consumer of the database, from any process. `projections
// rebuild` needs the projection's handlers, which are code, so it rebuilds
// the projections this binary knows: "carts", the snapshot read model of the
// cart example's service (table carts, keyed by tenant_id, cart_id and
// partition; the same projection as examples/cart/service). A
// service with projections of its own rebuilds them through
// projection.Projection.Rebuild; the status table shows the result either
// way. A rebuild waits for the projection's lease when another process runs
// it, and Ctrl-C stops it cleanly between batches: what was applied stays
// committed with its checkpoint, and the projection catches up from there.
//
// # Exit status
//
// 0 on success, 1 when the command failed (the reason is printed on standard
// error), 2 for a usage error (unknown command or flag, missing argument).
package main
