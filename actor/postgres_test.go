package actor_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// pgStores returns n stores on n separate pools (as n processes would
// have) against one fresh, migrated database.
func pgStores(t testing.TB, n int) []*postgres.Store {
	t.Helper()
	ctx := context.Background()
	connString := pgtest.NewDatabase(t)
	out := make([]*postgres.Store, n)
	for i := range n {
		cfg, err := pgxpool.ParseConfig(connString)
		require.NoError(t, err)
		cfg.MaxConns = 16
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		if i == 0 {
			require.NoError(t, postgres.Migrate(ctx, pool))
		}
		out[i], err = postgres.New(pool, &postgres.Config{Logger: quietLogger()})
		require.NoError(t, err)
	}
	return out
}

// Must show: two hosts on two pools against one database, 16 goroutines
// each sending increments to the same 100 streams.
func TestTwoHostsOnPostgres(t *testing.T) {
	t.Parallel()
	st := pgStores(t, 2)
	runTwoHosts(t, st[0], st[1], 100, 50)
}
