package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/store"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// envDatabaseURL is the environment variable read when --database-url is
// empty.
const envDatabaseURL = "DATABASE_URL"

// streams are the standard streams a run reads and writes.
type streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// cli is the command line.
type cli struct {
	DatabaseURL string   `name:"database-url" placeholder:"URL" help:"PostgreSQL connection string. Defaults to the DATABASE_URL environment variable."`
	LogLevel    string   `name:"log-level" enum:"debug,info,warn,error" default:"warn" help:"Level of the library logs written to standard error (${enum})."`
	Help        helpFlag `short:"h" help:"Show context-sensitive help."`

	Migrate     migrateCmd     `cmd:"" help:"Apply or inspect the schema migrations."`
	Tenants     tenantsCmd     `cmd:"" help:"Create, list and drop tenants."`
	Streams     streamsCmd     `cmd:"" help:"Read and archive event streams."`
	Projections projectionsCmd `cmd:"" help:"Report on and rebuild projections."`
	Bench       benchCmd       `cmd:"" help:"Run the cart benchmark: the actor host against a stateless handler."`
}

// errHelpShown ends parsing after --help printed the help.
var errHelpShown = errors.New("help shown")

// helpFlag replaces kong's built-in help flag, which exits the process:
// this one prints the help and ends the run with status 0.
type helpFlag bool

// IgnoreDefault keeps kong from running the hook for the unset flag.
func (helpFlag) IgnoreDefault() {}

// BeforeReset prints the help of the selected command.
func (helpFlag) BeforeReset(ctx *kong.Context) error {
	if err := kong.DefaultHelpPrinter(kong.HelpOptions{Compact: true, WrapUpperBound: 100, ValueFormatter: kong.DefaultHelpValueFormatter}, ctx); err != nil {
		return err
	}
	return errHelpShown
}

// app is what every command's Run gets: the run's context, streams and
// settings.
type app struct {
	ctx    context.Context
	io     streams
	getenv func(string) string
	dbURL  string
	logger *slog.Logger
}

// errNoDatabase is returned by commands that need a database when none is
// configured.
var errNoDatabase = errors.New("no database: pass --database-url or set " + envDatabaseURL)

// databaseURL returns the configured connection string, or "" when none is.
func (a *app) databaseURL() string {
	if a.dbURL != "" {
		return a.dbURL
	}
	return a.getenv(envDatabaseURL)
}

// pool connects to the configured database. The caller closes the pool.
func (a *app) pool() (*pgxpool.Pool, error) {
	url := a.databaseURL()
	if url == "" {
		return nil, errNoDatabase
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse the database URL: %w", err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(a.ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	if err := pool.Ping(a.ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	return pool, nil
}

// withPool runs fn with a pool on the configured database.
func (a *app) withPool(fn func(*pgxpool.Pool) error) error {
	pool, err := a.pool()
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(pool)
}

// run parses args and runs the selected command. It returns the exit
// status; errors go to io.Err.
func run(ctx context.Context, args []string, io streams, getenv func(string) string) int {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("troupe"),
		kong.Description("Operate a Troupe event store: migrations, tenants, streams, projections and the benchmark."),
		kong.NoDefaultHelp(),
		kong.Writers(io.Out, io.Err),
		kong.Exit(func(int) {}), // never exit the process: run returns the status
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"default_partition": store.DefaultPartition},
	)
	if err != nil {
		fmt.Fprintf(io.Err, "troupe: %v\n", err)
		return exitError
	}
	kctx, err := parser.Parse(args)
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(io.Err, "troupe: %v\n", err)
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil {
			if sel := pe.Context.Selected(); sel != nil {
				fmt.Fprintf(io.Err, "Run \"%s --help\" for usage.\n", sel.FullPath())
			} else {
				fmt.Fprintln(io.Err, `Run "troupe --help" for usage.`)
			}
		}
		return exitUsage
	}
	a := &app{ctx: ctx, io: io, getenv: getenv, dbURL: c.DatabaseURL, logger: newLogger(io.Err, c.LogLevel)}
	if err := kctx.Run(a); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(io.Err, "troupe: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(io.Err, "troupe: error: %v\n", err)
		return exitError
	}
	return exitOK
}

// usageError is a command-line mistake found after parsing (a bad flag
// combination); it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{msg: fmt.Sprintf(format, args...)} }

// newLogger returns the logger handed to the library, writing text records
// at level and above to w.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
