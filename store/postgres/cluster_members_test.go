package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// Migration 008 adds the cluster membership table on a database migrated
// by an older build: one row per (cluster, member id), kinds and
// timestamps defaulted, and no tenant table (not registered in
// tenant_tables).
func TestClusterMembersMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	migrateBefore(t, pool, 8)
	require.NoError(t, postgres.Migrate(ctx, pool))
	require.NoError(t, postgres.Migrate(ctx, pool))

	_, err := pool.Exec(ctx, `INSERT INTO cluster_members (cluster, member_id, host, port) VALUES ('shop', 'm1', '10.0.0.5', 7400)`)
	require.NoError(t, err)
	var (
		kinds             []string
		joined, heartbeat time.Time
	)
	require.NoError(t, pool.QueryRow(ctx, `SELECT kinds, joined_at, heartbeat_at FROM cluster_members WHERE member_id = 'm1'`).
		Scan(&kinds, &joined, &heartbeat))
	require.Empty(t, kinds)
	require.Equal(t, joined, heartbeat)

	// The same member id in another cluster is another row; twice in one
	// cluster is refused.
	_, err = pool.Exec(ctx, `INSERT INTO cluster_members (cluster, member_id, host, port) VALUES ('other', 'm1', '10.0.0.5', 7401)`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO cluster_members (cluster, member_id, host, port) VALUES ('shop', 'm1', '10.0.0.6', 7400)`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23505", pgErr.Code)

	var registered bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM tenant_tables WHERE relation = 'cluster_members'::regclass)`).Scan(&registered))
	require.False(t, registered)
}
