package memory_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

func events(n int) []store.EventData {
	out := make([]store.EventData, n)
	for i := range out {
		out[i] = store.EventData{Type: "E", Data: json.RawMessage(`{}`)}
	}
	return out
}

func version(t *testing.T, s store.EventStore, stream store.StreamID) store.Version {
	t.Helper()
	res, err := s.ReadStream(t.Context(), stream, store.ReadOptions{})
	require.NoError(t, err)
	return res.CurrentVersion
}

func TestTransactionIDsCountCommits(t *testing.T) {
	t.Parallel()
	s := memory.New()
	ctx := t.Context()
	for want := uint64(1); want <= 3; want++ {
		res, err := s.AppendToStream(ctx, "s", events(2), store.AppendOptions{})
		require.NoError(t, err)
		require.Equal(t, want, res.TransactionID)
	}
	// A rejected append and a rolled-back session take no number.
	_, err := s.AppendToStream(ctx, "s", events(1), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.ErrorIs(t, err, store.ErrVersionConflict)
	errUndo := errors.New("undo")
	require.ErrorIs(t, s.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
		_, err := tx.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
		require.NoError(t, err)
		return errUndo
	}), errUndo)
	res, err := s.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
	require.NoError(t, err)
	require.Equal(t, uint64(4), res.TransactionID)
	require.Equal(t, store.GlobalPosition(7), res.LastGlobalPosition)
}

func TestNestedSessionRollsBackItsOwnWrites(t *testing.T) {
	t.Parallel()
	s := memory.New()
	ctx := t.Context()
	errInner := errors.New("inner")
	err := s.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
		_, err := tx.AppendToStream(ctx, "outer", events(1), store.AppendOptions{})
		require.NoError(t, err)
		err = tx.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
			_, err := tx.AppendToStream(ctx, "inner", events(2), store.AppendOptions{})
			require.NoError(t, err)
			_, err = tx.AppendToStream(ctx, "outer", events(1), store.AppendOptions{})
			require.NoError(t, err)
			return errInner
		})
		require.ErrorIs(t, err, errInner)
		require.Equal(t, store.Version(1), version(t, tx, "outer"))
		require.Equal(t, store.Version(0), version(t, tx, "inner"))

		require.Panics(t, func() {
			_ = tx.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
				_, err := tx.AppendToStream(ctx, "inner", events(1), store.AppendOptions{})
				require.NoError(t, err)
				panic("inner panic")
			})
		})
		require.Equal(t, store.Version(0), version(t, tx, "inner"))

		return tx.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
			_, err := tx.AppendToStream(ctx, "kept", events(1), store.AppendOptions{})
			return err
		})
	})
	require.NoError(t, err)
	require.Equal(t, store.Version(1), version(t, s, "outer"))
	require.Equal(t, store.Version(0), version(t, s, "inner"))
	require.Equal(t, store.Version(1), version(t, s, "kept"))
}

func TestSessionReentryAndEnd(t *testing.T) {
	t.Parallel()
	s := memory.New()
	var leaked store.EventStore
	err := s.WithSession(t.Context(), func(ctx context.Context, tx store.EventStore) error {
		leaked = tx
		// The store itself, called with the session's context, refuses
		// instead of deadlocking.
		_, err := s.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
		require.ErrorIs(t, err, memory.ErrSessionLocked)
		_, err = s.ReadStream(ctx, "s", store.ReadOptions{})
		require.ErrorIs(t, err, memory.ErrSessionLocked)
		require.ErrorIs(t, s.WithSession(ctx, func(context.Context, store.EventStore) error { return nil }), memory.ErrSessionLocked)
		_, err = tx.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
		return err
	})
	require.NoError(t, err)
	_, err = leaked.AppendToStream(t.Context(), "s", events(1), store.AppendOptions{})
	require.ErrorIs(t, err, memory.ErrSessionEnded)
	require.Equal(t, store.Version(1), version(t, s, "s"))
}

func TestSessionIsolation(t *testing.T) {
	t.Parallel()
	s := memory.New()
	ctx := t.Context()
	_, err := s.AppendToStream(ctx, "seen", events(1), store.AppendOptions{})
	require.NoError(t, err)

	inSession := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
			if _, err := tx.AppendToStream(ctx, "pending", events(1), store.AppendOptions{}); err != nil {
				return err
			}
			// ReadAll shows committed events only, even inside the session.
			res, err := tx.ReadAll(ctx, store.ReadAllOptions{})
			if err != nil {
				return err
			}
			if len(res.Events) != 1 || res.Events[0].StreamID != "seen" {
				return errors.New("read all inside the session saw uncommitted events")
			}
			close(inSession)
			<-release
			return nil
		})
	}()
	<-inSession

	// Others wait for the session; their context can end the wait.
	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = s.ReadStream(waitCtx, "pending", store.ReadOptions{})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	close(release)
	require.NoError(t, <-done)
	require.Equal(t, store.Version(1), version(t, s, "pending"))
}

func TestSessionCommitNeedsLiveContext(t *testing.T) {
	t.Parallel()
	s := memory.New()
	ctx, cancel := context.WithCancel(t.Context())
	err := s.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
		_, err := tx.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
		require.NoError(t, err)
		cancel()
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, store.Version(0), version(t, s, "s"))
	require.ErrorIs(t, s.WithSession(t.Context(), nil), store.ErrInvalidArgument)
}
