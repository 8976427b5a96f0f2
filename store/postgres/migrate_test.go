package postgres_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

func TestMigrations(t *testing.T) {
	t.Parallel()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	require.Equal(t, 1, ms[0].Version)
	require.Equal(t, "event_store", ms[0].Name)
	require.Contains(t, ms[0].SQL, "CREATE TABLE IF NOT EXISTS messages")
	for i := 1; i < len(ms); i++ {
		require.Less(t, ms[i-1].Version, ms[i].Version)
	}
	ms[0].Name = "changed"
	again, err := postgres.Migrations()
	require.NoError(t, err)
	require.Equal(t, "event_store", again[0].Name, "Migrations returns a copy")
}

func TestParseMigrations(t *testing.T) {
	t.Parallel()
	file := func(body string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(body)} }
	ms, err := postgres.ParseMigrations(fstest.MapFS{
		"m/010_later_one.sql": file("B"),
		"m/002_first.sql":     file("A"),
		"m/README.md":         file("ignored"),
	}, "m")
	require.NoError(t, err)
	require.Equal(t, []postgres.Migration{{Version: 2, Name: "first", SQL: "A"}, {Version: 10, Name: "later_one", SQL: "B"}}, ms)

	for name, fsys := range map[string]fstest.MapFS{
		"no number":    {"m/first.sql": file("")},
		"zero":         {"m/000_zero.sql": file("")},
		"no name":      {"m/003_.sql": file("")},
		"same version": {"m/004_a.sql": file(""), "m/04_b.sql": file("")},
	} {
		_, err := postgres.ParseMigrations(fsys, "m")
		require.Error(t, err, name)
	}
}

func migrationStatus(t *testing.T, pool *pgxpool.Pool) []postgres.MigrationStatus {
	t.Helper()
	st, err := postgres.MigrateStatus(t.Context(), pool)
	require.NoError(t, err)
	return st
}

// Migrating twice is a no-op; the status reports what is applied.
func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := t.Context()
	ms, err := postgres.Migrations()
	require.NoError(t, err)

	before := migrationStatus(t, pool)
	require.Len(t, before, len(ms))
	for i, st := range before {
		require.Equal(t, postgres.MigrationStatus{Version: ms[i].Version, Name: ms[i].Name}, st)
	}

	require.NoError(t, postgres.Migrate(ctx, pool))
	first := migrationStatus(t, pool)
	for _, st := range first {
		require.True(t, st.Applied, st.Name)
		require.False(t, st.AppliedAt.IsZero())
		require.False(t, st.Unknown)
	}
	require.NoError(t, postgres.Migrate(ctx, pool))
	require.Equal(t, first, migrationStatus(t, pool), "a second run changed something")

	// A migration applied by a newer build shows up as unknown.
	_, err = pool.Exec(ctx, `INSERT INTO troupe_schema_migrations (version, name) VALUES (999, 'from_the_future')`)
	require.NoError(t, err)
	st := migrationStatus(t, pool)
	require.Len(t, st, len(ms)+1)
	last := st[len(st)-1]
	require.Equal(t, 999, last.Version)
	require.True(t, last.Applied && last.Unknown)
	require.NoError(t, postgres.Migrate(ctx, pool))
}

// Two pools migrating one empty database at the same moment both succeed,
// and each migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	for range 3 {
		connString := pgtest.NewDatabase(t)
		pools := make([]*pgxpool.Pool, 2)
		for i := range pools {
			pool, err := pgxpool.New(t.Context(), connString)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			require.NoError(t, pool.Ping(t.Context()))
			pools[i] = pool
		}
		start := make(chan struct{})
		errs := make([]error, len(pools))
		var wg sync.WaitGroup
		for i, pool := range pools {
			wg.Go(func() {
				<-start
				errs[i] = postgres.Migrate(context.Background(), pool)
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		for _, st := range migrationStatus(t, pools[0]) {
			require.True(t, st.Applied, st.Name)
		}
		s, err := postgres.New(pools[1], nil)
		require.NoError(t, err)
		_, err = s.AppendToStream(t.Context(), "s", events("E", 1), store.AppendOptions{})
		require.NoError(t, err)
	}
}

func TestNewRejectsNilPool(t *testing.T) {
	t.Parallel()
	_, err := postgres.New(nil, nil)
	require.ErrorContains(t, err, "pool")
	require.Error(t, postgres.Migrate(t.Context(), nil))
	_, err = postgres.MigrateStatus(t.Context(), nil)
	require.Error(t, err)
}
