package actor_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// splitStore reads from one PostgreSQL store and appends through another
// (switchable), and counts reads.
type splitStore struct {
	*postgres.Store
	appendTo atomic.Pointer[postgres.Store]
	reads    atomic.Int64
}

func (s *splitStore) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	return s.appendTo.Load().AppendToStream(ctx, stream, events, opts)
}

func (s *splitStore) ReadStream(ctx context.Context, stream store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	s.reads.Add(1)
	return s.Store.ReadStream(ctx, stream, opts)
}

// An append that never reached PostgreSQL (connection refused) is a known
// failure: store.ErrUnavailable, not ErrOutcomeUnknown, and the actor goes
// on from its state without reloading it.
func TestAppendNeverSentIsNotOutcomeUnknown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := pgStores(t, 1)[0]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	pool, err := pgxpool.New(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", port))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	refused, err := postgres.New(pool, nil)
	require.NoError(t, err)

	st := &splitStore{Store: good}
	st.appendTo.Store(good)
	h, agg := startHost(t, st, actor.Config{})
	cmd := counterCmd{Tenant: "acme", Stream: "refused"}
	_, err = agg.Send(ctx, cmd)
	require.NoError(t, err)
	reads := st.reads.Load()

	st.appendTo.Store(refused)
	_, err = agg.Send(ctx, cmd)
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.NotErrorIs(t, err, actor.ErrOutcomeUnknown)

	st.appendTo.Store(good)
	r, err := agg.Send(ctx, cmd)
	require.NoError(t, err)
	assert.Equal(t, store.Version(2), r.Version)
	assert.Equal(t, reads, st.reads.Load(), "no reload after an append that was never sent")
	assert.Zero(t, h.Stats().EventsReplayed)
}

// While a table lock stalls every append, a Send whose context ends is
// answered at its deadline, the others within the host's StoreTimeout
// (plus the reload it causes), and the stream works again once the lock
// is gone.
func TestSendIsBoundedWhilePostgresStalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connString := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, connString)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool))
	st, err := postgres.New(pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	const storeTimeout = time.Second
	_, agg := startHost(t, st, actor.Config{StoreTimeout: storeTimeout})
	cmd := counterCmd{Tenant: "acme", Stream: "stalled"}
	_, err = agg.Send(ctx, cmd)
	require.NoError(t, err)

	locker, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = locker.Exec(ctx, "LOCK TABLE streams, messages IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	type answer struct {
		err  error
		took time.Duration
	}
	send := func(ctx context.Context) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			began := time.Now()
			_, err := agg.Send(ctx, cmd)
			ch <- answer{err, time.Since(began)}
		}()
		return ch
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	first := send(short)
	second := send(ctx)
	a := <-first
	require.Error(t, a.err)
	assert.ErrorIs(t, a.err, context.DeadlineExceeded)
	assert.Less(t, a.took, time.Second, "answered at the caller's deadline")
	b := <-second
	require.Error(t, b.err, "the append can't pass the lock")
	assert.Less(t, b.took, 3*storeTimeout+2*time.Second, "bounded by StoreTimeout")

	require.NoError(t, locker.Rollback(ctx))
	r, err := agg.Send(ctx, cmd)
	require.NoError(t, err)
	evs := readAll(t, st, "acme", "stalled")
	assert.Equal(t, store.Version(len(evs)), r.Version)
}
