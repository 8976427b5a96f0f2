package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// quiet is a logger for library components under test.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// result is what one in-process run of the command produced.
type result struct {
	code   int
	stdout string
	stderr string
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a
// progress bar and the command.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// onWrite, when set, sees every write.
	onWrite func(p []byte)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(p)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// invocation describes one run: its context, standard input and
// environment.
type invocation struct {
	ctx   context.Context
	stdin io.Reader
	env   map[string]string
	// stderr, when set, receives standard error (for tests reacting to
	// progress); result.stderr is still filled.
	stderr *syncBuffer
	// projections are registered for the run.
	projections []Projection
	// commands are added to the run.
	commands []Command
	// upcaster is Config.Upcaster.
	upcaster store.Upcaster
}

// troupe runs the command in-process with args.
func troupe(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	if inv.ctx == nil {
		inv.ctx = testCtx(t)
	}
	stdout := &syncBuffer{}
	stderr := inv.stderr
	if stderr == nil {
		stderr = &syncBuffer{}
	}
	if inv.stdin == nil {
		inv.stdin = strings.NewReader("")
	}
	code := Run(inv.ctx, args, &Config{Stdin: inv.stdin, Stdout: stdout, Stderr: stderr,
		Getenv: func(k string) string { return inv.env[k] }, Projections: inv.projections, Commands: inv.commands, Upcaster: inv.upcaster})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs the command and requires exit status 0.
func ok(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	r := troupe(t, inv, args...)
	require.Equal(t, ExitOK, r.code, "troupe %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// testCtx returns a context ending with the test (or after two minutes).
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// migratedDB returns the connection string of a fresh database migrated
// with `troupe migrate`, and a pool on it.
func migratedDB(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	ok(t, invocation{}, "--database-url", url, "migrate")
	pool, err := pgxpool.New(testCtx(t), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return url, pool
}

func newStore(t testing.TB, pool *pgxpool.Pool) *postgres.Store {
	t.Helper()
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return es
}
