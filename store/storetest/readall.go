package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var readAllTests = []test{
	{"Order", testReadAllOrder},
	{"Paging", testReadAllPaging},
	{"Filters", testReadAllFilters},
	{"Checkpoint", testReadAllCheckpoint},
}

// readAllFixture appends 24 events in 12 appends over three streams in two
// partitions, with types A, B and C, and returns their message ids in
// append order.
func readAllFixture(t *testing.T, s store.EventStore) []string {
	t.Helper()
	var ids []string
	for i := range 12 {
		stream := store.StreamID(fmt.Sprintf("stream-%d", i%3))
		partition := "tenant-1"
		if i%3 == 2 {
			partition = "tenant-2"
		}
		batch := []store.EventData{
			ev([]string{"A", "B", "C"}[i%3], fmt.Sprintf(`{"i":%d}`, i)),
			ev([]string{"B", "C", "A"}[i%3], fmt.Sprintf(`{"i":%d}`, i)),
		}
		batch = withIDs(fmt.Sprintf("append-%d", i), batch)
		appendOK(t, s, stream, store.AppendOptions{Partition: partition}, batch...)
		ids = append(ids, eventIDs(batch)...)
	}
	logOf(t, s, len(ids))
	return ids
}

func testReadAllOrder(t *testing.T, s store.EventStore) {
	ids := readAllFixture(t, s)
	// Appends that committed one after another come back in that order.
	res := pageUntil(t, s, store.ReadAllOptions{}, ids)
	require.Equal(t, res.Events[len(res.Events)-1].Position(), res.Next)
	prev := store.Position{}
	last := map[string]store.Version{}
	for _, e := range res.Events {
		require.True(t, prev.Less(e.Position()), "%s not after the event before it", e)
		prev = e.Position()
		key := e.Partition + "/" + string(e.StreamID)
		require.Equal(t, last[key]+1, e.StreamPosition, "%s", e)
		last[key] = e.StreamPosition
		require.NotZero(t, e.TransactionID)
		require.Equal(t, store.DefaultStreamType, e.StreamType)
		require.Equal(t, e.MessageID, fmt.Sprint(e.Metadata[store.MetaMessageID]))
	}

	// Nothing after the end.
	res2, err := s.ReadAll(t.Context(), store.ReadAllOptions{After: res.Next})
	require.NoError(t, err)
	require.Empty(t, res2.Events)
	require.Equal(t, res.Next, res2.Next)

	// New events show up after the checkpoint.
	appendOK(t, s, "late", store.AppendOptions{}, withIDs("late", evs("E", 1))...)
	require.Equal(t, []string{"late-1"}, messageIDs(waitForLog(t, s, store.ReadAllOptions{After: res.Next}, 1)))
}

func testReadAllPaging(t *testing.T, s store.EventStore) {
	ids := readAllFixture(t, s)
	for _, limit := range []int{1, 4, 5, 23, 24, 25} {
		// No event skipped or repeated at any page size.
		readAllUntil(t, s, store.ReadAllOptions{Limit: limit}, ids)
	}
	// A page is full when more events exist.
	pageUntil(t, s, store.ReadAllOptions{Limit: 5}, ids[:5])
}

func testReadAllFilters(t *testing.T, s store.EventStore) {
	ids := readAllFixture(t, s)
	type filter struct {
		partition string
		types     []string
	}
	want := func(f filter) []string {
		var out []string
		for i, id := range ids {
			append_ := i / 2
			partition := "tenant-1"
			if append_%3 == 2 {
				partition = "tenant-2"
			}
			typ := []string{"A", "B", "C"}[append_%3]
			if i%2 == 1 {
				typ = []string{"B", "C", "A"}[append_%3]
			}
			if f.partition != "" && f.partition != partition {
				continue
			}
			if len(f.types) > 0 && !contains(f.types, typ) {
				continue
			}
			out = append(out, id)
		}
		return out
	}
	for _, f := range []filter{
		{partition: "tenant-1"},
		{partition: "tenant-2"},
		{partition: "tenant-3"},
		{types: []string{"A"}},
		{types: []string{"B", "C"}},
		{types: []string{"Z"}},
		{partition: "tenant-2", types: []string{"C"}},
		{partition: "tenant-1", types: []string{"A", "C"}},
	} {
		for _, limit := range []int{0, 3} {
			got := readAllUntil(t, s, store.ReadAllOptions{Partition: f.partition, Types: f.types, Limit: limit}, want(f))
			for _, e := range got {
				if f.partition != "" {
					require.Equal(t, f.partition, e.Partition, "filter %+v, limit %d", f, limit)
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// testReadAllCheckpoint resumes from every event's position.
func testReadAllCheckpoint(t *testing.T, s store.EventStore) {
	ids := readAllFixture(t, s)
	all := readAllUntil(t, s, store.ReadAllOptions{}, ids)
	for i, e := range all {
		want := ids[i+1:]
		if len(want) > 2 {
			want = want[:2]
		}
		res := pageUntil(t, s, store.ReadAllOptions{After: e.Position(), Limit: 2}, want)
		next := e.Position()
		if len(res.Events) > 0 {
			next = res.Events[len(res.Events)-1].Position()
		}
		require.Equal(t, next, res.Next, "Next after event %d", i)
	}
}
