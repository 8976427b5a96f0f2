package postgres_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// A snapshot replaces an older or equal one, never a newer one, and is
// scoped by partition, stream and name.
func TestSnapshots(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	save := func(partition string, v store.Version, state string) {
		t.Helper()
		require.NoError(t, s.SaveSnapshot(ctx, store.Snapshot{Partition: partition, Stream: "s", Name: "cart", Version: v, State: json.RawMessage(state)}))
	}
	load := func(partition, name string) (store.Snapshot, bool) {
		t.Helper()
		snap, ok, err := s.LoadSnapshot(ctx, partition, "s", name)
		require.NoError(t, err)
		return snap, ok
	}
	_, ok := load("", "cart")
	require.False(t, ok)

	save("", 5, `{"v":5}`)
	save("", 3, `{"v":3}`) // older: ignored
	snap, ok := load("", "cart")
	require.True(t, ok)
	require.Equal(t, store.Version(5), snap.Version)
	require.JSONEq(t, `{"v":5}`, string(snap.State))
	require.Equal(t, "default_partition", snap.Partition)

	save("", 5, `{"v":"5 again"}`) // equal: replaces
	save("", 9, `{"v":9}`)
	snap, _ = load("default_partition", "cart")
	require.Equal(t, store.Version(9), snap.Version)
	require.JSONEq(t, `{"v":9}`, string(snap.State))

	_, ok = load("other", "cart")
	require.False(t, ok, "partition scope")
	_, ok = load("", "other-name")
	require.False(t, ok, "name scope")

	for _, bad := range []store.Snapshot{
		{Stream: "", Version: 1, State: json.RawMessage(`{}`)},
		{Stream: "s", Partition: "bad partition", Version: 1, State: json.RawMessage(`{}`)},
		{Stream: "s", Version: -1, State: json.RawMessage(`{}`)},
		{Stream: "s", Version: 1, State: json.RawMessage(`{`)},
		{Stream: "s", Version: 1, State: json.RawMessage(`"\u0000"`)},
	} {
		require.ErrorIs(t, s.SaveSnapshot(ctx, bad), store.ErrInvalidArgument, "%+v", bad)
	}
}

// A snapshot save racing an archive can't leave the old incarnation's
// state behind: the save waits for the archive's transaction and then
// finds the stream gone (or, once it is started again, another
// incarnation).
func TestSaveSnapshotRacingArchive(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	old, err := s.AppendToStream(ctx, "cart", events("E", 2), store.AppendOptions{})
	require.NoError(t, err)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	require.NoError(t, s.WithTx(tx).ArchiveStream(ctx, "cart", store.ArchiveOptions{}))

	waiting := lockWaiters(t, pool)
	done := make(chan error, 1)
	go func() {
		done <- s.SaveSnapshot(ctx, store.Snapshot{Stream: "cart", Name: "cart", Version: 2,
			State: json.RawMessage(`{"old":true}`), Incarnation: old.Incarnation})
	}()
	waitFor(t, "the save to wait for the archive", func() bool { return lockWaiters(t, pool) > waiting })
	require.NoError(t, tx.Commit(ctx))
	err = <-done
	require.ErrorIs(t, err, store.ErrVersionConflict)

	_, err = s.AppendToStream(ctx, "cart", events("E", 3), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.NoError(t, err)
	_, ok, err := s.LoadSnapshot(ctx, store.DefaultPartition, "cart", "cart")
	require.NoError(t, err)
	require.False(t, ok, "no snapshot of the old incarnation survives")
}
