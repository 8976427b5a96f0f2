package storetest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var sessionTests = []test{
	{"Commit", testSessionCommit},
	{"ErrorRollsBack", testSessionError},
	{"PanicRollsBack", testSessionPanic},
	{"ConflictInside", testSessionConflict},
}

func testSessionCommit(t *testing.T, s store.EventStore) {
	appendOK(t, s, "before", store.AppendOptions{}, evs("E", 1)...)
	var results []store.AppendResult
	err := s.WithSession(t.Context(), func(ctx context.Context, tx store.EventStore) error {
		r1, err := tx.AppendToStream(ctx, "s1", evs("A", 2), store.AppendOptions{ExpectedVersion: store.NoStream})
		if err != nil {
			return err
		}
		r2, err := tx.AppendToStream(ctx, "s2", evs("B", 1), store.AppendOptions{Partition: "tenant-s"})
		if err != nil {
			return err
		}
		r3, err := tx.AppendToStream(ctx, "s1", evs("C", 1), store.AppendOptions{ExpectedVersion: store.Exact(2)})
		if err != nil {
			return err
		}
		results = append(results, r1, r2, r3)
		// The session reads its own writes.
		res, err := tx.ReadStream(ctx, "s1", store.ReadOptions{})
		if err != nil {
			return err
		}
		require.True(t, res.StreamExists)
		require.Equal(t, store.Version(3), res.CurrentVersion)
		require.Len(t, res.Events, 3)
		require.Equal(t, "C", res.Events[2].Type)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, results, 3)
	require.Equal(t, store.Version(2), results[0].NextExpectedVersion)
	require.True(t, results[0].CreatedNewStream)
	require.Equal(t, store.Version(3), results[2].NextExpectedVersion)
	require.False(t, results[2].CreatedNewStream)
	require.Equal(t, results[0].TransactionID, results[1].TransactionID, "one session is one transaction")
	require.Equal(t, results[0].TransactionID, results[2].TransactionID, "one session is one transaction")

	requireVersion(t, s, "s1", "", true, 3)
	requireVersion(t, s, "s2", "tenant-s", true, 1)
	all := logOf(t, s, 5)
	require.Len(t, all, 5)
	for _, e := range all[1:] {
		require.Equal(t, results[0].TransactionID, e.TransactionID, "event %s", e)
	}
}

// sessionWrites makes writes of every kind inside a session: appends to an
// existing stream and a new one, and an archive.
func sessionWrites(t *testing.T, ctx context.Context, tx store.EventStore) {
	t.Helper()
	_, err := tx.AppendToStream(ctx, "existing", evs("E", 2), store.AppendOptions{ExpectedVersion: store.Exact(1)})
	require.NoError(t, err)
	_, err = tx.AppendToStream(ctx, "new", evs("E", 1), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.NoError(t, err)
	require.NoError(t, tx.ArchiveStream(ctx, "doomed", store.ArchiveOptions{}))
	res, err := tx.ReadStream(ctx, "existing", store.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, store.Version(3), res.CurrentVersion)
}

func seedSessionStreams(t *testing.T, s store.EventStore) {
	t.Helper()
	appendOK(t, s, "existing", store.AppendOptions{}, evs("E", 1)...)
	appendOK(t, s, "doomed", store.AppendOptions{}, evs("E", 1)...)
}

// requireSessionUndone checks nothing of sessionWrites is left, and that the
// store still works.
func requireSessionUndone(t *testing.T, s store.EventStore) {
	t.Helper()
	requireVersion(t, s, "existing", "", true, 1)
	requireVersion(t, s, "new", "", false, 0)
	requireVersion(t, s, "doomed", "", true, 1)
	require.Len(t, logOf(t, s, 2), 2)
	appendOK(t, s, "existing", store.AppendOptions{ExpectedVersion: store.Exact(1)}, evs("After", 1)...)
	appendOK(t, s, "new", store.AppendOptions{ExpectedVersion: store.NoStream}, evs("After", 1)...)
	requireVersion(t, s, "existing", "", true, 2)
	requireVersion(t, s, "new", "", true, 1)
}

func testSessionError(t *testing.T, s store.EventStore) {
	seedSessionStreams(t, s)
	err := s.WithSession(t.Context(), func(ctx context.Context, tx store.EventStore) error {
		sessionWrites(t, ctx, tx)
		return errBoom
	})
	require.ErrorIs(t, err, errBoom, "WithSession returns fn's error")
	requireSessionUndone(t, s)
}

func testSessionPanic(t *testing.T, s store.EventStore) {
	seedSessionStreams(t, s)
	require.PanicsWithValue(t, "boom", func() {
		_ = s.WithSession(t.Context(), func(ctx context.Context, tx store.EventStore) error {
			sessionWrites(t, ctx, tx)
			panic("boom")
		})
	})
	requireSessionUndone(t, s)
}

func testSessionConflict(t *testing.T, s store.EventStore) {
	seedSessionStreams(t, s)
	err := s.WithSession(t.Context(), func(ctx context.Context, tx store.EventStore) error {
		sessionWrites(t, ctx, tx)
		_, err := tx.AppendToStream(ctx, "existing", evs("E", 1), store.AppendOptions{ExpectedVersion: store.Exact(1)})
		return err
	})
	requireConflict(t, err, "existing", "default_partition", store.Exact(1), 3, true)
	requireSessionUndone(t, s)
}
