package storetest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var snapshotTests = []test{
	{"SaveLoad", testSnapshots},
	{"StateVersion", testSnapshotStateVersion},
}

// testSnapshotStateVersion checks a snapshot's state version is kept, that
// a newer state version replaces a snapshot whatever its stream version,
// and that an older one never replaces a newer one.
func testSnapshotStateVersion(t *testing.T, s store.EventStore) {
	ss, ok := s.(store.SnapshotStore)
	if !ok {
		t.Log("the store does not implement store.SnapshotStore")
		return
	}
	ctx := t.Context()
	save := func(v store.Version, sv int, state string) {
		t.Helper()
		require.NoError(t, ss.SaveSnapshot(ctx, store.Snapshot{Stream: "cart-1", Name: "cart", Version: v, StateVersion: sv, State: json.RawMessage(state)}))
	}
	requireSnapshot := func(v store.Version, sv int, state string) {
		t.Helper()
		snap, ok, err := ss.LoadSnapshot(ctx, "", "cart-1", "cart")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, v, snap.Version)
		require.Equal(t, sv, snap.StateVersion)
		require.JSONEq(t, state, string(snap.State))
	}
	save(10, 0, `{"old":10}`)
	requireSnapshot(10, 0, `{"old":10}`)
	save(5, 2, `{"new":5}`)
	requireSnapshot(5, 2, `{"new":5}`) // a newer state version replaces a later stream version
	save(20, 1, `{"old":20}`)
	requireSnapshot(5, 2, `{"new":5}`) // an older state version never replaces a newer one
	save(6, 2, `{"new":6}`)
	requireSnapshot(6, 2, `{"new":6}`)
	require.ErrorIs(t, ss.SaveSnapshot(ctx, store.Snapshot{Stream: "cart-1", Name: "cart", Version: 7, StateVersion: -1, State: json.RawMessage(`{}`)}),
		store.ErrInvalidArgument)
	requireSnapshot(6, 2, `{"new":6}`)
}

// testSnapshots checks store.SnapshotStore when the store implements it.
func testSnapshots(t *testing.T, s store.EventStore) {
	ss, ok := s.(store.SnapshotStore)
	if !ok {
		t.Log("the store does not implement store.SnapshotStore")
		return
	}
	ctx := t.Context()
	load := func(partition string, stream store.StreamID, name string) (store.Snapshot, bool) {
		t.Helper()
		snap, ok, err := ss.LoadSnapshot(ctx, partition, stream, name)
		require.NoError(t, err)
		return snap, ok
	}
	save := func(partition string, stream store.StreamID, name string, v store.Version, state string) {
		t.Helper()
		require.NoError(t, ss.SaveSnapshot(ctx, store.Snapshot{Partition: partition, Stream: stream, Name: name, Version: v, State: json.RawMessage(state)}))
	}
	requireSnapshot := func(partition string, stream store.StreamID, name string, v store.Version, state string) {
		t.Helper()
		snap, ok := load(partition, stream, name)
		require.True(t, ok, "snapshot %s/%s/%s", partition, stream, name)
		require.Equal(t, v, snap.Version)
		require.Equal(t, stream, snap.Stream)
		require.Equal(t, name, snap.Name)
		require.JSONEq(t, state, string(snap.State))
	}

	_, ok = load("tenant-a", "cart-1", "cart")
	require.False(t, ok, "no snapshot yet")

	save("tenant-a", "cart-1", "cart", 3, `{"total":3}`)
	requireSnapshot("tenant-a", "cart-1", "cart", 3, `{"total":3}`)

	// An older snapshot never replaces a newer one; a newer one does.
	save("tenant-a", "cart-1", "cart", 2, `{"total":2}`)
	requireSnapshot("tenant-a", "cart-1", "cart", 3, `{"total":3}`)
	save("tenant-a", "cart-1", "cart", 7, `{"total":7}`)
	requireSnapshot("tenant-a", "cart-1", "cart", 7, `{"total":7}`)

	// Partitions, streams and names are separate.
	_, ok = load("tenant-b", "cart-1", "cart")
	require.False(t, ok, "another partition's snapshot is invisible")
	_, ok = load("tenant-a", "cart-2", "cart")
	require.False(t, ok)
	_, ok = load("tenant-a", "cart-1", "cart-v2")
	require.False(t, ok)
	save("tenant-b", "cart-1", "cart", 1, `{"total":1}`)
	requireSnapshot("tenant-b", "cart-1", "cart", 1, `{"total":1}`)
	requireSnapshot("tenant-a", "cart-1", "cart", 7, `{"total":7}`)

	// The empty partition is the default partition.
	save("", "cart-1", "cart", 4, `{"total":4}`)
	requireSnapshot(store.DefaultPartition, "cart-1", "cart", 4, `{"total":4}`)
	requireSnapshot("", "cart-1", "cart", 4, `{"total":4}`)
	requireSnapshot("tenant-a", "cart-1", "cart", 7, `{"total":7}`)
}
