package tenancy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// env is a migrated database with a Manager and an event store on it.
type env struct {
	pool  *pgxpool.Pool
	mgr   *tenancy.Manager
	store *postgres.Store
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newEnv(t testing.TB, cfg *tenancy.Config) env {
	t.Helper()
	ctx := testContext(t)
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, pool))
	return newEnvOn(t, pool, cfg)
}

func newEnvOn(t testing.TB, pool *pgxpool.Pool, cfg *tenancy.Config) env {
	t.Helper()
	c := tenancy.Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	mgr, err := tenancy.NewManager(pool, &c)
	require.NoError(t, err)
	st, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return env{pool: pool, mgr: mgr, store: st}
}

func (e env) create(t testing.TB, id store.TenantID) {
	t.Helper()
	_, _, err := e.mgr.Create(testContext(t), id, "tenant "+string(id))
	require.NoError(t, err)
}

func event(typ string, n int) store.EventData {
	data, _ := json.Marshal(map[string]int{"n": n})
	return store.EventData{Type: typ, Data: data}
}

func (e env) append(t testing.TB, tenant store.TenantID, stream store.StreamID, events ...store.EventData) store.AppendResult {
	t.Helper()
	res, err := e.store.AppendToStream(testContext(t), stream, events, store.AppendOptions{Partition: string(tenant), StreamType: "test"})
	require.NoError(t, err)
	return res
}

// rowTables returns, for the rows of table (SQL text: a name or a quoted,
// qualified name) with the given partition value, the relation each row is
// stored in (tableoid::regclass) and how many.
func rowTables(t testing.TB, pool *pgxpool.Pool, table string, partition store.TenantID) map[string]int {
	t.Helper()
	rows, err := pool.Query(testContext(t), fmt.Sprintf(
		`SELECT tableoid::regclass::text, count(*) FROM %s WHERE partition = $1 GROUP BY 1`, table), string(partition))
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var rel string
		var n int
		require.NoError(t, rows.Scan(&rel, &n))
		out[rel] = n
	}
	require.NoError(t, rows.Err())
	return out
}

func count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(testContext(t), sql, args...).Scan(&n))
	return n
}

func mustName(t testing.TB, table string, id store.TenantID) string {
	t.Helper()
	name, err := tenancy.PartitionName(table, id)
	require.NoError(t, err)
	return name
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
