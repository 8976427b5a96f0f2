package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestChangedClosesOnCommit(t *testing.T) {
	t.Parallel()
	s := memory.New()
	ctx := t.Context()

	ch := s.Changed()
	require.False(t, closed(ch))
	_, err := s.ReadStream(ctx, "s", store.ReadOptions{})
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "s", events(1), store.AppendOptions{ExpectedVersion: store.Exact(5)})
	require.Error(t, err)
	require.False(t, closed(ch), "reads and failed appends are not changes")

	_, err = s.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
	require.NoError(t, err)
	require.True(t, closed(ch), "an append closes the channel")

	ch = s.Changed()
	require.False(t, closed(ch), "a new channel after a change")
	require.Error(t, s.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
		_, err := tx.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
		require.NoError(t, err)
		return errors.New("roll back")
	}))
	require.False(t, closed(ch), "a rolled-back session is not a change")
	require.NoError(t, s.WithSession(ctx, func(ctx context.Context, tx store.EventStore) error {
		_, err := tx.AppendToStream(ctx, "s", events(1), store.AppendOptions{})
		return err
	}))
	require.True(t, closed(ch), "a committed session closes the channel")
}

// TestChangedFollower follows the log the way Changed's documentation
// shows, while a writer appends: it sees every event without polling.
func TestChangedFollower(t *testing.T) {
	t.Parallel()
	s := memory.New()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const total = 50
	writerDone := make(chan error, 1)
	go func() {
		for range total {
			if _, err := s.AppendToStream(ctx, "s", events(1), store.AppendOptions{}); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	var next store.Position
	seen := 0
	for seen < total {
		ch := s.Changed()
		res, err := s.ReadAll(ctx, store.ReadAllOptions{After: next})
		require.NoError(t, err)
		seen += len(res.Events)
		next = res.Next
		if len(res.Events) == 0 {
			select {
			case <-ch:
			case <-ctx.Done():
				t.Fatalf("no change notified; saw %d of %d events", seen, total)
			}
		}
	}
	require.Equal(t, total, seen)
	require.NoError(t, <-writerDone)
}
