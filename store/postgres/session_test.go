package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// A session on a store bound to a caller's transaction is a savepoint: its
// failure undoes only its own writes, and everything commits or rolls back
// with the caller's transaction.
func TestSessionInCallerTransaction(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	outer := s.WithTx(tx)
	_, err = outer.AppendToStream(ctx, "kept", events("E", 1), store.AppendOptions{})
	require.NoError(t, err)

	boom := errors.New("boom")
	err = outer.WithSession(ctx, func(ctx context.Context, inner store.EventStore) error {
		_, err := inner.AppendToStream(ctx, "undone", events("E", 1), store.AppendOptions{})
		require.NoError(t, err)
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Panics(t, func() {
		_ = outer.WithSession(ctx, func(ctx context.Context, inner store.EventStore) error {
			_, err := inner.AppendToStream(ctx, "panicked", events("E", 1), store.AppendOptions{})
			require.NoError(t, err)
			panic("boom")
		})
	})
	err = outer.WithSession(ctx, func(ctx context.Context, inner store.EventStore) error {
		// The session's store is a snapshot store too.
		snaps, ok := inner.(store.SnapshotStore)
		require.True(t, ok)
		require.NoError(t, snaps.SaveSnapshot(ctx, store.Snapshot{Stream: "kept", Name: "n", Version: 1, State: []byte(`{}`)}))
		_, err := inner.AppendToStream(ctx, "nested", events("E", 1), store.AppendOptions{})
		return err
	})
	require.NoError(t, err)

	// Nothing is visible outside before the caller commits.
	rr, err := s.ReadStream(ctx, "kept", store.ReadOptions{})
	require.NoError(t, err)
	require.False(t, rr.StreamExists)
	require.NoError(t, tx.Commit(ctx))

	for stream, exists := range map[store.StreamID]bool{"kept": true, "nested": true, "undone": false, "panicked": false} {
		rr, err := s.ReadStream(ctx, stream, store.ReadOptions{})
		require.NoError(t, err)
		require.Equal(t, exists, rr.StreamExists, stream)
	}
	_, ok, err := s.LoadSnapshot(ctx, "", "kept", "n")
	require.NoError(t, err)
	require.True(t, ok)
}

// A session whose context is cancelled still rolls back.
func TestSessionCancelledContext(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	err := s.WithSession(ctx, func(ctx context.Context, inner store.EventStore) error {
		_, err := inner.AppendToStream(ctx, "s", events("E", 1), store.AppendOptions{})
		require.NoError(t, err)
		cancel()
		return ctx.Err()
	})
	require.ErrorIs(t, err, context.Canceled)
	rr, err := s.ReadStream(t.Context(), "s", store.ReadOptions{})
	require.NoError(t, err)
	require.False(t, rr.StreamExists)
}
