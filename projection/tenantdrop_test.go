package projection_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/tenancy"
)

// rowsOf counts partition's rows in every table of the schema with a
// partition column, DEFAULT partitions included.
func rowsOf(t *testing.T, pool *pgxpool.Pool, partition string) map[string]int {
	t.Helper()
	ctx := projtest.Ctx(t)
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'partition' AND NOT a.attisdropped
		WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	out := map[string]int{}
	for _, tb := range tables {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM ONLY `+pgx.Identifier{tb}.Sanitize()+` WHERE partition = $1`, partition).Scan(&n))
		if n > 0 {
			out[tb] = n
		}
	}
	return out
}

// After a tenant is dropped, neither a projection over every partition
// (with its read model's row cache warm) nor one limited to the tenant
// writes a row of the tenant again, and both stop cleanly.
func TestDroppedTenantIsNotWrittenAgainByProjections(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	_, err := pool.Exec(ctx, `CREATE TABLE carts (cart_id text NOT NULL, partition text NOT NULL,
    snapshot jsonb, stream_id text, last_stream_position bigint, last_global_position bigint,
    item_count int, is_open boolean, PRIMARY KEY (cart_id, partition)) PARTITION BY LIST (partition);
CREATE TABLE carts_default PARTITION OF carts DEFAULT;
INSERT INTO tenant_tables (relation) VALUES ('carts');`)
	require.NoError(t, err)
	projtest.CreateAppliedTable(t, pool)
	mgr, err := tenancy.NewManager(pool, &tenancy.Config{Logger: projtest.QuietLogger})
	require.NoError(t, err)
	for _, id := range []store.TenantID{"tenant-a", "tenant-b"} {
		_, _, err := mgr.Create(ctx, id, "")
		require.NoError(t, err)
	}
	projtest.SeedCarts(t, es, "tenant-a", 3, 2)
	projtest.SeedCarts(t, es, "tenant-b", 3, 2)

	allCfg := projtest.FastConfig("carts")
	allCfg.BatchHandlers = []projection.BatchHandler{projtest.CartProjection(t, "carts", readmodel.InRow, nil)}
	all := projtest.NewProjection(t, pool, allCfg)
	onlyCfg := projtest.FastConfig("applied-a")
	onlyCfg.Partition = "tenant-a"
	onlyCfg.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "a"}}
	only := projtest.NewProjection(t, pool, onlyCfg)
	projtest.Start(t, all)
	projtest.Start(t, only)
	projtest.WaitFor(t, all, projtest.LastPosition(t, pool, es, ""))
	projtest.WaitFor(t, only, projtest.LastPosition(t, pool, es, "tenant-a"))
	require.NotEmpty(t, rowsOf(t, pool, "tenant-a"))

	require.NoError(t, mgr.Drop(ctx, "tenant-a"))
	require.Empty(t, rowsOf(t, pool, "tenant-a"))

	// The projection over every partition goes on with the other tenant's
	// events; tenant-a's writes are refused.
	_, err = es.AppendToStream(ctx, "cart-0", []store.EventData{projtest.CartEvent(projtest.TypeAdded, "cart-0", "x", 1)},
		store.AppendOptions{Partition: "tenant-a", StreamType: "cart"})
	require.ErrorIs(t, err, store.ErrTenantDropped)
	last := projtest.AppendCart(t, es, "tenant-b", "cart-0", projtest.CartEvent(projtest.TypeAdded, "cart-0", "x", 1)).LastPosition()
	projtest.WaitFor(t, all, last)
	projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InRow, "tenant-b")

	require.NoError(t, only.Stop(ctx))
	require.NoError(t, all.Stop(ctx))
	require.Empty(t, rowsOf(t, pool, "tenant-a"), "nothing of the dropped tenant was written again")

	// Created again, the tenant is new: the projection over every partition
	// builds its rows from its new events only.
	_, _, err = mgr.Create(ctx, "tenant-a", "")
	require.NoError(t, err)
	require.NoError(t, all.Start(ctx))
	last = projtest.AppendCart(t, es, "tenant-a", "cart-0", projtest.CartEvent(projtest.TypeOpened, "cart-0", "", 0)).LastPosition()
	projtest.WaitFor(t, all, last)
	row := projtest.ReadCarts(t, pool, "carts", readmodel.InRow)["tenant-a/cart-0"]
	require.Equal(t, projtest.CartRow{State: projtest.CartState{Open: true, Items: map[string]int{}, Applied: 1}, Open: true, Position: 1}, row)
}

// A projection limited to a dropped tenant can never write its checkpoint
// or status again: started after the drop, it stops at once with an error
// matching store.ErrTenantDropped instead of retrying for ever.
func TestProjectionOfDroppedTenantStops(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.CreateAppliedTable(t, pool)
	mgr, err := tenancy.NewManager(pool, &tenancy.Config{Logger: projtest.QuietLogger})
	require.NoError(t, err)
	_, _, err = mgr.Create(ctx, "gone", "")
	require.NoError(t, err)
	projtest.SeedCarts(t, es, "gone", 2, 1)
	require.NoError(t, mgr.Drop(ctx, "gone"))

	cfg := projtest.FastConfig("applied-gone")
	cfg.Partition = "gone"
	cfg.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "gone"}}
	p := projtest.NewProjection(t, pool, cfg)
	err = p.Run(ctx)
	require.ErrorIs(t, err, store.ErrTenantDropped)
	require.ErrorIs(t, p.Err(), store.ErrTenantDropped)
	require.Empty(t, rowsOf(t, pool, "gone"))
}
