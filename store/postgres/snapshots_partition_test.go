package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// Migration 004 gives the read-model snapshots table a partition column and
// fills it for rows written before, from a "partition" key in the stream id.
func TestMigrationSnapshotsPartition(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := t.Context()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ms), 4)
	require.Equal(t, "snapshots_partition", ms[3].Name)

	// A database at version 3, as an older build left it.
	_, err = pool.Exec(ctx, `CREATE TABLE `+postgres.MigrationsTable+` (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	for _, m := range ms[:3] {
		_, err := pool.Exec(ctx, m.SQL)
		require.NoError(t, err, m.Name)
		_, err = pool.Exec(ctx, `INSERT INTO `+postgres.MigrationsTable+` (version, name) VALUES ($1, $2)`, m.Version, m.Name)
		require.NoError(t, err)
	}
	legacy := map[string]string{
		"partition:tenant-a|cart_id:c1":        "tenant-a",
		"cart_id:c2|partition:Tenant_B":        "Tenant_B",
		"a:1|partition:tenant-c|z:2":           "tenant-c",
		"cart_id:c3":                           "default_partition", // no partition key
		"partition:caf%C3%A9|cart_id:c4":       "default_partition", // not a tenant id
		"xpartition:tenant-d|cart_id:c5":       "default_partition", // another key
		"partition:tenant-e%7Cx|cart_id:c6":    "default_partition", // an encoded '|' in the value
		"tenant_id:t1|partition:tenant-f|id:7": "tenant-f",
	}
	for id := range legacy {
		_, err := pool.Exec(ctx, `INSERT INTO snapshots (readmodel_table_name, stream_id, last_stream_position, last_global_position, snapshot)
VALUES ('carts', $1, 1, 1, '{}')`, id)
		require.NoError(t, err)
	}

	require.NoError(t, postgres.Migrate(ctx, pool))
	for id, want := range legacy {
		var got string
		require.NoError(t, pool.QueryRow(ctx, `SELECT partition FROM snapshots WHERE stream_id = $1`, id).Scan(&got))
		require.Equal(t, want, got, "stream id %q", id)
	}
	var indexed bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = 'snapshots'::regclass AND a.attname = 'partition' AND i.indnatts = 1)`).Scan(&indexed))
	require.True(t, indexed, "an index on snapshots (partition)")
}
