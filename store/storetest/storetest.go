package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// Run checks that the stores returned by newStore behave as the
// store.EventStore contract requires (appends, reads and the global log). Every subtest
// calls newStore for a store of its own, which must be empty and isolated
// from the stores of other subtests (a fresh database, schema or in-memory
// store): subtests run in parallel and some read the whole global log.
// newStore may register cleanups with t.
func Run(t *testing.T, newStore func(t *testing.T) store.EventStore) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Append", appendTests},
		{"Read", readTests},
		{"Aggregate", aggregateTests},
		{"Session", sessionTests},
		{"Archive", archiveTests},
		{"ReadAll", readAllTests},
		{"Concurrency", concurrencyTests},
		{"Snapshot", snapshotTests},
		{"AppendBatch", batchTests},
		{"Incarnation", incarnationTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, newStore(t))
				})
			}
		})
	}
}

type test struct {
	name string
	fn   func(t *testing.T, s store.EventStore)
}

// ev returns an event of type typ with a JSON body.
func ev(typ string, data string) store.EventData {
	return store.EventData{Type: typ, Data: json.RawMessage(data)}
}

// evs returns n events of type typ with bodies {"n":1}, {"n":2}, ….
func evs(typ string, n int) []store.EventData {
	out := make([]store.EventData, n)
	for i := range out {
		out[i] = ev(typ, fmt.Sprintf(`{"n":%d}`, i+1))
	}
	return out
}

// withIDs gives events fixed message ids prefix-1, prefix-2, ….
func withIDs(prefix string, events []store.EventData) []store.EventData {
	for i := range events {
		events[i].MessageID = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return events
}

func appendOK(t *testing.T, s store.EventStore, stream store.StreamID, opts store.AppendOptions, events ...store.EventData) store.AppendResult {
	t.Helper()
	res, err := s.AppendToStream(t.Context(), stream, events, opts)
	require.NoError(t, err, "append to %q (expected %s)", stream, opts.ExpectedVersion)
	return res
}

func readStream(t *testing.T, s store.EventStore, stream store.StreamID, partition string) store.ReadResult {
	t.Helper()
	res, err := s.ReadStream(t.Context(), stream, store.ReadOptions{Partition: partition})
	require.NoError(t, err, "read stream %q", stream)
	return res
}

// requireVersion checks a stream's state and that its positions are
// 1..version.
func requireVersion(t *testing.T, s store.EventStore, stream store.StreamID, partition string, exists bool, version store.Version) store.ReadResult {
	t.Helper()
	res := readStream(t, s, stream, partition)
	require.Equal(t, exists, res.StreamExists, "stream %q exists", stream)
	require.Equal(t, version, res.CurrentVersion, "version of stream %q", stream)
	require.Len(t, res.Events, int(version), "events of stream %q", stream)
	for i, e := range res.Events {
		require.Equal(t, store.Version(i+1), e.StreamPosition, "position of event %d of stream %q", i, stream)
	}
	return res
}

// requireConflict checks err is the typed version conflict with these
// details.
func requireConflict(t *testing.T, err error, stream store.StreamID, partition string, expected store.ExpectedVersion, actual store.Version, actualExists bool) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, store.ErrVersionConflict)
	var vc *store.VersionConflictError
	require.ErrorAs(t, err, &vc)
	require.Equal(t, stream, vc.Stream, "conflict stream")
	require.Equal(t, partition, vc.Partition, "conflict partition")
	require.Equal(t, expected, vc.Expected, "conflict expected version")
	require.Equal(t, actual, vc.Actual, "conflict actual version")
	require.Equal(t, actualExists, vc.ActualExists, "conflict actual exists")
}

// readAll reads the whole global log (after the given options' checkpoint)
// in pages and checks the paging invariants on the way.
func readAll(t *testing.T, s store.EventStore, opts store.ReadAllOptions) []store.Event {
	t.Helper()
	var out []store.Event
	for range 100000 {
		res, err := s.ReadAll(t.Context(), opts)
		require.NoError(t, err, "read all after %+v", opts.After)
		if opts.Limit > 0 {
			require.LessOrEqual(t, len(res.Events), opts.Limit, "page larger than Limit")
		}
		if len(res.Events) == 0 {
			require.Equal(t, opts.After, res.Next, "Next of an empty page must be After")
			return out
		}
		prev := opts.After
		for _, e := range res.Events {
			require.True(t, prev.Less(e.Position()), "event %s at %+v is not after %+v", e, e.Position(), prev)
			prev = e.Position()
		}
		require.Equal(t, prev, res.Next, "Next must be the last event's position")
		out = append(out, res.Events...)
		opts.After = res.Next
	}
	t.Fatal("read all did not end")
	return nil
}

// visibilityWait bounds how long a test waits for committed events to show
// up in ReadAll. PostgreSQL's visibility guard holds back events while any
// older transaction on the server is in flight (other tests' included), so
// a read right after an append may briefly return less.
var visibilityWait = 30 * time.Second

// waitForLog reads the global log after opts.After until at least n events
// are visible and returns all the events visible then.
func waitForLog(t *testing.T, s store.EventStore, opts store.ReadAllOptions, n int) []store.Event {
	t.Helper()
	deadline := time.Now().Add(visibilityWait)
	for {
		got := readAll(t, s, opts)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			require.Failf(t, "events missing from read all", "want at least %d events, see %d after %s", n, len(got), visibilityWait)
		}
	}
}

// readAllUntil reads the global log after opts.After (every page) until
// the events read are want, and returns them. The visibility guard may hold
// back the tail of the log for a while, even events a read has already
// returned: on PostgreSQL an older transaction of another database that
// finishes while a read runs counts as in flight for that read. So a
// shorter read is retried; one that is not a prefix of want (an event
// skipped, repeated or out of order) fails at once.
func readAllUntil(t *testing.T, s store.EventStore, opts store.ReadAllOptions, want []string) []store.Event {
	t.Helper()
	return settle(t, want, func() ([]store.Event, []string) {
		got := readAll(t, s, opts)
		return got, messageIDs(got)
	})
}

// pageUntil reads one page of the global log with opts until it holds the
// events want (see readAllUntil) and returns it.
func pageUntil(t *testing.T, s store.EventStore, opts store.ReadAllOptions, want []string) store.ReadAllResult {
	t.Helper()
	return settle(t, want, func() (store.ReadAllResult, []string) {
		res, err := s.ReadAll(t.Context(), opts)
		require.NoError(t, err, "read all after %+v", opts.After)
		return res, messageIDs(res.Events)
	})
}

// settle calls read until the message ids it returns are want, failing at
// once when they are not a prefix of want and after visibilityWait when
// they stay short.
func settle[R any](t *testing.T, want []string, read func() (R, []string)) R {
	t.Helper()
	deadline := time.Now().Add(visibilityWait)
	for {
		res, got := read()
		if slices.Equal(got, want) {
			return res
		}
		if !slices.Equal(got, want[:min(len(got), len(want))]) {
			require.Failf(t, "read all returned events that are not the start of what it must return", "want %v, see %v", want, got)
		}
		if time.Now().After(deadline) {
			require.Failf(t, "events missing from read all", "want %v, see %v after %s", want, got, visibilityWait)
		}
	}
}

// logOf waits until at least n events are visible in the global log and
// returns the whole log.
func logOf(t *testing.T, s store.EventStore, n int) []store.Event {
	t.Helper()
	return waitForLog(t, s, store.ReadAllOptions{}, n)
}

// messageIDs returns the events' message ids (nil for no events).
func messageIDs(events []store.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.MessageID)
	}
	return out
}

func eventIDs(events []store.EventData) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.MessageID
	}
	return out
}

var errBoom = errors.New("boom")
