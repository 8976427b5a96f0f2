package postgres_test

import (
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
