package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/troupehq/troupe/internal/pgserver"
)

// EnvDatabaseURL names the environment variable holding the connection
// string of an existing server to use instead of starting one. Its role must
// be allowed to CREATE DATABASE.
const EnvDatabaseURL = "DATABASE_URL"

// PoolMaxConns is the MaxConns of pools returned by NewPool.
const PoolMaxConns = 20

const (
	startTimeout = 2 * time.Minute
	adminTimeout = time.Minute
)

// harness is the per-test-binary state: one server (or DATABASE_URL) and
// one admin pool, set up on first use.
var harness struct {
	once sync.Once
	err  error // setup error, returned to every caller

	server    *pgserver.Server // nil when DATABASE_URL is used
	adminConn string
	admin     *pgxpool.Pool

	mu       sync.Mutex
	shutdown bool // Main has stopped everything
}

// setup connects to DATABASE_URL or starts a server, once per process.
func setup() error {
	harness.once.Do(func() {
		harness.err = doSetup()
	})
	if harness.err != nil {
		return harness.err
	}
	harness.mu.Lock()
	defer harness.mu.Unlock()
	if harness.shutdown {
		return errors.New("pgtest: the server was already stopped by Main")
	}
	return nil
}

func doSetup() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	connString := os.Getenv(EnvDatabaseURL)
	source := EnvDatabaseURL
	if connString == "" {
		s, err := pgserver.Start(ctx, pgserver.Options{})
		if err != nil {
			return fmt.Errorf("pgtest: starting a throwaway PostgreSQL (%s is unset): %w", EnvDatabaseURL, err)
		}
		harness.server = s
		connString = s.ConnString()
		source = "the throwaway server"
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return errors.Join(fmt.Errorf("pgtest: parsing the connection string of %s: %w", source, err), stopServer())
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return errors.Join(fmt.Errorf("pgtest: connecting to %s: %w", source, err), stopServer())
	}
	harness.adminConn = connString
	harness.admin = pool
	return nil
}

func stopServer() error {
	if harness.server == nil {
		return nil
	}
	err := harness.server.Stop()
	harness.server = nil
	return err
}

// teardown closes the admin pool and stops the server, if they were set up.
func teardown() error {
	harness.mu.Lock()
	defer harness.mu.Unlock()
	if harness.shutdown {
		return nil
	}
	harness.shutdown = true
	// Make a later setup a no-op that reports shutdown, without racing a
	// concurrent first setup.
	harness.once.Do(func() {})
	if harness.admin != nil {
		harness.admin.Close()
		harness.admin = nil
	}
	return stopServer()
}

// Setup connects to DATABASE_URL or starts the throwaway server, once per
// process, and returns why it could not (an error matching
// pgserver.ErrBinariesNotFound when the server binaries are missing).
// NewDatabase calls it; troupetest calls it first to explain a failure in
// its users' terms.
func Setup() error { return setup() }

// Stop closes the admin pool and stops the throwaway server, if they were
// set up; later NewDatabase calls fail. Main calls it; a TestMain that
// does not use Main (troupetest.Main) calls it after m.Run.
func Stop() error { return teardown() }

// Main runs the tests of a package that uses PostgreSQL, for TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// The server is set up on the first NewDatabase (or NewPool, or
// AdminConnString) call: DATABASE_URL when set, else a throwaway server
// from internal/pgserver. After m.Run, Main stops that server and, when the
// tests passed, checks with goleak that they left no goroutines behind
// (opts add goleak options, e.g. IgnoreTopFunction for a known background
// goroutine of a dependency); a leak makes the run fail. Main returns the
// exit code.
func Main(m *testing.M, opts ...goleak.Option) int {
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: stopping PostgreSQL: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: goroutines still running after the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

// AdminConnString returns the connection string of the server's admin
// database (DATABASE_URL, or the throwaway server's "postgres" database),
// setting the server up if needed. Tests should not write to it; use
// NewDatabase.
func AdminConnString(t testing.TB) string {
	t.Helper()
	if err := setup(); err != nil {
		t.Fatal(err)
	}
	return harness.adminConn
}

// NewDatabase creates an empty database with a unique name and returns its
// connection string. The database is dropped (WITH (FORCE), closing any
// sessions still open) when the test and its subtests finish. Safe to call
// from parallel tests.
//
// Without a Main in the package's TestMain, the first call starts a
// throwaway server that is never stopped: it shuts down when the test
// binary exits, leaving its directory behind. Use Main.
func NewDatabase(t testing.TB) string {
	t.Helper()
	if err := setup(); err != nil {
		t.Fatal(err)
	}
	name, err := databaseName(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := harness.admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if _, err := harness.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	connString, err := withDatabase(harness.adminConn, name)
	if err != nil {
		t.Fatal(err)
	}
	return connString
}

// NewPool creates a database with NewDatabase and returns a pool connected
// to it (MaxConns = PoolMaxConns), closed before the database is dropped.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	connString := NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		t.Fatalf("pgtest: parsing the test database's connection string: %v", err)
	}
	cfg.MaxConns = PoolMaxConns
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: opening a pool on the test database: %v", err)
	}
	// Registered after NewDatabase's cleanup, so it runs before the drop.
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("pgtest: connecting to the test database: %v", err)
	}
	return pool
}

// databaseName is "test_", a lower-case slug of the test name (for finding
// a database while debugging) and a random suffix, within PostgreSQL's
// 63-byte identifier limit.
func databaseName(testName string) (string, error) {
	const maxSlug = 40
	var slug strings.Builder
	lastUnderscore := true
	for _, r := range strings.ToLower(testName) {
		if slug.Len() >= maxSlug {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			slug.WriteRune(r)
			lastUnderscore = false
		} else if !lastUnderscore {
			slug.WriteByte('_')
			lastUnderscore = true
		}
	}
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", fmt.Errorf("pgtest: naming a database: %w", err)
	}
	name := "test_"
	if s := strings.TrimSuffix(slug.String(), "_"); s != "" {
		name += s + "_"
	}
	return name + hex.EncodeToString(suffix[:]), nil
}

// withDatabase returns connString with its database replaced by name. It
// accepts URLs (postgres://, postgresql://) and keyword/value strings.
func withDatabase(connString, name string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("pgtest: parsing the admin connection string: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		q := u.Query()
		if q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// In keyword/value form a later keyword overrides an earlier one.
	return strings.TrimSpace(connString) + " dbname=" + name, nil
}
