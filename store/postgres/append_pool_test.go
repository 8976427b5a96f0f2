package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// On the pool, appending to an existing stream is an upsert that fails on
// purpose when the stream is missing: the caller gets the version conflict
// and nothing is left behind, also when the stream was archived.
func TestAppendToMissingStreamLeavesNothing(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	_, err := s.AppendToStream(ctx, "archived", events("E", 2), store.AppendOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.NoError(t, s.ArchiveStream(ctx, "archived", store.ArchiveOptions{Partition: "tenant-a"}))
	rows := func(stream string) (streams, messages int) {
		t.Helper()
		require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM streams WHERE stream_id = $1),
       (SELECT count(*) FROM messages WHERE stream_id = $1)`, stream).Scan(&streams, &messages))
		return streams, messages
	}
	for _, stream := range []store.StreamID{"missing", "archived"} {
		beforeStreams, beforeMessages := rows(string(stream))
		for _, exp := range []store.ExpectedVersion{store.Exact(2), store.StreamExists} {
			_, err := s.AppendToStream(ctx, stream, events("E", 3), store.AppendOptions{Partition: "tenant-a", ExpectedVersion: exp})
			requireConflict(t, err, stream, "tenant-a", exp, 0, false)
			gotStreams, gotMessages := rows(string(stream))
			require.Equal(t, beforeStreams, gotStreams, "%s with %s: streams rows", stream, exp)
			require.Equal(t, beforeMessages, gotMessages, "%s with %s: messages rows", stream, exp)
		}
		// The stream can still be created afterwards.
		res, err := s.AppendToStream(ctx, stream, events("E", 1), store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.NoStream})
		require.NoError(t, err)
		require.True(t, res.CreatedNewStream)
	}
}
