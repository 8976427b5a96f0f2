package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/store"
)

// appPool opens a pool on pool's database whose connections (and the
// lease and listener connections projections open from its config) carry
// application name app, so the test can count them.
func appPool(t *testing.T, pool *pgxpool.Pool, app string) *pgxpool.Pool {
	t.Helper()
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	p, err := pgxpool.NewWithConfig(projtest.Ctx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// backends counts the backends of the test database named app outside
// app's pool, and returns the pids of those listening (their last
// statement was LISTEN).
func backends(t *testing.T, probe, pool *pgxpool.Pool, app string) (outside int, listeners []int) {
	t.Helper()
	rows, err := probe.Query(projtest.Ctx(t), `SELECT pid, query FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1`, app)
	require.NoError(t, err)
	total := 0
	for rows.Next() {
		var pid int
		var q string
		require.NoError(t, rows.Scan(&pid, &q))
		total++
		if len(q) >= 6 && (q[:6] == "listen" || q[:6] == "LISTEN") {
			listeners = append(listeners, pid)
		}
	}
	require.NoError(t, rows.Err())
	return total - int(pool.Stat().TotalConns()), listeners
}

// runner is a projection or a consumer.
type runner interface {
	Start(context.Context) error
	Stop(context.Context) error
	Status(context.Context) (projection.Status, error)
	WaitFor(context.Context, store.Position) error
}

// wakes appends an event and checks every runner applies it well before
// its poll interval (an hour): woken by the shared listener.
func wakes(t *testing.T, es store.EventStore, cart string, runners ...runner) {
	t.Helper()
	pos := projtest.AppendCart(t, es, "", cart, projtest.CartEvent(projtest.TypeAdded, cart, "x", 1)).LastPosition()
	for i, r := range runners {
		ctx, cancel := context.WithTimeout(projtest.Ctx(t), 15*time.Second)
		require.NoError(t, r.WaitFor(ctx, pos), "runner %d woken by the notification", i)
		cancel()
	}
}

// Every projection and consumer of a process on one pool shares one
// LISTEN connection: N runners hold N lease connections and one listener
// connection, not 2N, and each still wakes on a notification. The
// listener reconnects when its backend is terminated, and goes away with
// the last runner.
func TestProjectionsShareOneListener(t *testing.T) {
	t.Parallel()
	base, es := projtest.NewDB(t)
	const app = "troupe-shared-listener-test"
	pool := appPool(t, base, app)

	const n = 4
	var runners []runner
	for i := range n - 1 {
		cfg := projtest.FastConfig(fmt.Sprintf("p%d", i))
		cfg.PollInterval = time.Hour // only a notification can wake it up
		runners = append(runners, projtest.NewProjection(t, pool, cfg))
	}
	c, err := consumer.New(pool, &consumer.Config{Name: "c", PollInterval: time.Hour,
		LeaseRetryInterval: 50 * time.Millisecond, Logger: projtest.QuietLogger})
	require.NoError(t, err)
	runners = append(runners, c)

	for _, r := range runners {
		require.NoError(t, r.Start(projtest.Ctx(t)))
	}
	for i, r := range runners {
		projtest.Eventually(t, 30*time.Second, fmt.Sprintf("runner %d to hold its lease", i), func() bool {
			return projtest.LocalState(t, r) == projection.StateRunning
		})
	}
	var listener int
	projtest.Eventually(t, 30*time.Second, "n lease connections and one listener connection", func() bool {
		outside, listeners := backends(t, base, pool, app)
		if len(listeners) == 1 {
			listener = listeners[0]
		}
		return outside == n+1 && len(listeners) == 1
	})
	wakes(t, es, "c1", runners...)

	// The listener's backend is terminated: it reconnects, and the
	// runners still wake on notifications.
	_, err = base.Exec(projtest.Ctx(t), `SELECT pg_terminate_backend($1)`, listener)
	require.NoError(t, err)
	projtest.Eventually(t, 30*time.Second, "a new listener connection", func() bool {
		outside, listeners := backends(t, base, pool, app)
		return outside == n+1 && len(listeners) == 1 && listeners[0] != listener
	})
	wakes(t, es, "c2", runners...)

	// The listener stays while one runner is left, and goes with it.
	for _, r := range runners[1:] {
		require.NoError(t, r.Stop(projtest.Ctx(t)))
	}
	projtest.Eventually(t, 30*time.Second, "one lease connection and the listener connection", func() bool {
		outside, listeners := backends(t, base, pool, app)
		return outside == 2 && len(listeners) == 1
	})
	wakes(t, es, "c3", runners[0])
	require.NoError(t, runners[0].Stop(projtest.Ctx(t)))
	projtest.Eventually(t, 30*time.Second, "no connection outside the pool", func() bool {
		outside, listeners := backends(t, base, pool, app)
		return outside == 0 && len(listeners) == 0
	})
}

// Projections with notifications off do not start the listener.
func TestProjectionDisableNotifyHasNoListener(t *testing.T) {
	t.Parallel()
	base, _ := projtest.NewDB(t)
	const app = "troupe-no-listener-test"
	pool := appPool(t, base, app)
	cfg := projtest.FastConfig("polled")
	cfg.DisableNotify = true
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)
	projtest.Eventually(t, 30*time.Second, "the projection to hold its lease", func() bool {
		return projtest.LocalState(t, p) == projection.StateRunning
	})
	projtest.Eventually(t, 30*time.Second, "only the lease connection outside the pool", func() bool {
		outside, listeners := backends(t, base, pool, app)
		return outside == 1 && len(listeners) == 0
	})
}
