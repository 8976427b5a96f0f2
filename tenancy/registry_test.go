package tenancy_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// A read model registered in tenant_tables (as its own migration would)
// gets a tenant partition by its partition column, in its lock order; an
// unpartitioned registered table has the tenant's rows deleted by Drop; a
// table registered for row-level security is covered without being named.
func TestRegisteredTenantTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	_, err := e.pool.Exec(ctx, `
		CREATE SCHEMA rm;
		CREATE TABLE rm.orders (tenant text NOT NULL, order_id text NOT NULL, PRIMARY KEY (tenant, order_id)) PARTITION BY LIST (tenant);
		CREATE TABLE rm.orders_default PARTITION OF rm.orders DEFAULT;
		CREATE TABLE rm.totals (tenant text NOT NULL, total int NOT NULL);
		INSERT INTO tenant_tables (relation, partition_column, partitioned, lock_order, row_level_security) VALUES
			('rm.orders', 'tenant', true, 5, true),
			('rm.totals', 'tenant', false, 1000, false);
		INSERT INTO rm.orders VALUES ('acme', 'o1'), ('globex', 'o1');
		INSERT INTO rm.totals VALUES ('acme', 1), ('globex', 2);`)
	require.NoError(t, err)

	tables, err := e.mgr.Tables(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(tables), 5)
	assert.Equal(t, []string{"rm.orders", "public.streams", "public.messages", "public.aggregate_snapshots", "public.subscriptions"}, tables[:5],
		"registered lock order first")
	assert.NotContains(t, tables, "rm.totals", "unpartitioned tables get no partition")
	assert.NotContains(t, tables, "public.snapshots")

	e.create(t, "acme")
	name := mustName(t, "orders", "acme")
	var rel string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM rm.orders WHERE tenant = 'acme'`).Scan(&rel))
	assert.Equal(t, "rm."+name, rel, "the row moved out of the DEFAULT partition by its partition column")

	// Row-level security covers the registered table and its partitions.
	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, e.pool))
	var on bool
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT relrowsecurity FROM pg_class WHERE oid = $1::regclass`,
		pgx.Identifier{"rm", name}.Sanitize()).Scan(&on))
	assert.True(t, on)
	var using string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT qual FROM pg_policies WHERE schemaname = 'rm' AND tablename = 'orders'`).Scan(&using))
	assert.Contains(t, using, "tenant = current_setting('troupe.tenant'")
	require.NoError(t, postgres.DisableRowLevelSecurity(ctx, e.pool))

	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	assert.Equal(t, 1, count(t, e.pool, `SELECT count(*) FROM rm.orders`))
	assert.Equal(t, 0, count(t, e.pool, `SELECT count(*) FROM rm.totals WHERE tenant = 'acme'`), "Drop deletes from unpartitioned tables")
	assert.Equal(t, 1, count(t, e.pool, `SELECT count(*) FROM rm.totals WHERE tenant = 'globex'`))

	// A registered table that is not partitioned by its column is refused;
	// a dropped registered table is skipped.
	_, err = e.pool.Exec(ctx, `CREATE TABLE rm.wrong (partition text) PARTITION BY LIST (partition);
		INSERT INTO tenant_tables (relation, partition_column) VALUES ('rm.wrong', 'tenant_id')`)
	require.NoError(t, err)
	_, _, err = e.mgr.Create(ctx, "acme", "")
	assert.ErrorIs(t, err, tenancy.ErrNotPartitioned)
	_, err = e.pool.Exec(ctx, `DROP TABLE rm.wrong`)
	require.NoError(t, err)
	_, _, err = e.mgr.Create(ctx, "acme", "")
	require.NoError(t, err)
}

// The Manager runs on a connection and inside the caller's transaction too.
func TestManagerOnATransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	m, err := tenancy.NewManager(tx, nil)
	require.NoError(t, err)
	_, created, err := m.Create(ctx, "acme", "Acme")
	require.NoError(t, err)
	assert.True(t, created)
	_, err = e.mgr.Get(ctx, "acme")
	assert.ErrorIs(t, err, tenancy.ErrTenantNotFound, "not visible before the caller commits")
	require.NoError(t, tx.Commit(ctx))
	got, err := e.mgr.Get(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, "Acme", got.Name)
	parts, err := e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	assert.NotEmpty(t, parts)
}
