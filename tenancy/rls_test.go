package tenancy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// appRole creates a login role that owns nothing and may read and write
// every table of the database (existing ones now, partitions created later
// through default privileges), and returns a pool connected as it.
func appRole(t *testing.T, owner *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	ctx := testContext(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "troupe_app_" + hex.EncodeToString(b)
	ident := pgx.Identifier{role}.Sanitize()
	_, err := owner.Exec(ctx, `CREATE ROLE `+ident+` LOGIN PASSWORD 'app-secret' NOSUPERUSER NOBYPASSRLS;
		GRANT USAGE ON SCHEMA public TO `+ident+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+ident+`;
		GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO `+ident+`;
		ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO `+ident)
	require.NoError(t, err)
	cfg := owner.Config().Copy()
	cfg.ConnConfig.User = role
	cfg.ConnConfig.Password = "app-secret"
	cfg.MaxConns = 4
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		app.Close()
		// Roles are cluster-wide: remove it (its grants live in this
		// database, dropped right after).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := owner.Exec(ctx, `DROP OWNED BY `+ident+`; DROP ROLE `+ident)
		assert.NoError(t, err)
	})
	return app
}

// asTenant runs fn in a transaction of pool scoped to tenant id and rolls
// it back.
func asTenant(t *testing.T, pool *pgxpool.Pool, id store.TenantID, fn func(tx pgx.Tx)) {
	t.Helper()
	ctx := testContext(t)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	if id != "" {
		require.NoError(t, postgres.SetTenant(ctx, tx, id))
	}
	fn(tx)
}

func txCount(t *testing.T, tx pgx.Tx, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, tx.QueryRow(testContext(t), sql).Scan(&n), sql)
	return n
}

// rlsViolation reports whether err is PostgreSQL refusing a row under a
// row-level security policy.
func rlsViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

func TestRowLevelSecurity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	// A read model that opts in, and one that does not.
	_, err := e.pool.Exec(ctx, `
		CREATE TABLE carts (partition text NOT NULL, cart_id text NOT NULL, PRIMARY KEY (partition, cart_id)) PARTITION BY LIST (partition);
		CREATE TABLE carts_default PARTITION OF carts DEFAULT;`)
	require.NoError(t, err)
	e.create(t, "tenant-a")
	e.create(t, "tenant-b")
	e.append(t, "tenant-a", "s", event("E", 1), event("E", 2))
	e.append(t, "tenant-b", "s", event("E", 3), event("E", 4), event("E", 5))
	e.append(t, "unregistered", "s", event("E", 6)) // lives in the DEFAULT partitions
	_, err = e.pool.Exec(ctx, `INSERT INTO carts VALUES ('tenant-a', 'c1'), ('tenant-b', 'c1'), ('tenant-b', 'c2')`)
	require.NoError(t, err)

	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, e.pool, "carts"))
	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, e.pool, "carts"), "re-running is harmless")
	e.create(t, "tenant-c") // created after: its partitions must be covered too
	e.append(t, "tenant-c", "s", event("E", 7))
	app := appRole(t, e.pool)

	msgB := mustName(t, "messages", "tenant-b")
	msgC := mustName(t, "messages", "tenant-c")
	asTenant(t, app, "tenant-a", func(tx pgx.Tx) {
		assert.Equal(t, 2, txCount(t, tx, `SELECT count(*) FROM messages`))
		assert.Zero(t, txCount(t, tx, `SELECT count(*) FROM messages WHERE partition = 'tenant-b'`))
		assert.Equal(t, 1, txCount(t, tx, `SELECT count(*) FROM streams`))
		assert.Equal(t, 1, txCount(t, tx, `SELECT count(*) FROM carts`))
		// Naming another tenant's partition directly does not help.
		assert.Zero(t, txCount(t, tx, `SELECT count(*) FROM `+msgB))
		assert.Zero(t, txCount(t, tx, `SELECT count(*) FROM `+msgC))
		assert.Zero(t, txCount(t, tx, `SELECT count(*) FROM messages_default`))
		// Updates and deletes of B's rows touch nothing.
		tag, err := tx.Exec(ctx, `UPDATE messages SET message_type = 'hacked' WHERE partition = 'tenant-b'`)
		require.NoError(t, err)
		assert.Zero(t, tag.RowsAffected())
		tag, err = tx.Exec(ctx, `DELETE FROM carts`)
		require.NoError(t, err)
		assert.Equal(t, int64(1), tag.RowsAffected(), "only A's cart")
	})
	for name, sql := range map[string]string{
		"insert event for B":     `INSERT INTO messages (stream_id, stream_position, partition, message_data, message_type, message_id) VALUES ('s', 9, 'tenant-b', '{}', 'E', 'x')`,
		"insert into B directly": `INSERT INTO ` + msgB + ` (stream_id, stream_position, partition, message_data, message_type, message_id) VALUES ('s', 9, 'tenant-b', '{}', 'E', 'x')`,
		"insert stream for B":    `INSERT INTO streams (stream_id, stream_position, partition, stream_type) VALUES ('t', 1, 'tenant-b', 'x')`,
		"insert read model row":  `INSERT INTO carts VALUES ('tenant-b', 'c9')`,
		"move own row to B":      `UPDATE carts SET partition = 'tenant-b'`,
	} {
		asTenant(t, app, "tenant-a", func(tx pgx.Tx) {
			_, err := tx.Exec(ctx, sql)
			assert.True(t, rlsViolation(err), "%s: want a row-level security violation, got %v", name, err)
		})
	}
	// Writing its own rows works.
	asTenant(t, app, "tenant-a", func(tx pgx.Tx) {
		_, err := tx.Exec(ctx, `INSERT INTO carts VALUES ('tenant-a', 'c2')`)
		require.NoError(t, err)
	})
	// No tenant set: nothing visible, nothing writable.
	asTenant(t, app, "", func(tx pgx.Tx) {
		assert.Zero(t, txCount(t, tx, `SELECT count(*) FROM messages`))
		_, err := tx.Exec(ctx, `INSERT INTO carts VALUES ('tenant-a', 'c3')`)
		assert.True(t, rlsViolation(err), "%v", err)
	})
	// The setting is transaction-local: a later transaction on the same
	// connection is unscoped again.
	conn, err := app.Acquire(ctx)
	require.NoError(t, err)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, postgres.SetTenant(ctx, tx, "tenant-b"))
	require.NoError(t, tx.Commit(ctx))
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n))
	assert.Zero(t, n)
	conn.Release()

	// The event store on the application role: scoping its transaction is
	// the one line SetTenant.
	appStore, err := postgres.New(app, nil)
	require.NoError(t, err)
	asTenant(t, app, "tenant-a", func(tx pgx.Tx) {
		s := appStore.WithTx(tx)
		own, err := s.ReadStream(ctx, "s", store.ReadOptions{Partition: "tenant-a"})
		require.NoError(t, err)
		assert.Len(t, own.Events, 2)
		other, err := s.ReadStream(ctx, "s", store.ReadOptions{Partition: "tenant-b"})
		require.NoError(t, err)
		assert.False(t, other.StreamExists, "tenant B's stream is invisible")
		all, err := s.ReadAll(ctx, store.ReadAllOptions{})
		require.NoError(t, err)
		for _, ev := range all.Events {
			assert.Equal(t, "tenant-a", ev.Partition)
		}
	})

	// The owner is not filtered; invalid ids never reach SQL.
	assert.Equal(t, 7, count(t, e.pool, `SELECT count(*) FROM messages`))
	asTenant(t, app, "", func(tx pgx.Tx) {
		assert.ErrorIs(t, postgres.SetTenant(ctx, tx, "x'; RESET ALL; --"), store.ErrInvalidTenantID)
	})

	// Disabling lifts the policies.
	require.NoError(t, postgres.DisableRowLevelSecurity(ctx, e.pool, "carts"))
	asTenant(t, app, "", func(tx pgx.Tx) {
		assert.Equal(t, 7, txCount(t, tx, `SELECT count(*) FROM messages`))
	})
}

func TestEnableRowLevelSecurityErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	_, err := e.pool.Exec(ctx, `CREATE TABLE no_partition (x int)`)
	require.NoError(t, err)
	assert.ErrorContains(t, postgres.EnableRowLevelSecurity(ctx, e.pool, "missing"), "does not exist")
	assert.ErrorContains(t, postgres.EnableRowLevelSecurity(ctx, e.pool, "no_partition"), `no column "partition"`)
	assert.Error(t, postgres.EnableRowLevelSecurity(ctx, e.pool, "a.b.c"))
	// All or nothing: the event tables were left alone.
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM pg_class WHERE relrowsecurity`))
}
