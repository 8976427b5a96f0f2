package postgres_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// closedPort returns a TCP port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// An append that never reached PostgreSQL (connection refused) is a known
// failure: ErrUnavailable, nothing written, safe to retry.
func TestAppendConnectionRefusedIsUnavailable(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", closedPort(t)))
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := postgres.New(pool, nil)
	require.NoError(t, err)

	_, err = s.AppendToStream(t.Context(), "s", events("E", 1), store.AppendOptions{Partition: "tenant-a"})
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.Contains(t, err.Error(), "nothing was sent")
}

// An append that times out waiting for a pool connection was never sent:
// ErrUnavailable (and the context's error), within the context's deadline.
func TestAppendPoolAcquireTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(t.Context(), pool))
	s, err := postgres.New(pool, nil)
	require.NoError(t, err)

	conn, err := pool.Acquire(t.Context()) // the pool's only connection
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = s.AppendToStream(ctx, "s", events("E", 1), store.AppendOptions{Partition: "tenant-a"})
	took := time.Since(began)
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, took, 2*time.Second)
	conn.Release()

	// Nothing was written; the same append now succeeds.
	res, err := s.AppendToStream(t.Context(), "s", events("E", 1), store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.NoStream})
	require.NoError(t, err)
	assert.Equal(t, store.Version(1), res.NextExpectedVersion)
}

// A value PostgreSQL refuses fails the append with ErrInvalidArgument
// naming the event, and writes nothing.
func TestAppendRefusedValueNamesTheEvent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	evs := events("E", 3)
	evs[1].Type = "Bad"
	evs[1].Data = []byte(`{"text":"a\u0000b"}`)
	_, err := s.AppendToStream(t.Context(), "s", evs, store.AppendOptions{Partition: "tenant-a"})
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrInvalidArgument)
	assert.Contains(t, err.Error(), `event 1 (Bad)`)
	assert.Contains(t, err.Error(), `\u0000`)
	res, err := s.ReadStream(t.Context(), "s", store.ReadOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	assert.False(t, res.StreamExists)
}

// A PostgreSQL error whose SQLSTATE proves nothing was written is a
// definite failure, not an unknown outcome: a data exception (class 22)
// matches ErrInvalidArgument.
func TestAppendDataExceptionIsInvalidArgument(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	evs := events("E", 2)
	evs[0].Data = []byte(`{"n":1e1000000}`) // valid JSON, too large for jsonb's numeric
	_, err := s.AppendToStream(t.Context(), "s", evs, store.AppendOptions{Partition: "tenant-a"})
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrInvalidArgument)
	assert.Contains(t, err.Error(), "SQLSTATE 22")
	assert.Contains(t, err.Error(), `stream "s"`)
	res, err := s.ReadStream(t.Context(), "s", store.ReadOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	assert.False(t, res.StreamExists)
}
