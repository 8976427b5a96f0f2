package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store/postgres"
)

// Every command and subcommand answers --help (and -h) with status 0 and
// its usage on standard output.
func TestHelpEverywhere(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{nil, "Usage: troupe <command>"},
		{[]string{"migrate"}, "Usage: troupe migrate"},
		{[]string{"migrate", "apply"}, "Usage: troupe migrate apply"},
		{[]string{"migrate", "status"}, "Usage: troupe migrate status"},
		{[]string{"tenants"}, "Usage: troupe tenants"},
		{[]string{"tenants", "create"}, "Usage: troupe tenants create <id>"},
		{[]string{"tenants", "list"}, "Usage: troupe tenants list"},
		{[]string{"tenants", "drop"}, "--yes"},
		{[]string{"streams"}, "Usage: troupe streams"},
		{[]string{"streams", "read"}, "--format"},
		{[]string{"streams", "archive"}, "Usage: troupe streams archive <id>"},
		{[]string{"projections"}, "Usage: troupe projections"},
		{[]string{"projections", "status"}, "Usage: troupe projections status"},
		{[]string{"projections", "list"}, "Usage: troupe projections list"},
		{[]string{"migrate", "export"}, "Usage: troupe migrate export <dir>"},
		{[]string{"projections", "rebuild"}, "Registered in this binary: none"},
	}
	for _, c := range cases {
		for _, flag := range []string{"--help", "-h"} {
			args := append(append([]string{}, c.args...), flag)
			r := troupe(t, invocation{}, args...)
			require.Equal(t, ExitOK, r.code, "troupe %v: %s", args, r.stderr)
			require.Contains(t, r.stdout, c.want, "troupe %v", args)
			require.Contains(t, r.stdout, "--database-url", "troupe %v", args)
			require.Empty(t, r.stderr, "troupe %v", args)
		}
	}
}

// Usage mistakes exit with status 2 and say what is wrong on standard
// error; nothing touches a database.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{nil, "expected one of"},
		{[]string{"bogus"}, "unexpected argument bogus"},
		{[]string{"tenants"}, `expected one of "create", "list", "drop"`},
		{[]string{"tenants", "create"}, "expected \"<id>\""},
		{[]string{"streams", "read", "s", "--format", "xml"}, "--format must be one of"},
		{[]string{"migrate", "--no-such-flag"}, "unknown flag --no-such-flag"},
		{[]string{"streams", "read", "s", "--from", "0", "--database-url", "postgres://127.0.0.1:1/x"}, "--from must be at least 1"},
		{[]string{"projections", "rebuild", "x", "--batch-size", "0", "--database-url", "postgres://127.0.0.1:1/x"}, "--batch-size must be positive"},
	}
	for _, c := range cases {
		r := troupe(t, invocation{}, c.args...)
		require.Equal(t, ExitUsage, r.code, "troupe %v: %s", c.args, r.stderr)
		require.Contains(t, r.stderr, c.want, "troupe %v", c.args)
		require.Empty(t, r.stdout, "troupe %v", c.args)
	}
}

// A command needing a database says how to name one and exits with 1.
func TestNoDatabase(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"migrate"}, {"tenants", "list"}, {"streams", "read", "s"}, {"projections", "status"}} {
		r := troupe(t, invocation{}, args...)
		require.Equal(t, ExitError, r.code, "troupe %v", args)
		require.Contains(t, r.stderr, "no database: pass --database-url or set DATABASE_URL", "troupe %v", args)
	}
	r := troupe(t, invocation{}, "--database-url", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", "migrate", "status")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "troupe: error: connect to the database")
}

// migrate applies every migration once (reading DATABASE_URL when there is
// no flag) and status reports them.
func TestMigrate(t *testing.T) {
	t.Parallel()
	env := map[string]string{EnvDatabaseURL: pgtest.NewDatabase(t)}

	ms, err := postgres.Migrations()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ms), 3)
	var names []string
	for _, m := range ms {
		names = append(names, fmt.Sprintf("%03d_%s", m.Version, m.Name))
	}

	r := ok(t, invocation{env: env}, "migrate", "status")
	require.Regexp(t, `001\s+event_store\s+pending`, r.stdout)
	require.Contains(t, r.stdout, fmt.Sprintf("%d migration(s) pending", len(ms)))

	r = ok(t, invocation{env: env}, "migrate")
	require.Equal(t, fmt.Sprintf("applied %d migration(s): %s\n", len(ms), strings.Join(names, ", ")), r.stdout)

	r = ok(t, invocation{env: env}, "migrate", "apply")
	require.Equal(t, fmt.Sprintf("database is up to date (%d migrations applied)\n", len(ms)), r.stdout)

	r = ok(t, invocation{env: env}, "migrate", "status")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, len(ms)+2, r.stdout)
	latest := ms[len(ms)-1].Version
	require.Equal(t, fmt.Sprintf("database version %d, latest in this binary %d", latest, latest), lines[len(lines)-1])
	require.Regexp(t, `^VERSION\s+NAME\s+STATUS\s+APPLIED AT$`, lines[0])
	for i, m := range ms {
		require.Regexp(t, fmt.Sprintf(`^%03d\s+%s\s+applied\s+\d{4}-\d\d-\d\dT`, m.Version, m.Name), lines[i+1])
	}
	require.NotContains(t, r.stdout, "pending")
}

// migrate --to applies the migrations up to a version; a version below the
// current one or above the latest is refused, changing nothing.
func TestMigrateToVersion(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ms), 3)
	second, latest := ms[1], ms[len(ms)-1].Version
	name := func(m postgres.Migration) string { return fmt.Sprintf("%03d_%s", m.Version, m.Name) }

	r := ok(t, invocation{}, db("migrate", "--to", fmt.Sprint(second.Version))...)
	require.Equal(t, fmt.Sprintf("applied 2 migration(s): %s, %s\n", name(ms[0]), name(second)), r.stdout)
	r = ok(t, invocation{}, db("migrate", "apply", "--to", fmt.Sprint(second.Version))...)
	require.Equal(t, fmt.Sprintf("database is at version %d already (2 migrations applied)\n", second.Version), r.stdout)

	r = ok(t, invocation{}, db("migrate", "status")...)
	require.Regexp(t, fmt.Sprintf(`%03d\s+%s\s+applied`, second.Version, second.Name), r.stdout)
	require.Regexp(t, fmt.Sprintf(`%03d\s+%s\s+pending`, ms[2].Version, ms[2].Name), r.stdout)
	require.Contains(t, r.stdout, fmt.Sprintf("database version %d, latest in this binary %d\n", second.Version, latest))
	require.Contains(t, r.stdout, fmt.Sprintf("%d migration(s) pending", len(ms)-2))

	r = troupe(t, invocation{}, db("migrate", "--to", fmt.Sprint(ms[0].Version))...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, fmt.Sprintf("target version %d is below the database's current version %d", ms[0].Version, second.Version))
	r = troupe(t, invocation{}, db("migrate", "--to", fmt.Sprint(latest+1))...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, fmt.Sprintf("target version %d is above the latest migration this build embeds (%d)", latest+1, latest))
	for _, bad := range []string{"-3", "0"} {
		r = troupe(t, invocation{}, db("migrate", "--to="+bad)...)
		require.Equal(t, ExitUsage, r.code)
		require.Contains(t, r.stderr, "--to must be a positive version, got "+bad)
	}
	r = troupe(t, invocation{}, db("migrate", "status", "--to", "3")...)
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, `--to applies to "migrate apply"`)

	r = ok(t, invocation{}, db("migrate", "--to", fmt.Sprint(latest))...)
	require.Contains(t, r.stdout, fmt.Sprintf("applied %d migration(s)", len(ms)-2))
	r = ok(t, invocation{}, db("migrate", "status")...)
	require.NotContains(t, r.stdout, "pending")

	// A database migrated further by a newer build.
	pool, err := pgxpool.New(testCtx(t), url)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(testCtx(t), `INSERT INTO troupe_schema_migrations (version, name) VALUES ($1, 'from_the_future')`, latest+100)
	require.NoError(t, err)
	r = ok(t, invocation{}, db("migrate", "status")...)
	require.Regexp(t, fmt.Sprintf(`%03d\s+from_the_future\s+applied \(unknown to this build\)`, latest+100), r.stdout)
	require.Contains(t, r.stdout, fmt.Sprintf("database version %d, latest in this binary %d\nthe database was migrated by a newer build", latest+100, latest))
	r = ok(t, invocation{}, db("migrate")...)
	require.Contains(t, r.stdout, "database is up to date")
	r = troupe(t, invocation{}, db("migrate", "--to", fmt.Sprint(latest))...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, fmt.Sprintf("below the database's current version %d", latest+100))
}

// tenants create, list and drop, with the drop confirmation read from
// standard input.
func TestTenants(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	r := ok(t, invocation{}, db("tenants", "create", "acme", "--name", "Acme Corp")...)
	require.Equal(t, "created tenant acme\n", r.stdout)
	r = ok(t, invocation{}, db("tenants", "create", "acme")...)
	require.Contains(t, r.stdout, "tenant acme already exists")
	ok(t, invocation{}, db("tenants", "create", "globex")...)

	r = troupe(t, invocation{}, db("tenants", "create", "bad id;")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "invalid tenant id")

	r = ok(t, invocation{}, db("tenants", "list")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, `^ID\s+NAME\s+CREATED$`, lines[0])
	require.Regexp(t, `^acme\s+Acme Corp\s+\d{4}-`, lines[1])
	require.Regexp(t, `^globex\s+\d{4}-`, lines[2])

	r = ok(t, invocation{}, db("tenants", "list", "--format", "json")...)
	var listed []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &listed))
	require.Equal(t, []string{"acme", "globex"}, []string{listed[0].ID, listed[1].ID})
	require.Equal(t, "Acme Corp", listed[0].Name)

	// The partitions exist while the tenant does.
	partitions := func() int {
		var n int
		require.NoError(t, pool.QueryRow(testCtx(t),
			`SELECT count(*) FROM pg_class WHERE relname = 'messages_t_acme'`).Scan(&n))
		return n
	}
	require.Equal(t, 1, partitions())

	// Not confirmed: "n", an empty line, end of input.
	for _, answer := range []string{"n\n", "\n", "", "maybe\n"} {
		r = troupe(t, invocation{stdin: strings.NewReader(answer)}, db("tenants", "drop", "acme")...)
		require.Equal(t, ExitError, r.code, "answer %q", answer)
		require.Contains(t, r.stderr, "Drop tenant acme and erase all its")
		require.Contains(t, r.stderr, "not confirmed: nothing was dropped")
		require.Equal(t, 1, partitions())
	}

	r = ok(t, invocation{stdin: strings.NewReader("yes\n")}, db("tenants", "drop", "acme")...)
	require.Equal(t, "dropped tenant acme\n", r.stdout)
	require.Equal(t, 0, partitions())
	r = ok(t, invocation{}, db("tenants", "list")...)
	require.NotContains(t, r.stdout, "acme")
	require.Contains(t, r.stdout, "globex")

	// --yes skips the question; dropping an unknown tenant is harmless.
	r = ok(t, invocation{}, db("tenants", "drop", "globex", "--yes")...)
	require.Equal(t, "dropped tenant globex\n", r.stdout)
	require.NotContains(t, r.stderr, "Drop tenant")
	ok(t, invocation{}, db("tenants", "drop", "nobody", "-y")...)
	r = ok(t, invocation{}, db("tenants", "list")...)
	require.Equal(t, "ID  NAME  CREATED\n", r.stdout)
}

// echoCmd is a command a binary adds with Config.Commands.
type echoCmd struct {
	Words []string `arg:"" help:"Words to print."`
	Loud  bool     `help:"Shout."`
}

func (c *echoCmd) Run(e *Env) error {
	if len(c.Words) == 1 && c.Words[0] == "usage" {
		return Usagef("usage mistake in %s", "echo")
	}
	out := strings.Join(c.Words, " ")
	if c.Loud {
		out = strings.ToUpper(out)
	}
	_, err := fmt.Fprintf(e.Stdout(), "%s (db %q)\n", out, e.DatabaseURL())
	return err
}

// Commands added by the binary run next to the built-in ones, with the
// run's Env; their usage mistakes exit with 2. Registered projections are
// listed in the rebuild help, and Config.Name names the binary.
func TestEmbedding(t *testing.T) {
	t.Parallel()
	cfg := func(stdout, stderr *syncBuffer) *Config {
		return &Config{Name: "shop admin", Stdout: stdout, Stderr: stderr, Stdin: strings.NewReader(""),
			Getenv:   func(k string) string { return map[string]string{EnvDatabaseURL: "postgres://env"}[k] },
			Commands: []Command{{Name: "echo", Help: "Print words.", Cmd: &echoCmd{}}},
			Projections: []Projection{
				{Name: "orders", Help: "the orders table", New: func(context.Context, *pgxpool.Pool, ProjectionOptions) (*projection.Projection, error) {
					return nil, errors.New("not built in this test")
				}},
				{Name: "invoices", New: func(context.Context, *pgxpool.Pool, ProjectionOptions) (*projection.Projection, error) {
					return nil, errors.New("not built in this test")
				}},
			}}
	}
	run := func(args ...string) result {
		var stdout, stderr syncBuffer
		code := Run(testCtx(t), args, cfg(&stdout, &stderr))
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}
	r := run("--help")
	require.Equal(t, ExitOK, r.code)
	require.Contains(t, r.stdout, "Usage: shop admin <command>")
	require.Regexp(t, `echo\s.*Print words\.`, r.stdout)

	r = run("echo", "hello", "world", "--loud")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "HELLO WORLD (db \"postgres://env\")\n", r.stdout)
	r = run("--database-url", "postgres://flag", "echo", "hi")
	require.Equal(t, "hi (db \"postgres://flag\")\n", r.stdout)
	r = run("echo", "usage")
	require.Equal(t, ExitUsage, r.code)
	require.Equal(t, "shop admin: usage mistake in echo\n", r.stderr)

	r = run("projections", "rebuild", "--help")
	require.Equal(t, ExitOK, r.code)
	require.Contains(t, strings.Join(strings.Fields(r.stdout), " "), "Registered in this binary: invoices, orders (the orders table).")

	r = run("projections", "rebuild", "carts")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `shop admin: error: projection "carts" is not registered in this binary (registered: invoices, orders)`)
	r = run("bogus")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, `Run "shop admin --help" for usage.`)
}

// An invalid Config fails the run with a message naming the field.
func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	newP := func(context.Context, *pgxpool.Pool, ProjectionOptions) (*projection.Projection, error) {
		return nil, nil
	}
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Projections: []Projection{{New: newP}}}, "cli.Config.Projections[0].Name: empty"},
		{Config{Projections: []Projection{{Name: "a", New: newP}, {Name: "a", New: newP}}}, `cli.Config.Projections[1].Name: "a" is registered twice`},
		{Config{Projections: []Projection{{Name: "a"}}}, "cli.Config.Projections[0].New: nil and no PerStream"},
		{Config{Projections: []Projection{{Name: "a", New: newP, PerStream: &PerStream{}}}}, "cli.Config.Projections[0].PerStream: set together with New"},
		{Config{Projections: []Projection{{Name: "a", PerStream: &PerStream{}}}}, "cli.Config.Projections[0].PerStream.New: nil"},
		{Config{Commands: []Command{{Name: "migrate", Cmd: &echoCmd{}}}}, `cli.Config.Commands[0].Name: "migrate" is taken`},
		{Config{Commands: []Command{{Name: "x"}}}, "cli.Config.Commands[0].Cmd: nil"},
		{Config{Commands: []Command{{Cmd: &echoCmd{}}}}, "cli.Config.Commands[0].Name: empty"},
	}
	for _, c := range cases {
		var stdout, stderr syncBuffer
		c.cfg.Stdout, c.cfg.Stderr = &stdout, &stderr
		require.Equal(t, ExitError, Run(testCtx(t), []string{"migrate", "--help"}, &c.cfg), c.want)
		require.Contains(t, stderr.String(), c.want)
		require.Empty(t, stdout.String())
	}
}

// migrate export writes one file per migration in the layout of the tool
// asked for; applying the files, as that tool would, leaves the database
// migrated with its bookkeeping, so `migrate status` sees every one.
func TestMigrateExport(t *testing.T) {
	t.Parallel()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	for _, format := range []string{"sql", "goose", "golang-migrate"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "troupe")
			r := ok(t, invocation{}, "migrate", "export", dir, "--format", format)
			require.Equal(t, fmt.Sprintf("wrote %d migration(s) to %s (%s)\n", len(ms), dir, format), r.stdout)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, len(ms))

			url := pgtest.NewDatabase(t)
			pool, err := pgxpool.New(testCtx(t), url)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			for i, m := range ms {
				name := fmt.Sprintf("%03d_%s.sql", m.Version, m.Name)
				if format == "golang-migrate" {
					name = fmt.Sprintf("%03d_%s.up.sql", m.Version, m.Name)
				}
				require.Equal(t, name, entries[i].Name())
				body, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				script := string(body)
				if format == "goose" {
					require.True(t, strings.HasPrefix(script, "-- +goose Up\n-- +goose StatementBegin\n"), name)
					require.True(t, strings.HasSuffix(script, "-- +goose StatementEnd\n"), name)
				}
				require.Contains(t, script, m.Script())
				_, err = pool.Exec(testCtx(t), script) // one implicit transaction, as the tools send it
				require.NoError(t, err, name)
			}
			r = ok(t, invocation{}, "--database-url", url, "migrate", "status")
			require.NotContains(t, r.stdout, "pending")
			r = ok(t, invocation{}, "--database-url", url, "migrate")
			require.Contains(t, r.stdout, "database is up to date")
		})
	}
	r := troupe(t, invocation{}, "migrate", "export")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, `expected "<dir>"`)
}
