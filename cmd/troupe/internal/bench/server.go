package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
	"github.com/troupehq/troupe/internal/pgserver"
	"github.com/troupehq/troupe/store/postgres"
)

// server is where the benchmark makes its scratch databases.
type server struct {
	adminURL string
	pg       *pgserver.Server // nil when the server is not ours
	runID    string
	seq      atomic.Int64
	logger   *slog.Logger
}

// openServer starts a throwaway server, or uses the one at url.
func openServer(ctx context.Context, dbURL string, logger *slog.Logger) (*server, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("make a run id: %w", err)
	}
	s := &server{adminURL: dbURL, runID: hex.EncodeToString(b[:]), logger: logger}
	if dbURL == "" {
		pg, err := pgserver.Start(ctx, pgserver.Options{Logger: logger, SharedBuffers: "256MB"})
		if err != nil {
			return nil, fmt.Errorf("start a throwaway PostgreSQL: %w", err)
		}
		s.pg, s.adminURL = pg, pg.ConnString()
	}
	return s, nil
}

func (s *server) close() error {
	if s.pg != nil {
		return s.pg.Stop()
	}
	return nil
}

// database is one scratch database.
type database struct {
	name string
	url  string
	srv  *server
}

// newDatabase creates a scratch database, migrated, with the carts table.
func (s *server) newDatabase(ctx context.Context) (*database, error) {
	name := fmt.Sprintf("troupe_bench_%s_%d", s.runID, s.seq.Add(1))
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(s.adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create scratch database %s (the role needs CREATEDB): %w", name, err)
	}
	db := &database{name: name, url: withDatabase(s.adminURL, name), srv: s}
	pool, err := db.pool(ctx, 4, nil)
	if err != nil {
		_ = db.drop(ctx)
		return nil, err
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool); err != nil {
		_ = db.drop(ctx)
		return nil, fmt.Errorf("migrate scratch database %s: %w", name, err)
	}
	if err := benchcart.EnsureSchema(ctx, pool); err != nil {
		_ = db.drop(ctx)
		return nil, err
	}
	return db, nil
}

// pool opens a pool of at most maxConns connections on the database,
// tracing its statements with tracer when it is not nil.
func (d *database) pool(ctx context.Context, maxConns int, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(d.url)
	if err != nil {
		return nil, fmt.Errorf("parse the database URL: %w", err)
	}
	cfg.MaxConns = int32(maxConns)
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to scratch database %s: %w", d.name, err)
	}
	return pool, nil
}

// drop drops the database, closing its remaining sessions.
func (d *database) drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.srv.adminURL)
	if err != nil {
		return fmt.Errorf("connect to drop scratch database %s: %w", d.name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop scratch database %s: %w", d.name, err)
	}
	return nil
}

// withDatabase returns the connection string connStr with its database
// replaced by name: the path of a URL, or a dbname keyword appended to a
// keyword/value string (the last keyword wins in libpq and pgx).
func withDatabase(connStr, name string) string {
	if strings.HasPrefix(connStr, "postgres://") || strings.HasPrefix(connStr, "postgresql://") {
		if u, err := url.Parse(connStr); err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	return strings.TrimSpace(connStr) + " dbname=" + name
}

// redact hides the password of a connection URL.
func redact(connStr string) string {
	if u, err := url.Parse(connStr); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	return "the database"
}

// Environment describes the machine and server a report was measured on.
type Environment struct {
	GoVersion   string            `json:"goVersion"`
	OS          string            `json:"os"`
	Arch        string            `json:"arch"`
	CPUs        int               `json:"cpus"`
	CPUModel    string            `json:"cpuModel,omitempty"`
	MemoryBytes int64             `json:"memoryBytes,omitempty"`
	Postgres    string            `json:"postgres"`
	Settings    map[string]string `json:"postgresSettings"`
	Throwaway   bool              `json:"throwawayServer"`
	LoadStart   string            `json:"loadAverageStart,omitempty"`
	LoadEnd     string            `json:"loadAverageEnd,omitempty"`
}

// settingsShown are the server settings the report states.
var settingsShown = []string{"shared_buffers", "max_connections", "fsync", "synchronous_commit",
	"full_page_writes", "wal_level", "work_mem", "max_wal_size", "checkpoint_timeout"}

// environment describes this machine and the server.
func (s *server) environment(ctx context.Context) (Environment, error) {
	env := Environment{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
		CPUModel: cpuModel(), MemoryBytes: memTotal(), Throwaway: s.pg != nil, LoadStart: loadAverage(),
		Settings: map[string]string{}}
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return env, fmt.Errorf("connect to %s: %w", redact(s.adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&env.Postgres); err != nil {
		return env, fmt.Errorf("read the server version: %w", err)
	}
	for _, name := range settingsShown {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err == nil {
			env.Settings[name] = v
		}
	}
	return env, nil
}

// cpuModel returns the CPU model named by /proc/cpuinfo, or "".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// memTotal returns the machine's memory from /proc/meminfo, or 0.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return kb * 1024
		}
	}
	return 0
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
