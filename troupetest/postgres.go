package troupetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/troupehq/troupe/internal/pgserver"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// EnvDatabaseURL names the environment variable that, when set, holds the
// connection string of an existing PostgreSQL server to use instead of
// starting one. Its role must be allowed to CREATE DATABASE.
const EnvDatabaseURL = "DATABASE_URL"

// MainOption is an option of Main.
type MainOption func(*mainOptions)

type mainOptions struct {
	leaks   bool
	ignore  []goleak.Option
	install bool
}

// NoGoroutineLeaks makes Main fail a passing run that left goroutines
// running (a host or projection not stopped, a pool not closed). ignore
// lists goroutines to tolerate, e.g.
// goleak.IgnoreTopFunction("github.com/some/dep.loop").
func NoGoroutineLeaks(ignore ...goleak.Option) MainOption {
	return func(o *mainOptions) { o.leaks, o.ignore = true, ignore }
}

// Main runs a package's tests and then stops the PostgreSQL server the
// tests started, if any. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(troupetest.Main(m)) }
//
// Without it, a throwaway server started by NewPool or NewDatabase stops
// only when the test binary exits, leaving its directory behind. Main
// returns the exit code for os.Exit.
func Main(m *testing.M, opts ...MainOption) int {
	var o mainOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.install {
		if err := ensurePostgres(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "troupetest: %v\n", err)
			return 1
		}
	}
	code := m.Run()
	if err := pgtest.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "troupetest: stopping PostgreSQL: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 && o.leaks {
		if err := goleak.Find(o.ignore...); err != nil {
			fmt.Fprintf(os.Stderr, "troupetest: goroutines still running after the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

// NewDatabase creates an empty database for the calling test, applies
// Troupe's migrations (postgres.Migrate) and returns its connection
// string. The database is dropped when the test and its subtests end.
//
// The server is the one DATABASE_URL names, or else a throwaway server
// started on first use from the PostgreSQL binaries installed on the
// machine (initdb and postgres, found with pg_config on PATH or under
// /usr/lib/postgresql/<version>/bin) and stopped by Main. Without either,
// the test fails saying how to install them. Safe for parallel tests.
func NewDatabase(t testing.TB) string {
	t.Helper()
	setup(t)
	conn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, conn)
	if err != nil {
		t.Fatalf("troupetest: connecting to the test database: %v", err)
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("troupetest: migrating the test database: %v", err)
	}
	return conn
}

// NewPool creates a migrated database with NewDatabase and returns a pool
// on it, closed when the test ends (before the database is dropped).
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	setup(t)
	pool := pgtest.NewPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("troupetest: migrating the test database: %v", err)
	}
	return pool
}

// setup starts the server (or connects to DATABASE_URL) and fails the
// test with what to do when it cannot.
func setup(t testing.TB) {
	t.Helper()
	err := pgtest.Setup()
	switch {
	case err == nil:
	case errors.Is(err, pgserver.ErrBinariesNotFound):
		t.Fatalf("troupetest: no PostgreSQL server binaries (initdb, postgres) found with pg_config on PATH or under /usr/lib/postgresql/<version>/bin: "+
			"install them (apt-get install postgresql, or troupetest.Main with troupetest.InstallPostgres(); brew install postgresql@17 and put its bin directory on PATH), "+
			"or set %s to a server whose role may CREATE DATABASE (%v)", EnvDatabaseURL, err)
	default:
		t.Fatalf("troupetest: %v", err)
	}
}
