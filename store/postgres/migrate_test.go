package postgres_test

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
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

func TestNewRejectsNilDB(t *testing.T) {
	t.Parallel()
	for name, db := range map[string]postgres.DB{"nil": nil, "nil pool": (*pgxpool.Pool)(nil), "nil conn": (*pgx.Conn)(nil)} {
		_, err := postgres.New(db, nil)
		require.ErrorContains(t, err, "db is nil", name)
		require.ErrorContains(t, postgres.Migrate(t.Context(), db), "db is nil", name)
		_, err = postgres.MigrateStatus(t.Context(), db)
		require.ErrorContains(t, err, "db is nil", name)
	}
}

func allApplied(t *testing.T, db postgres.DB) bool {
	t.Helper()
	st, err := postgres.MigrateStatus(t.Context(), db)
	require.NoError(t, err)
	for _, m := range st {
		if !m.Applied {
			return false
		}
	}
	return true
}

// Migrate and MigrateStatus take a pool, a single connection or the
// caller's transaction; in a transaction nothing is applied until the
// caller commits.
func TestMigrateOnEveryHandle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("pool", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.NewPool(t)
		require.NoError(t, postgres.Migrate(ctx, pool))
		require.True(t, allApplied(t, pool))
	})
	t.Run("conn", func(t *testing.T) {
		t.Parallel()
		conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		require.NoError(t, postgres.Migrate(ctx, conn))
		require.True(t, allApplied(t, conn))
		require.NoError(t, postgres.Migrate(ctx, conn), "a second run is a no-op")
	})
	t.Run("tx", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.NewPool(t)
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, postgres.Migrate(ctx, tx))
		require.True(t, allApplied(t, tx), "applied inside the transaction")
		require.False(t, allApplied(t, pool), "nothing is applied for others before the caller commits")
		require.NoError(t, tx.Rollback(ctx))
		require.False(t, allApplied(t, pool), "a rollback undoes every migration")

		tx, err = pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, postgres.Migrate(ctx, tx))
		require.NoError(t, tx.Commit(ctx))
		require.True(t, allApplied(t, pool))
	})
}

// postgres.New on a transaction binds the store to it: its appends commit
// or roll back with the caller's transaction.
func TestNewOnATransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, postgres.Migrate(ctx, tx))
	s, err := postgres.New(tx, nil)
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "in-tx", events("E", 2), store.AppendOptions{})
	require.NoError(t, err)
	res, err := s.ReadStream(ctx, "in-tx", store.ReadOptions{})
	require.NoError(t, err)
	require.Len(t, res.Events, 2, "the store reads its own transaction")
	require.False(t, allApplied(t, pool), "nothing is visible outside before commit")
	require.NoError(t, tx.Commit(ctx))

	outside, err := postgres.New(pool, nil)
	require.NoError(t, err)
	res, err = outside.ReadStream(ctx, "in-tx", store.ReadOptions{})
	require.NoError(t, err)
	require.Len(t, res.Events, 2, "committed with the caller's transaction")
}

// Migration 005 registers the tenant tables of the earlier migrations and
// 006 puts them all under row-level security; running them on a database
// migrated by an older build (through 004) adds the registry and keeps the
// data.
func TestTenantTableRegistry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	migrateBefore(t, pool, 5)
	// An event written by the older build.
	_, err := pool.Exec(ctx, `INSERT INTO streams (stream_id, partition, stream_type, stream_position) VALUES ('before', 'acme', 't', 1);
		INSERT INTO messages (stream_id, stream_position, partition, message_data, message_type, message_id)
		VALUES ('before', 1, 'acme', '{}', 'E', 'm-before')`)
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(ctx, pool))
	require.NoError(t, postgres.Migrate(ctx, pool))
	rows, err := pool.Query(ctx, `SELECT relation::text, partition_column::text, partitioned, row_level_security
		FROM tenant_tables ORDER BY lock_order`)
	require.NoError(t, err)
	type reg struct {
		Table, Column    string
		Partitioned, RLS bool
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[reg])
	require.NoError(t, err)
	require.Equal(t, []reg{
		{"streams", "partition", true, true},
		{"messages", "partition", true, true},
		{"aggregate_snapshots", "partition", true, true},
		{"subscriptions", "partition", true, true},
		{"subject_keys", "partition", true, true},
		{"projection_dead_letters", "partition", true, true},
		{"projection_status", "partition", true, true},
		{"projection_stream_checkpoints", "partition", true, true},
		{"snapshots", "partition", false, true},
	}, got)
	old, err := postgres.New(pool, nil)
	require.NoError(t, err)
	res, err := old.ReadStream(ctx, "before", store.ReadOptions{Partition: "acme"})
	require.NoError(t, err)
	require.Len(t, res.Events, 1)
}

// Migration 007 gives every stream written by an older build its
// incarnation (the global position of its first event) and keeps only the
// aggregate snapshots it can show belong to the live incarnation: those
// saved after its first event.
func TestIncarnationMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	migrateBefore(t, pool, 7)
	// "cart" lived once (archived, two events an hour ago) and lives again
	// (three events now); "kept" lives once. Snapshots: one of the old life
	// of "cart" (saved before it was archived), one of its new life, one of
	// "kept".
	_, err := pool.Exec(ctx, `
INSERT INTO streams (stream_id, partition, stream_type, stream_position, is_archived) VALUES
    ('cart', 'default_partition', 't', 2, true), ('cart', 'default_partition', 't', 3, false),
    ('kept', 'default_partition', 't', 1, false);
INSERT INTO messages (stream_id, stream_position, partition, message_data, message_type, message_id, is_archived, created) VALUES
    ('cart', 1, 'default_partition', '{}', 'E', 'old-1', true, now() - interval '1 hour'),
    ('cart', 2, 'default_partition', '{}', 'E', 'old-2', true, now() - interval '1 hour'),
    ('cart', 1, 'default_partition', '{}', 'E', 'new-1', false, now() - interval '1 minute'),
    ('cart', 2, 'default_partition', '{}', 'E', 'new-2', false, now() - interval '1 minute'),
    ('cart', 3, 'default_partition', '{}', 'E', 'new-3', false, now() - interval '1 minute'),
    ('kept', 1, 'default_partition', '{}', 'E', 'kept-1', false, now() - interval '1 minute');
INSERT INTO aggregate_snapshots (partition, stream_id, name, stream_version, state, created) VALUES
    ('default_partition', 'cart', 'old-life', 2, '{}', now() - interval '30 minutes'),
    ('default_partition', 'cart', 'new-life', 2, '{}', now()),
    ('default_partition', 'kept', 'kept', 1, '{}', now());
INSERT INTO projection_stream_checkpoints (subscription_id, stream_id, last_processed_position) VALUES ('sub', 'cart', 2);`)
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(ctx, pool))
	require.NoError(t, postgres.Migrate(ctx, pool))

	globalOf := func(id string) store.Incarnation {
		var g int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT global_position FROM messages WHERE message_id = $1`, id).Scan(&g))
		return store.Incarnation(g)
	}
	var archived int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT incarnation FROM streams WHERE stream_id = 'cart' AND is_archived`).Scan(&archived))
	require.Equal(t, globalOf("old-1"), store.Incarnation(archived), "the archived life gets its incarnation too")

	s, err := postgres.New(pool, nil)
	require.NoError(t, err)
	for stream, first := range map[store.StreamID]string{"cart": "new-1", "kept": "kept-1"} {
		res, err := s.ReadStream(ctx, stream, store.ReadOptions{})
		require.NoError(t, err)
		require.Equal(t, globalOf(first), res.Incarnation, "stream %s", stream)
	}
	for name, want := range map[string]store.Incarnation{"old-life": 0, "new-life": globalOf("new-1")} {
		snap, ok, err := s.LoadSnapshot(ctx, store.DefaultPartition, "cart", name)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, snap.Incarnation, "snapshot %s", name)
	}
	snap, _, err := s.LoadSnapshot(ctx, store.DefaultPartition, "kept", "kept")
	require.NoError(t, err)
	require.Equal(t, globalOf("kept-1"), snap.Incarnation)

	// Appends after the upgrade keep the incarnation and can require it.
	res, err := s.AppendToStream(ctx, "cart", events("E", 1), store.AppendOptions{ExpectedVersion: store.Exact(3), Incarnation: globalOf("new-1")})
	require.NoError(t, err)
	require.Equal(t, globalOf("new-1"), res.Incarnation)
}

// migrateBefore migrates pool's empty database as an older build would
// have: every migration below version before, recorded as applied.
func migrateBefore(t *testing.T, pool *pgxpool.Pool, before int) {
	t.Helper()
	ctx := t.Context()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `CREATE TABLE troupe_schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	for _, m := range ms {
		if m.Version >= before {
			break
		}
		_, err := pool.Exec(ctx, m.SQL)
		require.NoError(t, err, m.Name)
		_, err = pool.Exec(ctx, `INSERT INTO troupe_schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
		require.NoError(t, err)
	}
}

// appliedVersions returns the versions the status reports applied.
func appliedVersions(t *testing.T, db postgres.DB) []int {
	t.Helper()
	st, err := postgres.MigrateStatus(t.Context(), db)
	require.NoError(t, err)
	var out []int
	for _, m := range st {
		if m.Applied {
			out = append(out, m.Version)
		}
	}
	return out
}

func versionsUpTo(ms []postgres.Migration, target int) []int {
	var out []int
	for _, m := range ms {
		if m.Version <= target {
			out = append(out, m.Version)
		}
	}
	return out
}

// MigrateTo applies the migrations up to its target and no further; a
// target equal to the current version does nothing; a target below it or
// above the latest embedded changes nothing and names the versions.
func TestMigrateTo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ms), 3)
	latest := ms[len(ms)-1].Version
	second := ms[1].Version
	pool := pgtest.NewPool(t)

	require.NoError(t, postgres.MigrateTo(ctx, pool, second))
	require.Equal(t, versionsUpTo(ms, second), appliedVersions(t, pool))
	before := migrationStatus(t, pool)
	require.NoError(t, postgres.MigrateTo(ctx, pool, second), "the current version again")
	require.Equal(t, before, migrationStatus(t, pool))

	var target *postgres.MigrationTargetError
	err = postgres.MigrateTo(ctx, pool, ms[0].Version)
	require.ErrorIs(t, err, postgres.ErrMigrationTarget)
	require.ErrorAs(t, err, &target)
	require.Equal(t, postgres.MigrationTargetError{Target: ms[0].Version, Current: second, Latest: latest}, *target)
	require.ErrorContains(t, err, fmt.Sprintf("target version %d is below the database's current version %d", ms[0].Version, second))

	err = postgres.MigrateTo(ctx, pool, latest+1)
	require.ErrorIs(t, err, postgres.ErrMigrationTarget)
	require.ErrorContains(t, err, fmt.Sprintf("target version %d is above the latest migration this build embeds (%d)", latest+1, latest))
	for _, v := range []int{0, -1} {
		require.ErrorIs(t, postgres.MigrateTo(ctx, pool, v), postgres.ErrMigrationTarget)
	}
	require.Equal(t, before, migrationStatus(t, pool), "a refused target changed something")

	third := ms[2].Version
	require.NoError(t, postgres.MigrateTo(ctx, pool, third))
	require.Equal(t, versionsUpTo(ms, third), appliedVersions(t, pool))
	require.NoError(t, postgres.MigrateTo(ctx, pool, latest))
	require.Equal(t, versionsUpTo(ms, latest), appliedVersions(t, pool))

	// A database migrated by a newer build: its current version is above
	// anything this build knows, so every target is refused, while
	// Migrate leaves it as it is.
	_, err = pool.Exec(ctx, `INSERT INTO troupe_schema_migrations (version, name) VALUES ($1, 'from_the_future')`, latest+100)
	require.NoError(t, err)
	err = postgres.MigrateTo(ctx, pool, latest)
	require.ErrorContains(t, err, fmt.Sprintf("below the database's current version %d", latest+100))
	require.NoError(t, postgres.Migrate(ctx, pool))
}

// MigrateTo works on a pool, a connection and the caller's transaction.
func TestMigrateToOnEveryHandle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	first, latest := ms[0].Version, ms[len(ms)-1].Version
	check := func(t *testing.T, db postgres.DB) {
		require.NoError(t, postgres.MigrateTo(ctx, db, first))
		require.Equal(t, []int{first}, appliedVersions(t, db))
		require.NoError(t, postgres.MigrateTo(ctx, db, latest))
		require.Equal(t, versionsUpTo(ms, latest), appliedVersions(t, db))
	}
	t.Run("pool", func(t *testing.T) {
		t.Parallel()
		check(t, pgtest.NewPool(t))
	})
	t.Run("conn", func(t *testing.T) {
		t.Parallel()
		conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		check(t, conn)
	})
	t.Run("tx", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.NewPool(t)
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		check(t, tx)
		require.Empty(t, appliedVersions(t, pool), "nothing is visible before the caller commits")
		require.NoError(t, tx.Commit(ctx))
		require.Equal(t, versionsUpTo(ms, latest), appliedVersions(t, pool))
	})
}

// publicColumns describes every column of the public schema.
func publicColumns(t *testing.T, db postgres.DB) []string {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
		FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name`)
	require.NoError(t, err)
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return cols
}

// The files of MigrationsFS are the migrations; each Migration.Script, run
// the way another migration tool would (one transaction per file), leaves
// the database as Migrate does: the same tables and columns, every version
// recorded, Migrate then a no-op and the store usable.
func TestMigrationScripts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	fsys := postgres.MigrationsFS()
	for _, m := range ms {
		body, err := fs.ReadFile(fsys, fmt.Sprintf("%03d_%s.sql", m.Version, m.Name))
		require.NoError(t, err)
		require.Equal(t, m.SQL, string(body))
	}
	again, err := postgres.ParseMigrations(fsys, ".")
	require.NoError(t, err)
	require.Equal(t, ms, again)

	byMigrate := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, byMigrate))

	byScript := pgtest.NewPool(t)
	for i, m := range ms {
		script := m.Script()
		require.Contains(t, script, m.SQL[:20])
		if i%2 == 0 { // a tool that wraps each file in a transaction
			tx, err := byScript.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, script)
			require.NoError(t, err, m.Name)
			require.NoError(t, tx.Commit(ctx))
		} else { // a tool that sends the file as it is (one implicit transaction)
			_, err = byScript.Exec(ctx, script)
			require.NoError(t, err, m.Name)
		}
	}
	require.Equal(t, publicColumns(t, byMigrate), publicColumns(t, byScript))
	want := migrationStatus(t, byMigrate)
	got := migrationStatus(t, byScript)
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].Version, got[i].Version)
		require.Equal(t, want[i].Name, got[i].Name)
		require.True(t, got[i].Applied && !got[i].Unknown, got[i].Name)
	}
	require.NoError(t, postgres.Migrate(ctx, byScript))
	require.Equal(t, got, migrationStatus(t, byScript), "Migrate after the scripts changed something")
	_, err = byScript.Exec(ctx, ms[0].Script())
	require.NoError(t, err, "a script run twice records its version once")
	s, err := postgres.New(byScript, nil)
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "s", events("E", 2), store.AppendOptions{})
	require.NoError(t, err)
}
