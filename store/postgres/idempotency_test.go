package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// countMessages counts every stored message row, archived ones included.
func countMessages(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM messages`).Scan(&n))
	return n
}

// Re-sending an append returns the first append's result and writes
// nothing, whatever expected version the retry carries, also inside a
// caller's transaction, which stays usable.
func TestAppendIdempotentRetry(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	_, err := s.AppendToStream(ctx, "s", events("Before", 2), store.AppendOptions{})
	require.NoError(t, err)
	batch := withIDs("b", events("E", 3))
	first, err := s.AppendToStream(ctx, "s", batch, store.AppendOptions{ExpectedVersion: store.Exact(2)})
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "s", events("After", 1), store.AppendOptions{})
	require.NoError(t, err)
	stored := countMessages(t, pool)

	for _, expected := range []store.ExpectedVersion{store.Exact(2), store.Any, store.StreamExists} {
		again, err := s.AppendToStream(ctx, "s", batch, store.AppendOptions{ExpectedVersion: expected})
		require.NoError(t, err, "retry with %s", expected)
		require.Equal(t, first, again, "retry with %s", expected)
	}
	require.Equal(t, stored, countMessages(t, pool), "a retry wrote")

	// A retry of an append that created its stream says so.
	created, err := s.AppendToStream(ctx, "fresh", withIDs("f", events("E", 2)), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.NoError(t, err)
	again, err := s.AppendToStream(ctx, "fresh", withIDs("f", events("E", 2)), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.NoError(t, err)
	require.Equal(t, created, again)
	require.True(t, again.CreatedNewStream)

	// Inside a transaction: answered without an error, so the
	// transaction goes on.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	inTx := s.WithTx(tx)
	again, err = inTx.AppendToStream(ctx, "s", batch, store.AppendOptions{ExpectedVersion: store.Exact(2)})
	require.NoError(t, err)
	require.Equal(t, first, again)
	_, err = inTx.AppendToStream(ctx, "s", events("InTx", 1), store.AppendOptions{ExpectedVersion: store.Exact(6)})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, stored+2+1, countMessages(t, pool)) // "fresh" and the event appended in the transaction
}

// Message ids reused anywhere but at the positions of an identical earlier
// append are duplicates: an error matching store.ErrDuplicateMessageID
// naming the id, and nothing written.
func TestAppendDuplicateMessageID(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	_, err := s.AppendToStream(ctx, "s", withIDs("a", events("E", 3)), store.AppendOptions{}) // a-1..a-3 at 1..3
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "gone", withIDs("g", events("E", 1)), store.AppendOptions{})
	require.NoError(t, err)
	require.NoError(t, s.ArchiveStream(ctx, "gone", store.ArchiveOptions{}))
	stored := countMessages(t, pool)

	ids := func(list ...string) []store.EventData {
		evs := events("E", len(list))
		for i, id := range list {
			evs[i].MessageID = id
		}
		return evs
	}
	cases := []struct {
		name     string
		stream   store.StreamID
		events   []store.EventData
		expected store.ExpectedVersion
		names    string
	}{
		{"other stream", "t", ids("a-1", "a-2", "a-3"), store.Any, "a-1"},
		{"other order", "s", ids("a-2", "a-1", "a-3"), store.Any, "a-1"},
		{"new id after stored ones", "s", ids("a-1", "a-2", "a-3", "a-4"), store.Any, "a-4"},
		{"new id before stored ones", "s", ids("x-1", "a-1"), store.Any, "a-1"},
		{"exact version elsewhere", "s", ids("a-1", "a-2", "a-3"), store.Exact(1), "a-1"},
		{"no stream but stored later", "s", ids("a-2", "a-3"), store.NoStream, "a-2"},
		{"archived event", "gone", ids("g-1"), store.Any, "g-1"},
		{"archived event in a new stream", "new", ids("g-1"), store.NoStream, "g-1"},
	}
	for _, tc := range cases {
		_, err := s.AppendToStream(ctx, tc.stream, tc.events, store.AppendOptions{ExpectedVersion: tc.expected})
		require.ErrorIs(t, err, store.ErrDuplicateMessageID, tc.name)
		require.ErrorContains(t, err, `"`+tc.names+`"`, tc.name)
		require.NotErrorIs(t, err, store.ErrVersionConflict, tc.name)
	}
	require.Equal(t, stored, countMessages(t, pool), "a rejected append wrote")
	requireConsistent(t, pool, "s", "default_partition")

	// Message ids are per partition: the same ids elsewhere are new.
	_, err = s.AppendToStream(ctx, "s", withIDs("a", events("E", 3)), store.AppendOptions{Partition: "other"})
	require.NoError(t, err)
}

// Two identical appends racing: both return the same result, the events
// are stored once.
func TestAppendIdenticalRetriesRacing(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	for round := range 10 {
		stream := store.StreamID("race-" + string(rune('a'+round)))
		batch := withIDs(string(stream), events("E", 4))
		start := make(chan struct{})
		results := make([]store.AppendResult, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.AppendToStream(t.Context(), stream, batch, store.AppendOptions{})
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.Equal(t, results[0], results[1])
		require.Equal(t, store.Version(4), requireConsistent(t, pool, stream, "default_partition"))
	}
}

// A retry that runs while the first append's transaction is still open
// passes the statement's guard, waits for that transaction and then hits
// the unique message id constraint: on the pool it is still answered with
// the first append's result; inside a caller's transaction, which the
// violation aborts, it is an error matching store.ErrDuplicateMessageID.
func TestAppendRetryRacingOpenTransaction(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	for _, retryInTx := range []bool{false, true} {
		stream := store.StreamID(fmt.Sprintf("held-%t", retryInTx))
		batch := withIDs(string(stream), events("E", 3))
		first, err := pool.Begin(ctx)
		require.NoError(t, err)
		res, err := s.WithTx(first).AppendToStream(ctx, stream, batch, store.AppendOptions{})
		require.NoError(t, err)

		waiting := lockWaiters(t, pool)
		done := make(chan struct{})
		var again store.AppendResult
		var retryErr error
		go func() {
			defer close(done)
			if !retryInTx {
				again, retryErr = s.AppendToStream(ctx, stream, batch, store.AppendOptions{})
				return
			}
			retryErr = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				_, err := s.WithTx(tx).AppendToStream(ctx, stream, batch, store.AppendOptions{})
				return err
			})
		}()
		waitFor(t, "the retry to wait for the first append", func() bool { return lockWaiters(t, pool) > waiting })
		require.NoError(t, first.Commit(ctx))
		<-done
		if retryInTx {
			require.ErrorIs(t, retryErr, store.ErrDuplicateMessageID)
		} else {
			require.NoError(t, retryErr)
			require.Equal(t, res, again)
		}
		require.Equal(t, store.Version(3), requireConsistent(t, pool, stream, "default_partition"))
	}
}
