package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
)

// Exit statuses Run returns.
const (
	// ExitOK: the command succeeded.
	ExitOK = 0
	// ExitError: the command failed; the reason is on standard error.
	ExitError = 1
	// ExitUsage: a usage mistake (unknown command or flag, missing
	// argument, a bad flag value found by a command).
	ExitUsage = 2
)

// EnvDatabaseURL is the environment variable read when --database-url is
// empty.
const EnvDatabaseURL = "DATABASE_URL"

// Config configures Run. A nil *Config means every default.
type Config struct {
	// Name is the command's name in usage lines and error messages, e.g.
	// "troupe" or "cart admin". Defaults to "troupe".
	Name string
	// Description is the first line of the top-level help. Defaults to a
	// sentence naming the built-in commands.
	Description string
	// Projections are the projections `projections rebuild <name>` can
	// rebuild, by name. Defaults to none: `projections status` still reports
	// every projection of the database.
	Projections []Projection
	// Commands are added next to the built-in commands. Defaults to none.
	Commands []Command
	// Stdin is read by the confirmation prompt of `tenants drop`. Defaults
	// to os.Stdin.
	Stdin io.Reader
	// Stdout receives the commands' output. Defaults to os.Stdout.
	Stdout io.Writer
	// Stderr receives errors, prompts, progress bars and the library logs.
	// Defaults to os.Stderr.
	Stderr io.Writer
	// Getenv reads the environment (DATABASE_URL). Defaults to os.Getenv.
	Getenv func(string) string
	// Upcaster brings the events `streams read` prints to the current
	// schema of their types, as the service's own store does
	// (postgres.Config.Upcaster): usually the service's store.JSONCodec.
	// `streams read --raw` prints them as stored. Defaults to nil: events
	// are printed as stored.
	Upcaster store.Upcaster
}

// Projection is a projection a service registers so `projections rebuild
// <Name>` can rebuild it. A projection's handlers are code, so only the
// projections a binary registers can be replayed by it.
//
// A continuous projection (package projection), a read model run by one
// (projection/readmodel) and a consumer (projection/consumer, through its
// Projection method) are registered with New; a per-stream projection
// (projection/perstream) with PerStream. Exactly one of the two is set.
type Projection struct {
	// Name is the argument of `projections rebuild` and must be the name
	// New gives the projection (its checkpoint, lease and status row), or
	// the subscription id of a per-stream projection. Required.
	Name string
	// Help describes the projection in one line of `projections list` and
	// of the rebuild help. Defaults to "".
	Help string
	// New returns the projection on pool, not running, with
	// opts.BatchSize and opts.Logger applied. It may create the read
	// model's tables when they are missing.
	New func(ctx context.Context, pool *pgxpool.Pool, opts ProjectionOptions) (*projection.Projection, error)
	// PerStream registers a per-stream projection instead of New.
	PerStream *PerStream
}

// kind names the engine of a registered projection in `projections list`.
func (p Projection) kind() string {
	if p.PerStream != nil {
		return "per-stream"
	}
	return "continuous"
}

// ProjectionOptions are what the command line sets on a projection it
// builds through Projection.New.
type ProjectionOptions struct {
	// BatchSize is the most events applied per transaction (--batch-size).
	BatchSize int
	// Logger receives the projection's logs (--log-level).
	Logger *slog.Logger
}

// Command is a command added to the built-in ones.
type Command struct {
	// Name of the command. Required; it must not be a built-in command's.
	Name string
	// Help is the command's one-line description. Defaults to "".
	Help string
	// Cmd is a kong command: a pointer to a struct whose tagged fields are
	// its flags, arguments and subcommands and whose Run(*Env) error method
	// runs it. Required.
	Cmd any
}

// builtin are the names of the built-in commands.
var builtin = []string{"migrate", "tenants", "streams", "projections"}

// withDefaults returns a copy of c with every unset field defaulted.
func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Name == "" {
		out.Name = "troupe"
	}
	if out.Description == "" {
		out.Description = "Operate a Troupe event store: migrations, tenants, streams and projections."
	}
	if out.Stdin == nil {
		out.Stdin = os.Stdin
	}
	if out.Stdout == nil {
		out.Stdout = os.Stdout
	}
	if out.Stderr == nil {
		out.Stderr = os.Stderr
	}
	if out.Getenv == nil {
		out.Getenv = os.Getenv
	}
	return out
}

// validate names the first bad field.
func (c *Config) validate() error {
	seen := map[string]bool{}
	for i, p := range c.Projections {
		switch {
		case p.Name == "":
			return fmt.Errorf("cli.Config.Projections[%d].Name: empty", i)
		case seen[p.Name]:
			return fmt.Errorf("cli.Config.Projections[%d].Name: %q is registered twice", i, p.Name)
		case p.New == nil && p.PerStream == nil:
			return fmt.Errorf("cli.Config.Projections[%d].New: nil and no PerStream (projection %q): set one", i, p.Name)
		case p.New != nil && p.PerStream != nil:
			return fmt.Errorf("cli.Config.Projections[%d].PerStream: set together with New (projection %q): set one", i, p.Name)
		case p.PerStream != nil && p.PerStream.New == nil:
			return fmt.Errorf("cli.Config.Projections[%d].PerStream.New: nil (projection %q)", i, p.Name)
		}
		seen[p.Name] = true
	}
	cmds := map[string]bool{}
	for _, b := range builtin {
		cmds[b] = true
	}
	for i, cmd := range c.Commands {
		switch {
		case cmd.Name == "":
			return fmt.Errorf("cli.Config.Commands[%d].Name: empty", i)
		case cmds[cmd.Name]:
			return fmt.Errorf("cli.Config.Commands[%d].Name: %q is taken", i, cmd.Name)
		case cmd.Cmd == nil:
			return fmt.Errorf("cli.Config.Commands[%d].Cmd: nil (command %q)", i, cmd.Name)
		}
		cmds[cmd.Name] = true
	}
	return nil
}

// streams are the standard streams a run reads and writes.
type streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// root is the command line.
type root struct {
	DatabaseURL string   `name:"database-url" placeholder:"URL" help:"PostgreSQL connection string. Defaults to the DATABASE_URL environment variable."`
	LogLevel    string   `name:"log-level" enum:"debug,info,warn,error" default:"warn" help:"Level of the library logs written to standard error (${enum})."`
	Help        helpFlag `short:"h" help:"Show context-sensitive help."`

	Migrate     migrateCmd     `cmd:"" help:"Apply or inspect the schema migrations."`
	Tenants     tenantsCmd     `cmd:"" help:"Create, list and drop tenants."`
	Streams     streamsCmd     `cmd:"" help:"Read and archive event streams."`
	Projections projectionsCmd `cmd:"" help:"Report on and rebuild projections."`
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

// Env is what every command's Run gets: the run's context, standard
// streams and settings. Commands added with Config.Commands take it as
// the argument of their Run method.
type Env struct {
	ctx         context.Context
	io          streams
	getenv      func(string) string
	dbURL       string
	logger      *slog.Logger
	name        string
	projections map[string]Projection
	upcaster    store.Upcaster // Config.Upcaster
}

// Context returns the run's context, cancelled by Ctrl-C when the caller
// passed a signal context to Run.
func (e *Env) Context() context.Context { return e.ctx }

// Stdout returns the standard output of the run.
func (e *Env) Stdout() io.Writer { return e.io.Out }

// Stderr returns the standard error of the run.
func (e *Env) Stderr() io.Writer { return e.io.Err }

// Logger returns the logger for library components, at --log-level.
func (e *Env) Logger() *slog.Logger { return e.logger }

// DatabaseURL returns --database-url or, when it is empty, the
// DATABASE_URL environment variable; "" when neither is set.
func (e *Env) DatabaseURL() string {
	if e.dbURL != "" {
		return e.dbURL
	}
	return e.getenv(EnvDatabaseURL)
}

// errNoDatabase is returned by commands that need a database when none is
// configured.
var errNoDatabase = errors.New("no database: pass --database-url or set " + EnvDatabaseURL)

// Pool connects to the configured database (DatabaseURL) with a pool of
// at most 8 connections. The caller closes the pool.
func (e *Env) Pool() (*pgxpool.Pool, error) {
	url := e.DatabaseURL()
	if url == "" {
		return nil, errNoDatabase
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse the database URL: %w", err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(e.ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	if err := pool.Ping(e.ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	return pool, nil
}

// withPool runs fn with a pool on the configured database.
func (e *Env) withPool(fn func(*pgxpool.Pool) error) error {
	pool, err := e.Pool()
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(pool)
}

// projectionNames returns the registered projections' names, sorted.
func (e *Env) projectionNames() []string {
	names := make([]string, 0, len(e.projections))
	for n := range e.projections {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Run parses args (the command line without the program name) and runs the
// selected command. It returns the exit status (ExitOK, ExitError or
// ExitUsage) and never exits the process; errors are written to
// cfg.Stderr. Cancelling ctx stops the running command.
func Run(ctx context.Context, args []string, cfg *Config) int {
	c := cfg.withDefaults()
	io := streams{In: c.Stdin, Out: c.Stdout, Err: c.Stderr}
	if err := c.validate(); err != nil {
		fmt.Fprintf(io.Err, "%s: %v\n", c.Name, err)
		return ExitError
	}
	env := &Env{ctx: ctx, io: io, getenv: c.Getenv, name: c.Name, projections: map[string]Projection{}, upcaster: c.Upcaster}
	for _, p := range c.Projections {
		env.projections[p.Name] = p
	}
	known := "none (a service registers its own with cli.Config.Projections)"
	if names := env.projectionNames(); len(names) > 0 {
		var parts []string
		for _, n := range names {
			if h := env.projections[n].Help; h != "" {
				n += " (" + h + ")"
			}
			parts = append(parts, n)
		}
		known = strings.Join(parts, ", ")
	}
	opts := []kong.Option{
		kong.Name(c.Name),
		kong.Description(c.Description),
		kong.NoDefaultHelp(),
		kong.Writers(io.Out, io.Err),
		kong.Exit(func(int) {}), // never exit the process: Run returns the status
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"default_partition": store.DefaultPartition, "projections": known, "name": c.Name},
	}
	for _, cmd := range c.Commands {
		opts = append(opts, kong.DynamicCommand(cmd.Name, cmd.Help, "", cmd.Cmd))
	}
	var r root
	parser, err := kong.New(&r, opts...)
	if err != nil {
		fmt.Fprintf(io.Err, "%s: %v\n", c.Name, err)
		return ExitError
	}
	kctx, err := parser.Parse(args)
	if errors.Is(err, errHelpShown) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(io.Err, "%s: %v\n", c.Name, err)
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil {
			if sel := pe.Context.Selected(); sel != nil {
				fmt.Fprintf(io.Err, "Run \"%s --help\" for usage.\n", sel.FullPath())
			} else {
				fmt.Fprintf(io.Err, "Run \"%s --help\" for usage.\n", c.Name)
			}
		}
		return ExitUsage
	}
	env.dbURL, env.logger = r.DatabaseURL, newLogger(io.Err, r.LogLevel)
	if err := kctx.Run(env, &r.Migrate); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(io.Err, "%s: %v\n", c.Name, err)
			return ExitUsage
		}
		fmt.Fprintf(io.Err, "%s: error: %v\n", c.Name, err)
		return ExitError
	}
	return ExitOK
}

// usageError is a command-line mistake found after parsing (a bad flag
// combination); it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Usagef returns a usage mistake found by a command after parsing (a bad
// flag value or combination): Run prints it and returns ExitUsage.
func Usagef(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}

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
