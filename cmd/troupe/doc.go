// Command troupe is Troupe's operator tool: it migrates the schema, manages
// tenants, reads and archives streams, reports on projections, and runs the
// benchmark.
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
//	projections rebuild <name>      rebuild a registered projection (none here)
//	bench                           the cart benchmark, actor host vs stateless
//	bench --cluster                 local vs remote owner, 1 vs 3 members (members are child processes)
//
// Every command but bench is package cli (github.com/troupehq/troupe/cli)
// with no projection registered. `projections status` reports every
// projection of the database, but rebuilding one needs its handlers, which
// are code: a service embeds package cli in its own binary and registers its
// projections there (the cart example does: `go run ./examples/cart admin
// projections rebuild carts`).
//
// The database comes from --database-url or, when that is empty, the
// DATABASE_URL environment variable; bench starts a throwaway PostgreSQL
// when neither is set. bench measures a cart domain of its own
// (internal/bench/benchcart), shaped like the cart example's.
//
// # Exit status
//
// 0 on success, 1 when the command failed (the reason is printed on standard
// error), 2 for a usage error (unknown command or flag, missing argument).
package main
