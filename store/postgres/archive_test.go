package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// archivedRows counts the archived stream and message rows of a stream.
func archivedRows(t *testing.T, pool *pgxpool.Pool, stream string) (streams, messages int) {
	t.Helper()
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT
    (SELECT count(*) FROM streams WHERE stream_id = $1 AND is_archived),
    (SELECT count(*) FROM messages WHERE stream_id = $1 AND is_archived)`, stream).Scan(&streams, &messages))
	return streams, messages
}

// A stream archived, started again and archived again: the second archive
// replaces the first archived incarnation (the primary keys hold one
// archived incarnation per stream), and the stream can start over again.
func TestArchiveRecreateArchiveAgain(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	_, err := s.AppendToStream(ctx, "s", withIDs("one", events("E", 2)), store.AppendOptions{StreamType: "first"})
	require.NoError(t, err)
	require.NoError(t, s.ArchiveStream(ctx, "s", store.ArchiveOptions{}))
	require.ErrorIs(t, s.ArchiveStream(ctx, "s", store.ArchiveOptions{}), store.ErrStreamNotFound)
	st, msgs := archivedRows(t, pool, "s")
	require.Equal(t, [2]int{1, 2}, [2]int{st, msgs})

	res, err := s.AppendToStream(ctx, "s", withIDs("two", events("E", 3)), store.AppendOptions{ExpectedVersion: store.NoStream, StreamType: "second"})
	require.NoError(t, err)
	require.True(t, res.CreatedNewStream)
	require.Equal(t, store.Version(3), res.NextExpectedVersion)
	rr, err := s.ReadStream(ctx, "s", store.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"two-1", "two-2", "two-3"}, ids(rr.Events))
	require.Equal(t, "second", rr.Events[0].StreamType)

	require.NoError(t, s.ArchiveStream(ctx, "s", store.ArchiveOptions{}))
	st, msgs = archivedRows(t, pool, "s")
	require.Equal(t, [2]int{1, 3}, [2]int{st, msgs}, "the newer archive replaced the older one")
	var kept []string
	rows, err := pool.Query(ctx, `SELECT message_id FROM messages WHERE stream_id = 's' AND is_archived ORDER BY stream_position`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		kept = append(kept, id)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"two-1", "two-2", "two-3"}, kept)

	rr, err = s.ReadStream(ctx, "s", store.ReadOptions{})
	require.NoError(t, err)
	require.False(t, rr.StreamExists)
	res, err = s.AppendToStream(ctx, "s", events("E", 1), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.NoError(t, err)
	require.True(t, res.CreatedNewStream)
	requireConsistent(t, pool, "s", "default_partition")
}

// Archiving inside a caller's transaction takes effect with it: rolled
// back, the stream is live again; an append waiting on the archive's lock
// finds the stream gone once the archive commits.
func TestArchiveInTransaction(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	_, err := s.AppendToStream(ctx, "s", events("E", 2), store.AppendOptions{Partition: "p"})
	require.NoError(t, err)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, s.WithTx(tx).ArchiveStream(ctx, "s", store.ArchiveOptions{Partition: "p"}))
	require.NoError(t, tx.Rollback(ctx))
	rr, err := s.ReadStream(ctx, "s", store.ReadOptions{Partition: "p"})
	require.NoError(t, err)
	require.Equal(t, store.Version(2), rr.CurrentVersion)

	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	require.NoError(t, s.WithTx(tx).ArchiveStream(ctx, "s", store.ArchiveOptions{Partition: "p"}))
	waiting := lockWaiters(t, pool)
	done := make(chan error, 1)
	go func() {
		_, err := s.AppendToStream(ctx, "s", events("E", 1), store.AppendOptions{Partition: "p", ExpectedVersion: store.Exact(2)})
		done <- err
	}()
	waitFor(t, "the append to wait for the archive", func() bool { return lockWaiters(t, pool) > waiting })
	require.NoError(t, tx.Commit(ctx))
	requireConflict(t, <-done, "s", "p", store.Exact(2), 0, false)
	requireConsistent(t, pool, "s", "p")
}
