package pgserver_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupehq/troupe/internal/pgserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func startServer(t *testing.T, opts pgserver.Options) *pgserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pgserver.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func connect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func setting(t *testing.T, conn *pgx.Conn, name string) string {
	t.Helper()
	var v string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&v))
	return v
}

func TestStartConnectStop(t *testing.T) {
	t.Parallel()
	s := startServer(t, pgserver.Options{})
	require.NotZero(t, s.Port())
	require.DirExists(t, s.Dir())
	require.Contains(t, []string{"/dev/shm", os.TempDir()}, filepath.Dir(s.Dir()))
	require.FileExists(t, s.LogPath())

	conn := connect(t, s.ConnString())
	ctx := context.Background()

	// Tuned for tests, reachable on loopback only.
	require.Equal(t, "off", setting(t, conn, "fsync"))
	require.Equal(t, "off", setting(t, conn, "synchronous_commit"))
	require.Equal(t, "off", setting(t, conn, "full_page_writes"))
	require.Equal(t, "300", setting(t, conn, "max_connections"))
	require.Equal(t, "127.0.0.1", setting(t, conn, "listen_addresses"))
	require.Equal(t, s.SocketDir(), setting(t, conn, "unix_socket_directories"))

	// The role may create databases, and ConnStringFor reaches them.
	_, err := conn.Exec(ctx, "CREATE DATABASE scratch")
	require.NoError(t, err)
	other := connect(t, s.ConnStringFor("scratch"))
	var db string
	require.NoError(t, other.QueryRow(ctx, "SELECT current_database()").Scan(&db))
	require.Equal(t, "scratch", db)

	// The unix socket works too.
	sock := connect(t, "host="+s.SocketDir()+" port="+itoa(s.Port())+" user=postgres dbname=postgres")
	require.NoError(t, sock.Ping(ctx))

	// As root, the cluster belongs to an unprivileged user.
	if os.Geteuid() == 0 {
		info, err := os.Stat(filepath.Join(s.Dir(), "data"))
		require.NoError(t, err)
		require.NotZero(t, info.Sys().(*syscall.Stat_t).Uid, "data directory owned by root")
	}

	require.NoError(t, s.Stop())
	require.NoDirExists(t, s.Dir())
	require.NoError(t, s.Stop(), "a second Stop returns the first result")

	// The server is gone: its open sessions are closed and new ones refused.
	require.Error(t, conn.Ping(ctx))
	dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = pgx.Connect(dialCtx, s.ConnString())
	require.Error(t, err)
}

func TestStartTwoServersConcurrently(t *testing.T) {
	t.Parallel()
	var (
		wg      sync.WaitGroup
		servers [2]*pgserver.Server
		errs    [2]error
	)
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = pgserver.Start(context.Background(), pgserver.Options{})
		}()
	}
	wg.Wait()
	for i, s := range servers {
		require.NoError(t, errs[i])
		t.Cleanup(func() { _ = s.Stop() })
	}
	require.NotEqual(t, servers[0].Port(), servers[1].Port())
	require.NotEqual(t, servers[0].Dir(), servers[1].Dir())
	for _, s := range servers {
		conn := connect(t, s.ConnString())
		require.Equal(t, itoa(s.Port()), setting(t, conn, "port"))
	}
}

func TestStartKeepsLogAtLogPath(t *testing.T) {
	t.Parallel()
	logDir := t.TempDir()
	logPath := filepath.Join(logDir, "server.log")
	s := startServer(t, pgserver.Options{
		LogPath:  logPath,
		Settings: map[string]string{"application_name": "pgserver_test"},
	})
	require.Equal(t, logPath, s.LogPath())
	conn := connect(t, s.ConnString())
	require.Equal(t, "pgserver_test", setting(t, conn, "application_name"))
	require.NoError(t, conn.Close(context.Background()))

	require.NoError(t, s.Stop())
	require.NoDirExists(t, s.Dir())
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.Contains(t, string(b), "database system is ready to accept connections")
	require.Contains(t, string(b), "database system is shut down")
}

func TestStartFailureIncludesLogTailAndCleansUp(t *testing.T) {
	t.Parallel()
	tempDir := t.TempDir()
	if os.Geteuid() == 0 {
		// The unprivileged server user must be able to reach the directory.
		require.NoError(t, os.Chmod(filepath.Dir(tempDir), 0o755))
		require.NoError(t, os.Chmod(tempDir, 0o755))
	}
	_, err := pgserver.Start(context.Background(), pgserver.Options{
		TempDir:  tempDir,
		Settings: map[string]string{"shared_buffers": "not-a-size"},
	})
	require.ErrorIs(t, err, pgserver.ErrExited)
	require.Contains(t, err.Error(), `invalid value for parameter "shared_buffers"`)

	entries, err := os.ReadDir(tempDir)
	require.NoError(t, err)
	require.Empty(t, entries, "Start left its directory behind")
}

func TestStartWithoutBinaries(t *testing.T) {
	t.Parallel()
	_, err := pgserver.Start(context.Background(), pgserver.Options{BinDir: t.TempDir()})
	require.ErrorIs(t, err, pgserver.ErrBinariesNotFound)
	require.Contains(t, err.Error(), "scripts/ensure-postgres.sh")
}

func TestStartRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		opts  pgserver.Options
		field string
	}{
		"port":            {pgserver.Options{Port: 70000}, "Options.Port"},
		"max connections": {pgserver.Options{MaxConnections: -1}, "Options.MaxConnections"},
		"setting name":    {pgserver.Options{Settings: map[string]string{"a=b": "c"}}, "Options.Settings"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := pgserver.Start(context.Background(), tc.opts)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.field)
		})
	}
}

func TestFindBinDir(t *testing.T) {
	t.Parallel()
	dir, err := pgserver.FindBinDir(context.Background())
	require.NoError(t, err)
	for _, name := range []string{"initdb", "postgres"} {
		require.FileExists(t, filepath.Join(dir, name))
	}
}

func TestStartHonoursContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tempDir := t.TempDir()
	_, err := pgserver.Start(ctx, pgserver.Options{TempDir: tempDir})
	require.ErrorIs(t, err, context.Canceled)
	entries, err := os.ReadDir(tempDir)
	require.NoError(t, err)
	require.Empty(t, entries, "Start left its directory behind")
}

func itoa(n int) string { return strconv.Itoa(n) }

// BenchmarkStartStop measures a whole throwaway server's life: initdb,
// start until a connection succeeds, fast shutdown and removal.
func BenchmarkStartStop(b *testing.B) {
	for b.Loop() {
		s, err := pgserver.Start(context.Background(), pgserver.Options{})
		require.NoError(b, err)
		require.NoError(b, s.Stop())
	}
}
