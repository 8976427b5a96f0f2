package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// batchPart returns a batch part appending events to stream.
func batchPart(stream store.StreamID, expected store.ExpectedVersion, evs ...store.EventData) store.StreamAppend {
	return store.StreamAppend{Stream: stream, Events: evs, Options: store.AppendOptions{ExpectedVersion: expected}}
}

// A part whose statement raises an error (here a check constraint the
// store knows nothing of) gets that error; the batch is sent again without
// it and the other parts commit together, on the pool and in a caller's
// transaction, which stays usable.
func TestAppendBatchStatementError(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (message_type <> 'Poison')`)
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "b-conflict", events("Seeded", 1), store.AppendOptions{})
	require.NoError(t, err)

	run := func(t *testing.T, b store.BatchAppender, prefix string) {
		t.Helper()
		out, err := b.AppendBatch(ctx, []store.StreamAppend{
			batchPart(store.StreamID(prefix+"a-clean"), store.NoStream, events("E", 2)...),
			batchPart(store.StreamID(prefix+"b-poison"), store.Any, events("Poison", 1)...),
			batchPart("b-conflict", store.NoStream, events("E", 1)...),
			batchPart(store.StreamID(prefix+"c-clean"), store.Any, events("E", 1)...),
			batchPart(store.StreamID(prefix+"d-poison"), store.Any, append(events("E", 1), events("Poison", 1)...)...),
			batchPart(store.StreamID(prefix+"e-clean"), store.Exact(0), events("E", 3)...),
		})
		require.NoError(t, err)
		require.NoError(t, out[0].Err)
		require.ErrorIs(t, out[1].Err, store.ErrInvalidArgument)
		requireConflict(t, out[2].Err, "b-conflict", store.DefaultPartition, store.NoStream, 1, true)
		require.NoError(t, out[3].Err)
		require.ErrorIs(t, out[4].Err, store.ErrInvalidArgument)
		require.NoError(t, out[5].Err)
		require.Equal(t, out[0].Result.TransactionID, out[3].Result.TransactionID)
		require.Equal(t, out[0].Result.TransactionID, out[5].Result.TransactionID)
		require.Equal(t, store.Version(3), out[5].Result.NextExpectedVersion)
	}
	check := func(t *testing.T, prefix string, aClean store.Version) {
		t.Helper()
		for stream, want := range map[string]store.Version{"a-clean": aClean, "b-poison": 0, "c-clean": 1, "d-poison": 0, "e-clean": 3} {
			require.Equal(t, want, requireConsistent(t, pool, store.StreamID(prefix+stream), store.DefaultPartition), stream)
		}
		require.Equal(t, store.Version(1), requireConsistent(t, pool, "b-conflict", store.DefaultPartition))
	}

	t.Run("pool", func(t *testing.T) {
		run(t, s, "")
		check(t, "", 2)
	})
	t.Run("transaction", func(t *testing.T) {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		inTx := s.WithTx(tx)
		run(t, inTx.(store.BatchAppender), "tx-")
		_, err = inTx.AppendToStream(ctx, "tx-a-clean", events("After", 1), store.AppendOptions{ExpectedVersion: store.Exact(2)})
		require.NoError(t, err, "the transaction is usable after the batch")
		require.NoError(t, tx.Commit(ctx))
		check(t, "tx-", 3)
	})
}

// A part that races another transaction for a message id (the other
// commits first) is explained after the round that raised the unique
// violation: a duplicate when the id went to another stream, the original
// result when it is the same append. The other parts commit. (Parts are
// sent in stream order: "a-dup" runs first, while the other transaction
// is still in flight, so it raises the unique violation rather than
// finding the stored id.)
func TestAppendBatchRacesMessageID(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	first, err := s.WithTx(tx).AppendToStream(ctx, "s1", withIDs("x", events("E", 2)), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.NoError(t, err)

	type outcome struct {
		out []store.StreamAppendResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		out, err := s.AppendBatch(ctx, []store.StreamAppend{
			batchPart("s1", store.NoStream, withIDs("x", events("E", 2))...),
			batchPart("a-dup", store.Any, withIDs("x", events("E", 2))...),
			batchPart("clean", store.Any, events("E", 1)...),
		})
		done <- outcome{out, err}
	}()
	waitFor(t, "the batch to wait for the other transaction", func() bool { return lockWaiters(t, pool) > 0 })
	require.NoError(t, tx.Commit(ctx))
	got := <-done
	require.NoError(t, got.err)
	require.NoError(t, got.out[0].Err)
	require.Equal(t, first.NextExpectedVersion, got.out[0].Result.NextExpectedVersion)
	require.Equal(t, first.LastGlobalPosition, got.out[0].Result.LastGlobalPosition)
	require.Equal(t, first.TransactionID, got.out[0].Result.TransactionID)
	require.ErrorIs(t, got.out[1].Err, store.ErrDuplicateMessageID)
	require.NoError(t, got.out[2].Err)
	require.Equal(t, store.Version(2), requireConsistent(t, pool, "s1", store.DefaultPartition))
	require.Equal(t, store.Version(0), requireConsistent(t, pool, "a-dup", store.DefaultPartition))
	require.Equal(t, store.Version(1), requireConsistent(t, pool, "clean", store.DefaultPartition))
}

// A batch of many parts is one transaction with every part's rows.
func TestAppendBatchManyStreams(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	parts := make([]store.StreamAppend, 100)
	for i := range parts {
		parts[i] = batchPart(store.StreamID(fmt.Sprintf("s-%03d", 99-i)), store.NoStream, events("E", 1+i%3)...)
	}
	out, err := s.AppendBatch(t.Context(), parts)
	require.NoError(t, err)
	for i, o := range out {
		require.NoError(t, o.Err, "part %d", i)
		require.Equal(t, out[0].Result.TransactionID, o.Result.TransactionID, "part %d", i)
		require.Equal(t, store.Version(1+i%3), requireConsistent(t, pool, parts[i].Stream, store.DefaultPartition))
	}
}
