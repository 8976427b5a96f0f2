// Package cli is Troupe's operator command line as a package: a service
// links it into its own binary, registers its projections, and gets the
// commands to migrate the schema, manage tenants, read and archive streams,
// and report on and rebuild every projection it registered. The troupe
// command (cmd/troupe) is this package with no projection registered, plus
// the benchmark.
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
//		code := cli.Run(ctx, os.Args[1:], &cli.Config{
//			Name:        "orders admin",
//			Projections: []cli.Projection{{Name: "orders", New: newOrdersProjection}},
//		})
//		stop()
//		os.Exit(code)
//	}
//
// The commands (every one takes --help):
//
//	migrate [apply] [--to N]        apply the embedded schema migrations (up to version N)
//	migrate status                  list migrations, whether they are applied, the current version
//	migrate export <dir> [--format] write the migrations for goose or golang-migrate
//	tenants create <id> [--name]    register a tenant and create its partitions
//	tenants list [--format json]    list registered tenants
//	tenants drop <id> [--yes]       erase a tenant (asks for confirmation)
//	streams read <id>               print a stream's events (JSON lines or a table)
//	streams archive <id>            archive a stream
//	projections list                the projections registered in this binary
//	projections status [name]       name, state, checkpoint, lag and last error
//	projections rebuild <name>      reset and replay a registered projection, with progress
//
// The database comes from --database-url or, when that is empty, the
// DATABASE_URL environment variable. Config.Commands adds commands of the
// binary's own next to these; their Run method gets the run's *Env.
//
// # Projections
//
// `projections status` is generic: it reads the checkpoint (subscriptions)
// and status (projection_status) tables, so it reports every continuous
// projection and consumer of the database, whichever process runs them.
// `projections rebuild <name>` needs the projection's handlers, which are
// code, so it rebuilds only the projections registered in Config.Projections
// (`projections list` shows them); any other name is an error listing the
// registered ones. Continuous projections, read models and consumers are
// registered with Projection.New, per-stream projections with
// Projection.PerStream: their rebuild resets the read model and the
// checkpoints in one transaction, then drains every stream. A rebuild waits for
// the projection's lease when another process runs it, and cancelling the
// context (Ctrl-C with a signal context) stops it cleanly between batches:
// what was applied stays committed with its checkpoint, and the projection
// catches up from there.
//
// # Guarantees
//
//   - Run never exits the process and never reads os.Args: it returns the
//     exit status, so it can be embedded under a subcommand of a larger
//     binary and tested in-process.
//   - `tenants drop` erases nothing unless standard input confirms with "y"
//     or "yes", or --yes is given.
//   - A command touches only the database it is given.
//
// # Exit status
//
// ExitOK (0) on success, ExitError (1) when the command failed (the reason
// is printed on standard error), ExitUsage (2) for a usage mistake (unknown
// command or flag, missing argument, bad flag value). An invalid Config is
// reported as a failure (1) naming the bad field.
package cli
