package projtest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
)

// QuietLogger discards what it is given unless PROJECTION_TEST_LOG is set.
var QuietLogger = slog.New(slog.NewTextHandler(logSink(), nil))

func logSink() io.Writer {
	if os.Getenv("PROJECTION_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// FastConfig is a projection config with short intervals for tests.
func FastConfig(name string) projection.Config {
	return projection.Config{
		Name:               name,
		PollInterval:       200 * time.Millisecond,
		LeaseRetryInterval: 50 * time.Millisecond,
		Retry:              retry.Policy{MaxAttempts: 3, InitialDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond},
		Logger:             QuietLogger,
	}
}

// NewProjection returns a projection of cfg on pool.
func NewProjection(t testing.TB, pool *pgxpool.Pool, cfg projection.Config) *projection.Projection {
	t.Helper()
	p, err := projection.New(pool, &cfg)
	require.NoError(t, err)
	return p
}

// Runnable is a projection or a consumer.
type Runnable interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Start starts p and stops it at the end of the test.
func Start(t testing.TB, p Runnable) {
	t.Helper()
	require.NoError(t, p.Start(Ctx(t)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, p.Stop(ctx))
	})
}

// WaitFor waits (a minute at most) for p to apply everything up to pos.
func WaitFor(t testing.TB, p interface {
	WaitFor(context.Context, store.Position) error
}, pos store.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(Ctx(t), time.Minute)
	defer cancel()
	require.NoError(t, p.WaitFor(ctx, pos))
}

// SecondPool opens another pool on pool's database, as another process
// would.
func SecondPool(t testing.TB, pool *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	p2, err := pgxpool.New(Ctx(t), pool.Config().ConnString())
	require.NoError(t, err)
	t.Cleanup(p2.Close)
	return p2
}

// LastPosition returns the position of the last event in the log.
func LastPosition(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) store.Position {
	t.Helper()
	evs := ReadAllEvents(t, pool, es, partition)
	require.NotEmpty(t, evs)
	return evs[len(evs)-1].Position()
}

// LocalState returns the state of this process's runner of p.
func LocalState(t testing.TB, p interface {
	Status(context.Context) (projection.Status, error)
}) projection.State {
	t.Helper()
	st, err := p.Status(Ctx(t))
	require.NoError(t, err)
	return st.Local
}
