package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var incarnationTests = []test{
	{"RecreatedStreamIsNew", testIncarnationRecreated},
	{"AppendRequiresIncarnation", func(t *testing.T, s store.EventStore) { testIncarnationAppend(t, s, s) }},
	{"AppendRequiresIncarnationInSession", testIncarnationAppendInSession},
	{"AppendRequiresIncarnationInBatch", func(t *testing.T, s store.EventStore) {
		if b := batcher(t, s); b != nil {
			testIncarnationAppend(t, s, viaBatch{s, b})
		}
	}},
	{"Snapshots", testIncarnationSnapshots},
}

// testIncarnationRecreated archives a stream and starts it again: the new
// stream has another, greater incarnation, reported by the append, every
// read and every event.
func testIncarnationRecreated(t *testing.T, s store.EventStore) {
	ctx := t.Context()
	first := appendOK(t, s, "cart", store.AppendOptions{Partition: "tenant-a"}, evs("Old", 2)...)
	require.NotZero(t, first.Incarnation, "the append that creates a stream reports its incarnation")
	got := requireVersion(t, s, "cart", "tenant-a", true, 2)
	require.Equal(t, first.Incarnation, got.Incarnation)
	require.Equal(t, store.Incarnation(got.Events[0].GlobalPosition), got.Incarnation, "the incarnation is the global position of the first event")
	for _, e := range got.Events {
		require.Equal(t, first.Incarnation, e.Incarnation, "event %s", e)
	}
	more := appendOK(t, s, "cart", store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(2)}, evs("Old", 1)...)
	require.Equal(t, first.Incarnation, more.Incarnation, "a later append reports the same incarnation")
	// A read of a range without events still reports it.
	res, err := s.ReadStream(ctx, "cart", store.ReadOptions{Partition: "tenant-a", From: 10})
	require.NoError(t, err)
	require.Empty(t, res.Events)
	require.Equal(t, first.Incarnation, res.Incarnation)

	require.NoError(t, s.ArchiveStream(ctx, "cart", store.ArchiveOptions{Partition: "tenant-a"}))
	gone := requireVersion(t, s, "cart", "tenant-a", false, 0)
	require.Zero(t, gone.Incarnation, "a missing stream has no incarnation")

	second := appendOK(t, s, "cart", store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.NoStream}, evs("New", 3)...)
	require.True(t, second.CreatedNewStream)
	require.NotEqual(t, first.Incarnation, second.Incarnation, "a recreated stream is a new incarnation")
	require.Greater(t, second.Incarnation, first.Incarnation, "a later life has a greater incarnation")
	got = requireVersion(t, s, "cart", "tenant-a", true, 3)
	require.Equal(t, second.Incarnation, got.Incarnation)
	for _, e := range got.Events {
		require.Equal(t, "New", e.Type)
		require.Equal(t, second.Incarnation, e.Incarnation, "event %s", e)
	}
	// Within an incarnation global positions rise with stream positions.
	for i := 1; i < len(got.Events); i++ {
		require.Greater(t, got.Events[i].GlobalPosition, got.Events[i-1].GlobalPosition)
	}
	for _, e := range logOf(t, s, 3) {
		require.Equal(t, second.Incarnation, e.Incarnation, "event %s of the global log", e)
	}
}

// testIncarnationAppend checks AppendOptions.Incarnation on stores a (to
// set the stream up) and w (to append with the requirement).
func testIncarnationAppend(t *testing.T, a, w store.EventStore) {
	ctx := t.Context()
	opts := func(exp store.ExpectedVersion, inc store.Incarnation) store.AppendOptions {
		return store.AppendOptions{Partition: "tenant-a", ExpectedVersion: exp, Incarnation: inc}
	}
	old := appendOK(t, a, "cart", opts(store.NoStream, 0), evs("Old", 2)...)
	// The right incarnation appends, with every expected version that
	// takes an existing stream.
	for i, exp := range []store.ExpectedVersion{store.Exact(2), store.StreamExists, store.Any} {
		res, err := w.AppendToStream(ctx, "cart", evs("Old", 1), opts(exp, old.Incarnation))
		require.NoError(t, err, "append with %s", exp)
		require.Equal(t, store.Version(3+i), res.NextExpectedVersion)
		require.Equal(t, old.Incarnation, res.Incarnation)
	}
	// An incarnation needs a stream.
	for _, exp := range []store.ExpectedVersion{store.NoStream, store.Exact(0)} {
		_, err := w.AppendToStream(ctx, "cart", evs("E", 1), opts(exp, old.Incarnation))
		require.ErrorIs(t, err, store.ErrInvalidArgument, "incarnation with %s", exp)
	}

	require.NoError(t, a.ArchiveStream(ctx, "cart", store.ArchiveOptions{Partition: "tenant-a"}))
	// Archived: the old incarnation is gone.
	_, err := w.AppendToStream(ctx, "cart", evs("E", 1), opts(store.Exact(5), old.Incarnation))
	requireIncarnationConflict(t, err, old.Incarnation, 0, false)

	// Started again, as long as the old one was: an Exact(5) append would
	// fit the new stream, but it is another incarnation.
	recreated := appendOK(t, a, "cart", opts(store.NoStream, 0), evs("New", 5)...)
	for _, exp := range []store.ExpectedVersion{store.Exact(5), store.StreamExists, store.Any} {
		_, err := w.AppendToStream(ctx, "cart", withIDs("stale-"+exp.String(), evs("E", 1)), opts(exp, old.Incarnation))
		requireIncarnationConflict(t, err, old.Incarnation, recreated.Incarnation, true)
		require.Equal(t, store.Version(5), conflictOf(t, err).Actual)
	}
	requireVersion(t, a, "cart", "tenant-a", true, 5)

	// The new incarnation appends; a retry of that append with the old
	// incarnation is not taken for the same append.
	events := withIDs("new-append", evs("New", 1))
	res, err := w.AppendToStream(ctx, "cart", events, opts(store.Exact(5), recreated.Incarnation))
	require.NoError(t, err)
	require.Equal(t, recreated.Incarnation, res.Incarnation)
	retry, err := w.AppendToStream(ctx, "cart", events, opts(store.Exact(5), recreated.Incarnation))
	require.NoError(t, err, "an idempotent retry")
	require.Equal(t, res.NextExpectedVersion, retry.NextExpectedVersion)
	require.Equal(t, recreated.Incarnation, retry.Incarnation)
	_, err = w.AppendToStream(ctx, "cart", events, opts(store.Exact(5), old.Incarnation))
	requireIncarnationConflict(t, err, old.Incarnation, recreated.Incarnation, true)
}

// testIncarnationAppendInSession runs the append checks through a session
// (a transaction-bound store).
func testIncarnationAppendInSession(t *testing.T, s store.EventStore) {
	require.NoError(t, s.WithSession(t.Context(), func(_ context.Context, ses store.EventStore) error {
		testIncarnationAppend(t, ses, ses)
		return nil
	}))
}

func conflictOf(t *testing.T, err error) *store.VersionConflictError {
	t.Helper()
	var vc *store.VersionConflictError
	require.ErrorAs(t, err, &vc)
	return vc
}

func requireIncarnationConflict(t *testing.T, err error, expected, actual store.Incarnation, exists bool) {
	t.Helper()
	require.ErrorIs(t, err, store.ErrVersionConflict)
	vc := conflictOf(t, err)
	require.True(t, vc.IncarnationChanged(), "conflict %v reports a changed incarnation", vc)
	require.Equal(t, expected, vc.ExpectedIncarnation)
	require.Equal(t, actual, vc.ActualIncarnation)
	require.Equal(t, exists, vc.ActualExists)
}

// testIncarnationSnapshots checks that snapshots record their incarnation,
// that an archive deletes them and that a save for an incarnation that is
// not the stream's is refused.
func testIncarnationSnapshots(t *testing.T, s store.EventStore) {
	ss, ok := s.(store.SnapshotStore)
	if !ok {
		t.Log("the store does not implement store.SnapshotStore")
		return
	}
	ctx := t.Context()
	snap := func(v store.Version, inc store.Incarnation, state string) store.Snapshot {
		return store.Snapshot{Partition: "tenant-a", Stream: "cart", Name: "cart", Version: v, State: json.RawMessage(state), Incarnation: inc}
	}
	load := func() (store.Snapshot, bool) {
		t.Helper()
		got, ok, err := ss.LoadSnapshot(ctx, "tenant-a", "cart", "cart")
		require.NoError(t, err)
		return got, ok
	}
	old := appendOK(t, s, "cart", store.AppendOptions{Partition: "tenant-a"}, evs("Old", 2)...)
	require.NoError(t, ss.SaveSnapshot(ctx, snap(2, old.Incarnation, `{"v":2}`)))
	got, ok := load()
	require.True(t, ok)
	require.Equal(t, old.Incarnation, got.Incarnation)
	// A save without an incarnation records the stream's.
	require.NoError(t, ss.SaveSnapshot(ctx, snap(2, 0, `{"v":"2b"}`)))
	got, _ = load()
	require.Equal(t, old.Incarnation, got.Incarnation)
	require.JSONEq(t, `{"v":"2b"}`, string(got.State))

	require.NoError(t, s.ArchiveStream(ctx, "cart", store.ArchiveOptions{Partition: "tenant-a"}))
	_, ok = load()
	require.False(t, ok, "archiving a stream deletes its snapshots")
	// A save of the old incarnation after the archive is refused: the
	// stream is missing.
	err := ss.SaveSnapshot(ctx, snap(2, old.Incarnation, `{"v":2}`))
	requireIncarnationConflict(t, err, old.Incarnation, 0, false)
	_, ok = load()
	require.False(t, ok)

	// Recreated: a save of the old incarnation is refused too, the new
	// one's is kept and replaces a newer snapshot of another incarnation.
	recreated := appendOK(t, s, "cart", store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.NoStream}, evs("New", 3)...)
	err = ss.SaveSnapshot(ctx, snap(3, old.Incarnation, `{"v":"old"}`))
	requireIncarnationConflict(t, err, old.Incarnation, recreated.Incarnation, true)
	_, ok = load()
	require.False(t, ok, "a refused save stores nothing")
	require.NoError(t, ss.SaveSnapshot(ctx, snap(1, recreated.Incarnation, `{"v":1}`)))
	got, ok = load()
	require.True(t, ok)
	require.Equal(t, recreated.Incarnation, got.Incarnation)
	require.Equal(t, store.Version(1), got.Version)
}

// viaBatch is an event store whose appends go through AppendBatch, each
// with a batch mate appending to a stream of its own, so the append checks
// run on the parts of a multi-stream batch.
type viaBatch struct {
	store.EventStore
	b store.BatchAppender
}

func (v viaBatch) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	mate := store.StreamAppend{Stream: "batch-mate", Events: []store.EventData{{Type: "Mate", Data: []byte(`{}`)}},
		Options: store.AppendOptions{Partition: opts.Partition}}
	out, err := v.b.AppendBatch(ctx, []store.StreamAppend{{Stream: stream, Events: events, Options: opts}, mate})
	if err != nil {
		return store.AppendResult{}, err
	}
	if out[1].Err != nil {
		return store.AppendResult{}, fmt.Errorf("the batch mate failed: %w", out[1].Err)
	}
	return out[0].Result, out[0].Err
}
