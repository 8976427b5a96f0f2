package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var archiveTests = []test{
	{"ReadsAsMissing", testArchive},
	{"MissingStream", testArchiveMissing},
	{"Twice", testArchiveTwice},
}

func testArchive(t *testing.T, s store.EventStore) {
	ctx := t.Context()
	appendOK(t, s, "old", store.AppendOptions{Partition: "tenant-x", StreamType: "first"}, evs("Old", 2)...)
	appendOK(t, s, "kept", store.AppendOptions{Partition: "tenant-x"}, evs("Kept", 1)...)
	require.NoError(t, s.ArchiveStream(ctx, "old", store.ArchiveOptions{Partition: "tenant-x"}))

	requireVersion(t, s, "old", "tenant-x", false, 0)
	requireVersion(t, s, "kept", "tenant-x", true, 1)
	_, err := s.AppendToStream(ctx, "old", evs("E", 1), store.AppendOptions{Partition: "tenant-x", ExpectedVersion: store.StreamExists})
	requireConflict(t, err, "old", "tenant-x", store.StreamExists, 0, false)

	// A new stream with the same id starts from position 1.
	res := appendOK(t, s, "old", store.AppendOptions{Partition: "tenant-x", StreamType: "second", ExpectedVersion: store.NoStream}, evs("New", 1)...)
	require.True(t, res.CreatedNewStream)
	require.Equal(t, store.Version(1), res.NextExpectedVersion)
	got := requireVersion(t, s, "old", "tenant-x", true, 1)
	require.Equal(t, "New", got.Events[0].Type)
	require.Equal(t, "second", got.Events[0].StreamType)

	// Read all leaves archived events out.
	var types []string
	for _, e := range logOf(t, s, 2) {
		types = append(types, e.Type)
	}
	require.Equal(t, []string{"Kept", "New"}, types)
}

func testArchiveMissing(t *testing.T, s store.EventStore) {
	ctx := t.Context()
	require.ErrorIs(t, s.ArchiveStream(ctx, "never", store.ArchiveOptions{}), store.ErrStreamNotFound)
	appendOK(t, s, "elsewhere", store.AppendOptions{Partition: "tenant-a"}, evs("E", 1)...)
	require.ErrorIs(t, s.ArchiveStream(ctx, "elsewhere", store.ArchiveOptions{Partition: "tenant-b"}), store.ErrStreamNotFound)
	require.ErrorIs(t, s.ArchiveStream(ctx, "elsewhere", store.ArchiveOptions{}), store.ErrStreamNotFound)
	requireVersion(t, s, "elsewhere", "tenant-a", true, 1)
}

// testArchiveTwice archives a stream, recreates it, archives it again and
// recreates it once more.
func testArchiveTwice(t *testing.T, s store.EventStore) {
	ctx := t.Context()
	for round := range 3 {
		appendOK(t, s, "phoenix", store.AppendOptions{ExpectedVersion: store.NoStream}, evs("E", round+1)...)
		requireVersion(t, s, "phoenix", "", true, store.Version(round+1))
		require.NoError(t, s.ArchiveStream(ctx, "phoenix", store.ArchiveOptions{}), "round %d", round)
		requireVersion(t, s, "phoenix", "", false, 0)
		require.ErrorIs(t, s.ArchiveStream(ctx, "phoenix", store.ArchiveOptions{}), store.ErrStreamNotFound, "round %d", round)
	}
	appendOK(t, s, "phoenix", store.AppendOptions{ExpectedVersion: store.Exact(0)}, evs("Last", 1)...)
	requireVersion(t, s, "phoenix", "", true, 1)
	all := logOf(t, s, 1)
	require.Len(t, all, 1)
	require.Equal(t, "Last", all[0].Type)
}
