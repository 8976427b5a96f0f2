package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var readTests = []test{
	{"Range", testReadRange},
	{"MissingStream", testReadMissing},
	{"PartitionScoping", testPartitionScoping},
}

func testReadRange(t *testing.T, s store.EventStore) {
	appendOK(t, s, "range", store.AppendOptions{}, evs("E", 6)...)
	appendOK(t, s, "range", store.AppendOptions{}, evs("F", 4)...)
	cases := []struct {
		from, to store.Version
		max      int
		want     []store.Version
	}{
		{0, 0, 0, []store.Version{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{1, 0, 0, []store.Version{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{3, 5, 0, []store.Version{3, 4, 5}},
		{5, 5, 0, []store.Version{5}},
		{8, 0, 0, []store.Version{8, 9, 10}},
		{0, 3, 0, []store.Version{1, 2, 3}},
		{3, 0, 2, []store.Version{3, 4}},
		{0, 0, 1, []store.Version{1}},
		{2, 9, 100, []store.Version{2, 3, 4, 5, 6, 7, 8, 9}},
		{4, 6, 1, []store.Version{4}},
		{9, 20, 0, []store.Version{9, 10}},
		{10, 0, 0, []store.Version{10}},
		{11, 0, 0, nil},
		{6, 5, 0, nil},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("from=%d,to=%d,max=%d", tc.from, tc.to, tc.max), func(t *testing.T) {
			res, err := s.ReadStream(t.Context(), "range", store.ReadOptions{From: tc.from, To: tc.to, MaxCount: tc.max})
			require.NoError(t, err)
			require.True(t, res.StreamExists)
			require.Equal(t, store.Version(10), res.CurrentVersion, "CurrentVersion is the stream's, not the page's")
			var got []store.Version
			for _, e := range res.Events {
				got = append(got, e.StreamPosition)
				want := `{"n":` + fmt.Sprint(e.StreamPosition) + `}`
				if e.StreamPosition > 6 {
					want = `{"n":` + fmt.Sprint(e.StreamPosition-6) + `}`
				}
				require.JSONEq(t, want, string(e.Data), "data of event %d", e.StreamPosition)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func testReadMissing(t *testing.T, s store.EventStore) {
	appendOK(t, s, "present", store.AppendOptions{Partition: "tenant-a"}, evs("E", 2)...)
	for _, tc := range []struct {
		stream    store.StreamID
		partition string
	}{
		{"absent", ""},
		{"absent", "tenant-a"},
		{"present", ""},         // exists in another partition only
		{"present", "tenant-b"}, // likewise
	} {
		res, err := s.ReadStream(t.Context(), tc.stream, store.ReadOptions{Partition: tc.partition, From: 1, MaxCount: 10})
		require.NoError(t, err)
		require.Empty(t, res.Events, "%s in %q", tc.stream, tc.partition)
		require.Equal(t, store.Version(0), res.CurrentVersion)
		require.False(t, res.StreamExists)
	}
}

// testPartitionScoping checks that the same stream id in two partitions is
// two independent streams.
func testPartitionScoping(t *testing.T, s store.EventStore) {
	ra := appendOK(t, s, "shared-id", store.AppendOptions{Partition: "tenant-a", StreamType: "a", ExpectedVersion: store.NoStream}, ev("A", `{"t":"a"}`))
	rb := appendOK(t, s, "shared-id", store.AppendOptions{Partition: "tenant-b", StreamType: "b", ExpectedVersion: store.NoStream}, ev("B", `{"t":"b"}`), ev("B", `{"t":"b"}`))
	require.True(t, ra.CreatedNewStream)
	require.True(t, rb.CreatedNewStream)
	require.Equal(t, store.Version(1), ra.NextExpectedVersion)
	require.Equal(t, store.Version(2), rb.NextExpectedVersion)

	a := requireVersion(t, s, "shared-id", "tenant-a", true, 1)
	b := requireVersion(t, s, "shared-id", "tenant-b", true, 2)
	requireVersion(t, s, "shared-id", store.DefaultPartition, false, 0)
	require.Equal(t, "A", a.Events[0].Type)
	require.Equal(t, "tenant-a", a.Events[0].Partition)
	require.Equal(t, "a", a.Events[0].StreamType)
	for _, e := range b.Events {
		require.Equal(t, "B", e.Type)
		require.Equal(t, "tenant-b", e.Partition)
		require.Equal(t, "b", e.StreamType)
	}

	// Version checks and conflicts are per partition.
	_, err := s.AppendToStream(t.Context(), "shared-id", evs("E", 1), store.AppendOptions{Partition: "tenant-b", ExpectedVersion: store.Exact(1)})
	requireConflict(t, err, "shared-id", "tenant-b", store.Exact(1), 2, true)
	appendOK(t, s, "shared-id", store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(1)}, evs("E", 1)...)
	requireVersion(t, s, "shared-id", "tenant-a", true, 2)
	requireVersion(t, s, "shared-id", "tenant-b", true, 2)

	// Archiving one leaves the other.
	require.NoError(t, s.ArchiveStream(t.Context(), "shared-id", store.ArchiveOptions{Partition: "tenant-a"}))
	requireVersion(t, s, "shared-id", "tenant-a", false, 0)
	requireVersion(t, s, "shared-id", "tenant-b", true, 2)
}
