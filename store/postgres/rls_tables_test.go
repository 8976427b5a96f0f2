package postgres_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// unprotected returns the names ("schema.table") UnprotectedTenantTables
// lists.
func unprotected(t *testing.T, db postgres.DB) []string {
	t.Helper()
	got, err := postgres.UnprotectedTenantTables(t.Context(), db)
	require.NoError(t, err)
	out := make([]string, len(got))
	for i, u := range got {
		out[i] = u.Schema + "." + u.Name
	}
	return out
}

func partitionOf(t *testing.T, table, tenant string) string {
	t.Helper()
	name, err := tenancy.PartitionName(table, store.TenantID(tenant))
	require.NoError(t, err)
	return name
}

// After every migration, the tenant lifecycle and EnableRowLevelSecurity,
// every table of the schema with a partition column, every registered
// tenant table and every partition of either has row-level security and
// the tenant policy. A table added without either is named.
func TestEveryTenantTableHasAPolicy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	owner := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, owner))
	mgr, err := tenancy.NewManager(owner, &tenancy.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, _, err = mgr.Create(ctx, "tenant-a", "")
	require.NoError(t, err)

	// Before: every tenant table, its DEFAULT partition and the tenant's
	// partition are listed (the check looks where the data is).
	before := unprotected(t, owner)
	for _, table := range []string{"streams", "messages", "aggregate_snapshots", "subscriptions",
		"projection_dead_letters", "projection_status", "projection_stream_checkpoints"} {
		assert.Contains(t, before, "public."+table)
		assert.Contains(t, before, "public."+table+"_default")
		assert.Contains(t, before, "public."+partitionOf(t, table, "tenant-a"))
	}
	assert.Contains(t, before, "public.snapshots")
	assert.NotContains(t, before, "public.tenants", "the registry of tenants holds no partition column")

	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, owner))
	got, err := postgres.UnprotectedTenantTables(ctx, owner)
	require.NoError(t, err)
	require.Empty(t, got, "tables holding tenant rows without a policy")
	_, _, err = mgr.Create(ctx, "tenant-b", "")
	require.NoError(t, err)
	require.Empty(t, unprotected(t, owner), "partitions of a tenant created later are covered")

	// A new table with a partition column that nobody registered or opted
	// in, a registered table with its own tenant column, a partition whose
	// row-level security was turned off and a partition whose policy was
	// dropped: each is named.
	msgB := partitionOf(t, "messages", "tenant-b")
	_, err = owner.Exec(ctx, `
		CREATE TABLE gadgets (partition text NOT NULL, id text NOT NULL);
		CREATE SCHEMA rm;
		CREATE TABLE rm.orders (tenant text NOT NULL, order_id text NOT NULL);
		INSERT INTO tenant_tables (relation, partition_column, partitioned) VALUES ('rm.orders', 'tenant', false);
		ALTER TABLE `+pgx.Identifier{msgB}.Sanitize()+` DISABLE ROW LEVEL SECURITY;
		DROP POLICY `+postgres.TenantPolicyName+` ON projection_status_default;`)
	require.NoError(t, err)
	got, err = postgres.UnprotectedTenantTables(ctx, owner)
	require.NoError(t, err)
	require.Equal(t, []postgres.UnprotectedTable{
		{Schema: "public", Name: "gadgets", Column: "partition"},
		{Schema: "public", Name: msgB, Column: "partition", Policy: true},
		{Schema: "public", Name: "projection_status_default", Column: "partition", RowLevelSecurity: true},
		{Schema: "rm", Name: "orders", Column: "tenant"},
	}, got)
	assert.Equal(t, `public.gadgets (tenant column "partition"): row-level security is off and no policy troupe_tenant_isolation`, got[0].String())
	assert.Equal(t, `public.`+msgB+` (tenant column "partition"): policy troupe_tenant_isolation exists but row-level security is off`, got[1].String())
	assert.Equal(t, `public.projection_status_default (tenant column "partition"): no policy troupe_tenant_isolation`, got[2].String())

	// Opting in covers them again.
	_, err = owner.Exec(ctx, `UPDATE tenant_tables SET row_level_security = true WHERE relation = 'rm.orders'::regclass`)
	require.NoError(t, err)
	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, owner, "gadgets"))
	require.Empty(t, unprotected(t, owner))
}

// fillProjectionTables writes, as the owner, rows of tenants A and B (and
// of a projection over every partition, '*') into the projection tables,
// the read-model snapshots table and subscriptions.
func fillProjectionTables(t *testing.T, owner *pgxpool.Pool) {
	t.Helper()
	_, err := owner.Exec(t.Context(), `
		INSERT INTO projection_stream_checkpoints (subscription_id, partition, stream_id) VALUES
			('sub', 'tenant-a', 's'), ('sub', 'tenant-b', 's');
		INSERT INTO projection_status (projection, partition, state) VALUES
			('p', 'tenant-a', 'running'), ('p', 'tenant-b', 'running'), ('p', '*', 'running');
		INSERT INTO projection_dead_letters (projection, scope, partition, transaction_id, global_position, stream_id,
			stream_position, message_id, message_type, message_data, error, attempts) VALUES
			('p', 'tenant-a', 'tenant-a', '1', 1, 's', 1, 'm1', 'E', '{}', 'boom', 3),
			('p', 'tenant-b', 'tenant-b', '1', 2, 's', 1, 'm2', 'E', '{}', 'boom', 3),
			('p', '*', 'tenant-a', '1', 1, 's', 1, 'm1', 'E', '{}', 'boom', 3),
			('p', '*', 'tenant-b', '1', 2, 's', 1, 'm2', 'E', '{}', 'boom', 3);
		INSERT INTO snapshots (readmodel_table_name, stream_id, last_stream_position, last_global_position, snapshot, partition) VALUES
			('carts', 'partition:tenant-a|id:c1', 1, 1, '{}', 'tenant-a'),
			('carts', 'partition:tenant-b|id:c1', 1, 2, '{}', 'tenant-b');
		INSERT INTO subscriptions (subscription_id, partition) VALUES ('p', 'tenant-a'), ('p', 'tenant-b'), ('p', '*');`)
	require.NoError(t, err)
}

// With row-level security on, raw SQL of the application role scoped to
// one tenant sees, changes and writes none of the other tenant's rows in
// the projection tables and the read-model snapshots table, and none of
// the rows of projections over every partition ('*'); unscoped, it sees
// nothing.
func TestRowLevelSecurityProjectionTables(t *testing.T) {
	t.Parallel()
	e := newRLSEnv(t, "tenant-a", "tenant-b")
	ctx := t.Context()
	fillProjectionTables(t, e.owner)

	// Rows each tenant sees of its own in each table.
	own := map[string]int{
		"projection_stream_checkpoints": 1,
		"projection_status":             1,
		"projection_dead_letters":       1, // not the '*' projection's dead letter of its event
		"snapshots":                     1,
		"subscriptions":                 1,
	}
	scoped := func(tenant string, fn func(tx pgx.Tx)) {
		t.Helper()
		tx, err := e.app.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if tenant != "" {
			require.NoError(t, postgres.SetTenant(ctx, tx, store.TenantID(tenant)))
		}
		fn(tx)
	}
	countIn := func(tx pgx.Tx, sql string) int {
		t.Helper()
		var n int
		require.NoError(t, tx.QueryRow(ctx, sql).Scan(&n), sql)
		return n
	}
	for _, pair := range [][2]string{{"tenant-a", "tenant-b"}, {"tenant-b", "tenant-a"}} {
		me, other := pair[0], pair[1]
		for table, n := range own {
			scoped(me, func(tx pgx.Tx) {
				assert.Zero(t, countIn(tx, `SELECT count(*) FROM `+table+` WHERE partition = '`+other+`'`), "%s as %s", table, me)
				assert.Zero(t, countIn(tx, `SELECT count(*) FROM `+table+` WHERE partition = '*'`), "%s as %s", table, me)
				assert.Equal(t, n, countIn(tx, `SELECT count(*) FROM `+table), "%s as %s", table, me)
				tag, err := tx.Exec(ctx, `UPDATE `+table+` SET partition = partition WHERE partition <> '`+me+`'`)
				require.NoError(t, err)
				assert.Zero(t, tag.RowsAffected(), "%s as %s: update of others' rows", table, me)
				tag, err = tx.Exec(ctx, `DELETE FROM `+table)
				require.NoError(t, err)
				assert.Equal(t, int64(n), tag.RowsAffected(), "%s as %s: delete reaches its own rows only", table, me)
			})
		}
		// Naming the other tenant's partition directly does not help.
		for _, table := range []string{"projection_stream_checkpoints", "projection_status", "projection_dead_letters"} {
			scoped(me, func(tx pgx.Tx) {
				assert.Zero(t, countIn(tx, `SELECT count(*) FROM `+pgx.Identifier{partitionOf(t, table, other)}.Sanitize()))
				assert.Zero(t, countIn(tx, `SELECT count(*) FROM `+table+`_default`), "%s_default as %s", table, me)
			})
		}
	}
	// Writing the other tenant's rows, or rows of a projection over every
	// partition, is refused.
	for name, sql := range map[string]string{
		"checkpoint of B": `INSERT INTO projection_stream_checkpoints (subscription_id, partition, stream_id) VALUES ('x', 'tenant-b', 's')`,
		"status of B":     `INSERT INTO projection_status (projection, partition, state) VALUES ('x', 'tenant-b', 'running')`,
		"status of '*'":   `INSERT INTO projection_status (projection, partition, state) VALUES ('x', '*', 'running')`,
		"dead letter of B": `INSERT INTO projection_dead_letters (projection, scope, partition, transaction_id, global_position, stream_id,
			stream_position, message_id, message_type, message_data, error, attempts) VALUES ('x', 'tenant-b', 'tenant-b', '1', 9, 's', 1, 'm', 'E', '{}', 'e', 1)`,
		"own event's dead letter of '*'": `INSERT INTO projection_dead_letters (projection, scope, partition, transaction_id, global_position, stream_id,
			stream_position, message_id, message_type, message_data, error, attempts) VALUES ('x', '*', 'tenant-a', '1', 9, 's', 1, 'm', 'E', '{}', 'e', 1)`,
		"snapshot of B":        `INSERT INTO snapshots (readmodel_table_name, stream_id, last_stream_position, last_global_position, snapshot, partition) VALUES ('carts', 'x', 1, 1, '{}', 'tenant-b')`,
		"move own snapshot":    `UPDATE snapshots SET partition = 'tenant-b'`,
		"move own dead letter": `UPDATE projection_dead_letters SET scope = '*'`,
	} {
		scoped("tenant-a", func(tx pgx.Tx) {
			_, err := tx.Exec(ctx, sql)
			assert.True(t, rlsViolation(err), "%s: want a row-level security violation, got %v", name, err)
		})
	}
	// Its own rows are writable.
	scoped("tenant-a", func(tx pgx.Tx) {
		_, err := tx.Exec(ctx, `INSERT INTO projection_dead_letters (projection, scope, partition, transaction_id, global_position, stream_id,
			stream_position, message_id, message_type, message_data, error, attempts) VALUES ('x', 'tenant-a', 'tenant-a', '1', 9, 's', 1, 'm', 'E', '{}', 'e', 1)`)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO snapshots (readmodel_table_name, stream_id, last_stream_position, last_global_position, snapshot, partition)
			VALUES ('carts', 'x', 1, 1, '{}', 'tenant-a')`)
		require.NoError(t, err)
	})
	// Unscoped: nothing.
	scoped("", func(tx pgx.Tx) {
		for table := range own {
			assert.Zero(t, countIn(tx, `SELECT count(*) FROM `+table), table)
		}
	})
	// The owner is not filtered.
	var n int
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM projection_dead_letters`).Scan(&n))
	assert.Equal(t, 4, n)
}

// A database that ran with row-level security under schema v5 (policies on
// the event tables only) gets the policies on the projection tables and the
// snapshots table when Migrate applies 006; one without row-level security
// keeps it off. The data stays.
func TestMigrationCoversTenantTablesOfARowLevelSecurityDatabase(t *testing.T) {
	t.Parallel()
	for _, rls := range []bool{true, false} {
		t.Run(map[bool]string{true: "rls", false: "no_rls"}[rls], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			pool := pgtest.NewPool(t)
			migrateBefore(t, pool, 6)
			mgr, err := tenancy.NewManager(pool, &tenancy.Config{Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			for _, id := range []string{"tenant-a", "tenant-b"} {
				_, _, err = mgr.Create(ctx, store.TenantID(id), "")
				require.NoError(t, err, "the Manager works on a v5 registry")
			}
			fillProjectionTables(t, pool)
			if rls {
				require.NoError(t, postgres.EnableRowLevelSecurity(ctx, pool))
				left := unprotected(t, pool)
				assert.Contains(t, left, "public.projection_status", "v5 registers the event tables only")
				assert.NotContains(t, left, "public.messages")
			}

			require.NoError(t, postgres.Migrate(ctx, pool))
			require.NoError(t, postgres.Migrate(ctx, pool), "migrating again changes nothing")
			var on int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relrowsecurity`).Scan(&on))
			if !rls {
				assert.Zero(t, on, "a database without row-level security keeps it off")
				require.NoError(t, postgres.EnableRowLevelSecurity(ctx, pool))
			}
			require.Empty(t, unprotected(t, pool))
			var qual string
			require.NoError(t, pool.QueryRow(ctx, `SELECT qual FROM pg_policies WHERE tablename = $1`,
				partitionOf(t, "projection_dead_letters", "tenant-a")).Scan(&qual))
			assert.Contains(t, qual, "scope", "the dead letters' policy keys on the scope too")
			var n int
			require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM projection_dead_letters) + (SELECT count(*) FROM snapshots)
				+ (SELECT count(*) FROM projection_status)`).Scan(&n))
			assert.Equal(t, 4+2+3, n, "the data stays")
		})
	}
}
