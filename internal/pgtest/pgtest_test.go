package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// helperEnv selects a helper mode when this test binary is re-run as a
// child process by the tests below.
const helperEnv = "TROUPE_PGTEST_HELPER"

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// leakStop is never closed: the "leak" helper leaves a goroutine waiting on
// it, as a package whose code forgot to stop something would.
var leakStop = make(chan struct{})

func leakForever() { <-leakStop }

func exists(t *testing.T, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), AdminConnString(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var found bool
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&found))
	return found
}

func currentDatabase(t *testing.T, connString string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), connString)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var name string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&name))
	return name
}

func TestNewDatabaseIsFreshAndDroppedAfterTheTest(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("inner", func(t *testing.T) {
		connString := NewDatabase(t)
		name = currentDatabase(t, connString)
		require.True(t, strings.HasPrefix(name, "test_testnewdatabaseisfresh"), name)
		require.True(t, exists(t, name))

		// Empty: no user tables.
		conn, err := pgx.Connect(context.Background(), connString)
		require.NoError(t, err)
		var tables int
		require.NoError(t, conn.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables))
		require.Zero(t, tables)
		// An open session does not prevent the drop.
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		_, err = conn.Exec(context.Background(), "CREATE TABLE t (id int)")
		require.NoError(t, err)
	})
	require.NotEmpty(t, name)
	require.False(t, exists(t, name), "database %s still exists after its test", name)
}

func TestNewPoolGivesEachParallelTestItsOwnDatabase(t *testing.T) {
	t.Parallel()
	const tests = 8
	var (
		mu    sync.Mutex
		names = map[string]bool{}
	)
	t.Run("group", func(t *testing.T) {
		for i := range tests {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				pool := NewPool(t)
				require.EqualValues(t, PoolMaxConns, pool.Config().MaxConns)
				ctx := context.Background()
				_, err := pool.Exec(ctx, "CREATE TABLE marker (n int)")
				require.NoError(t, err, "another test's table is visible here")
				_, err = pool.Exec(ctx, "INSERT INTO marker VALUES ($1)", i)
				require.NoError(t, err)
				var n, count int
				require.NoError(t, pool.QueryRow(ctx, "SELECT min(n), count(*) FROM marker").Scan(&n, &count))
				require.Equal(t, i, n)
				require.Equal(t, 1, count)
				var name string
				require.NoError(t, pool.QueryRow(ctx, "SELECT current_database()").Scan(&name))
				mu.Lock()
				names[name] = true
				mu.Unlock()
			})
		}
	})
	require.Len(t, names, tests)
	for name := range names {
		require.False(t, exists(t, name), "database %s still exists after its test", name)
	}
}

func TestDatabaseName(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^test_([a-z0-9_]*[a-z0-9]_)?[0-9a-f]{12}$`)
	for _, testName := range []string{
		"TestX",
		"TestX/sub_test#01",
		"Test/ünïcödé/..//",
		strings.Repeat("TestVeryLongName/", 20),
		"",
	} {
		a, err := databaseName(testName)
		require.NoError(t, err)
		b, err := databaseName(testName)
		require.NoError(t, err)
		require.NotEqual(t, a, b, "names must be unique")
		require.Regexp(t, valid, a)
		require.LessOrEqual(t, len(a), 63, "PostgreSQL truncates identifiers past 63 bytes")
		require.NotContains(t, a, "__")
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5/postgres?sslmode=disable", "postgres://u:p@h:5/test_x?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/test_x"},
		{"postgres://h/db?dbname=other&sslmode=disable", "postgres://h/test_x?sslmode=disable"},
		{"host=h port=5 dbname=postgres", "host=h port=5 dbname=postgres dbname=test_x"},
		{"host=/run/pg", "host=/run/pg dbname=test_x"},
	} {
		got, err := withDatabase(tc.in, "test_x")
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
		cfg, err := pgconn.ParseConfig(got)
		require.NoError(t, err)
		require.Equal(t, "test_x", cfg.Database, got)
	}
}

// runHelper re-runs this test binary with TestHelper selected, the given
// helper mode and DATABASE_URL value, and returns its combined output and
// exit error.
func runHelper(t *testing.T, mode, databaseURL string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelper$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, EnvDatabaseURL+"="+databaseURL)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// TestHelper does the child's side of the tests below; it does nothing in a
// normal run.
func TestHelper(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	admin := AdminConnString(t)
	if url := os.Getenv(EnvDatabaseURL); url != "" {
		require.Equal(t, url, admin, "DATABASE_URL is not the admin connection")
		require.Nil(t, harness.server, "a server was started although DATABASE_URL is set")
	} else {
		require.NotNil(t, harness.server, "no server was started although DATABASE_URL is unset")
		fmt.Printf("server-dir=%s\n", harness.server.Dir())
	}
	pool := NewPool(t)
	require.NoError(t, pool.Ping(context.Background()))
	if mode == "leak" {
		go leakForever()
	}
	fmt.Printf("helper-ok\n")
}

func TestMainUsesDatabaseURL(t *testing.T) {
	t.Parallel()
	out, err := runHelper(t, "plain", AdminConnString(t))
	require.NoError(t, err, out)
	require.Contains(t, out, "helper-ok")
	require.NotContains(t, out, "server-dir=")
}

func TestMainStartsAndStopsAServerWithoutDatabaseURL(t *testing.T) {
	t.Parallel()
	out, err := runHelper(t, "plain", "")
	require.NoError(t, err, out)
	require.Contains(t, out, "helper-ok")
	m := regexp.MustCompile(`server-dir=(\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	require.NoDirExists(t, m[1], "Main did not stop the server")
}

func TestMainFailsOnLeakedGoroutines(t *testing.T) {
	t.Parallel()
	out, err := runHelper(t, "leak", AdminConnString(t))
	require.Error(t, err, out)
	require.Contains(t, out, "helper-ok")
	require.Contains(t, out, "goroutines still running after the tests")
	require.Contains(t, out, "leakForever")
}

// BenchmarkNewDatabase measures what NewDatabase costs a test: CREATE
// DATABASE, reported as create-ms/op, and the DROP at cleanup, drop-ms/op.
func BenchmarkNewDatabase(b *testing.B) {
	AdminConnString(b)
	ctx := context.Background()
	var create, drop time.Duration
	for b.Loop() {
		name, err := databaseName(b.Name())
		require.NoError(b, err)
		ident := pgx.Identifier{name}.Sanitize()
		began := time.Now()
		_, err = harness.admin.Exec(ctx, "CREATE DATABASE "+ident)
		require.NoError(b, err)
		created := time.Now()
		_, err = harness.admin.Exec(ctx, "DROP DATABASE "+ident+" WITH (FORCE)")
		require.NoError(b, err)
		create += created.Sub(began)
		drop += time.Since(created)
	}
	b.ReportMetric(float64(create.Milliseconds())/float64(b.N), "create-ms/op")
	b.ReportMetric(float64(drop.Milliseconds())/float64(b.N), "drop-ms/op")
}
