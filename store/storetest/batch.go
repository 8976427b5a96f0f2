package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// batchTests check store.BatchAppender when the store implements it.
var batchTests = []test{
	{"Empty", testBatchEmpty},
	{"ExpectedVersionMatrix", testBatchMatrix},
	{"IdempotentRetry", testBatchRetry},
	{"RaceToCreate", testBatchRaceToCreate},
	{"Mixed", testBatchMixed},
	{"BadEvent", testBatchBadEvent},
	{"SameStreamTwice", testBatchSameStream},
	{"CancelledContext", testBatchCancelled},
	{"InSession", testBatchInSession},
}

// batcher returns s as a store.BatchAppender, or nil (and says so) when
// it isn't one.
func batcher(t *testing.T, s store.EventStore) store.BatchAppender {
	t.Helper()
	b, ok := s.(store.BatchAppender)
	if !ok {
		t.Log("the store does not implement store.BatchAppender")
	}
	return b
}

// appendBatch runs a batch that must not fail as a whole and returns its
// outcomes, one per part.
func appendBatch(t *testing.T, b store.BatchAppender, parts ...store.StreamAppend) []store.StreamAppendResult {
	t.Helper()
	out, err := b.AppendBatch(t.Context(), parts)
	require.NoError(t, err, "append batch")
	require.Len(t, out, len(parts), "one outcome per part")
	return out
}

// part returns a batch part appending events to stream with expected.
func part(stream store.StreamID, expected store.ExpectedVersion, events ...store.EventData) store.StreamAppend {
	return store.StreamAppend{Stream: stream, Events: events, Options: store.AppendOptions{ExpectedVersion: expected}}
}

// requireOneTransaction checks that the successful outcomes, at least one,
// come from one transaction.
func requireOneTransaction(t *testing.T, out []store.StreamAppendResult) {
	t.Helper()
	var tx uint64
	for i, o := range out {
		if o.Err != nil {
			continue
		}
		require.NotZero(t, o.Result.TransactionID, "part %d", i)
		if tx == 0 {
			tx = o.Result.TransactionID
		}
		require.Equal(t, tx, o.Result.TransactionID, "part %d committed in another transaction", i)
	}
	require.NotZero(t, tx, "no part committed")
}

func testBatchEmpty(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	for _, parts := range [][]store.StreamAppend{nil, {}} {
		out, err := b.AppendBatch(t.Context(), parts)
		require.NoError(t, err)
		require.Empty(t, out)
	}
	require.Empty(t, readAll(t, s, store.ReadAllOptions{}))
}

// testBatchMatrix sends every cell of the expected-version table as one
// part of a single batch: the allowed ones commit together, each refused
// one gets its own conflict.
func testBatchMatrix(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	cases := expectedVersionCases
	parts := make([]store.StreamAppend, len(cases))
	for i, tc := range cases {
		stream := store.StreamID("matrix-" + tc.name)
		if tc.exists {
			appendOK(t, s, stream, store.AppendOptions{}, evs("Seeded", 2)...)
		}
		parts[i] = part(stream, tc.expected, evs("Appended", 2)...)
	}
	out := appendBatch(t, b, parts...)
	for i, tc := range cases {
		stream := parts[i].Stream
		var before store.Version
		if tc.exists {
			before = 2
		}
		if !tc.ok {
			requireConflict(t, out[i].Err, stream, store.DefaultPartition, tc.expected, before, tc.exists)
			requireVersion(t, s, stream, "", tc.exists, before)
			continue
		}
		require.NoError(t, out[i].Err, tc.name)
		require.Equal(t, before+2, out[i].Result.NextExpectedVersion, tc.name)
		require.Equal(t, !tc.exists, out[i].Result.CreatedNewStream, tc.name)
		got := requireVersion(t, s, stream, "", true, before+2)
		require.Equal(t, "Appended", got.Events[before].Type, tc.name)
		require.Equal(t, out[i].Result.LastGlobalPosition, got.Events[before+1].GlobalPosition, tc.name)
		require.Equal(t, out[i].Result.TransactionID, got.Events[before+1].TransactionID, tc.name)
	}
	requireOneTransaction(t, out)
}

// testBatchRetry re-sends batches: a part already stored is answered with
// its original result and written once, next to parts that are new.
func testBatchRetry(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	appendOK(t, s, "old", store.AppendOptions{}, evs("Seeded", 1)...)
	first := []store.StreamAppend{
		part("new", store.NoStream, withIDs("new", evs("E", 2))...),
		part("old", store.Exact(1), withIDs("old", evs("E", 2))...),
	}
	out := appendBatch(t, b, first...)
	require.NoError(t, out[0].Err)
	require.NoError(t, out[1].Err)
	stored := len(logOf(t, s, 5))

	again := appendBatch(t, b, first...)
	require.Equal(t, out, again, "a re-sent batch is answered with the original results")
	require.True(t, again[0].Result.CreatedNewStream)
	require.Len(t, logOf(t, s, stored), stored, "a re-sent batch wrote")

	// A retried part next to a new one and a conflicting one.
	mixed := appendBatch(t, b,
		part("fresh", store.Any, withIDs("fresh", evs("E", 1))...),
		first[1],
		part("new", store.Exact(0), evs("E", 1)...),
	)
	require.NoError(t, mixed[0].Err)
	require.Equal(t, out[1], mixed[1], "the retried part")
	requireConflict(t, mixed[2].Err, "new", store.DefaultPartition, store.Exact(0), 2, true)
	requireVersion(t, s, "old", "", true, 3)
	requireVersion(t, s, "new", "", true, 2)
	requireVersion(t, s, "fresh", "", true, 1)
}

// testBatchRaceToCreate races pairs of batches that each create the same
// new stream next to a stream of their own: exactly one creates it, the
// other's part is a conflict, and both own parts commit.
func testBatchRaceToCreate(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	const rounds = 10
	for r := range rounds {
		contested := store.StreamID(fmt.Sprintf("contested-%d", r))
		var wg sync.WaitGroup
		start := make(chan struct{})
		outs := make([][]store.StreamAppendResult, 2)
		errs := make([]error, 2)
		for w := range 2 {
			wg.Go(func() {
				<-start
				// Writer 1 lists its parts the other way round.
				parts := []store.StreamAppend{
					part(contested, store.NoStream, withIDs(fmt.Sprintf("c%d-w%d", r, w), evs("Created", 2))...),
					part(store.StreamID(fmt.Sprintf("own-%d-%d", r, w)), store.NoStream, evs("Own", 1)...),
				}
				if w == 1 {
					parts[0], parts[1] = parts[1], parts[0]
				}
				outs[w], errs[w] = b.AppendBatch(t.Context(), parts)
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		winErr, loseErr := outs[0][0].Err, outs[1][1].Err
		require.NoError(t, outs[0][1].Err, "writer 0's own stream")
		require.NoError(t, outs[1][0].Err, "writer 1's own stream")
		require.True(t, (winErr == nil) != (loseErr == nil), "round %d: exactly one batch must create the stream: %v, %v", r, winErr, loseErr)
		if winErr != nil {
			winErr, loseErr = loseErr, winErr
		}
		requireConflict(t, loseErr, contested, store.DefaultPartition, store.NoStream, 2, true)
		requireVersion(t, s, contested, "", true, 2)
		requireVersion(t, s, store.StreamID(fmt.Sprintf("own-%d-0", r)), "", true, 1)
		requireVersion(t, s, store.StreamID(fmt.Sprintf("own-%d-1", r)), "", true, 1)
	}
}

// testBatchMixed sends a batch where some parts conflict, some reuse
// stored message ids and the others are clean: the clean ones commit at
// contiguous positions and each refused one gets its own typed error.
func testBatchMixed(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	appendOK(t, s, "a", store.AppendOptions{}, evs("Seeded", 2)...)
	appendOK(t, s, "b", store.AppendOptions{}, evs("Seeded", 1)...)
	appendOK(t, s, "stored", store.AppendOptions{}, withIDs("stored", evs("Seeded", 1))...)
	sameID := withIDs("twice", evs("E", 1))

	out := appendBatch(t, b,
		part("a", store.Exact(2), evs("Clean", 2)...),
		part("b", store.Exact(5), evs("Conflict", 1)...),
		part("dup", store.Any, withIDs("stored", evs("Dup", 1))...),
		part("c", store.NoStream, evs("Clean", 3)...),
		part("a2", store.StreamExists, evs("Conflict", 1)...),
		part("first", store.Any, sameID...),
		part("second", store.Any, sameID...),
		part("b2", store.Any, evs("Clean", 1)...),
	)
	require.NoError(t, out[0].Err)
	requireConflict(t, out[1].Err, "b", store.DefaultPartition, store.Exact(5), 1, true)
	require.ErrorIs(t, out[2].Err, store.ErrDuplicateMessageID)
	require.NoError(t, out[3].Err)
	requireConflict(t, out[4].Err, "a2", store.DefaultPartition, store.StreamExists, 0, false)
	// Two parts with one message id: one of them is refused.
	require.True(t, (out[5].Err == nil) != (out[6].Err == nil), "a message id twice in one batch: %v, %v", out[5].Err, out[6].Err)
	require.ErrorIs(t, errors.Join(out[5].Err, out[6].Err), store.ErrDuplicateMessageID)
	require.NoError(t, out[7].Err)
	requireOneTransaction(t, out)

	require.Equal(t, store.Version(4), out[0].Result.NextExpectedVersion)
	require.Equal(t, store.Version(3), out[3].Result.NextExpectedVersion)
	requireVersion(t, s, "a", "", true, 4)
	requireVersion(t, s, "b", "", true, 1)
	requireVersion(t, s, "dup", "", false, 0)
	requireVersion(t, s, "c", "", true, 3)
	requireVersion(t, s, "a2", "", false, 0)
	for i, stream := range []store.StreamID{"first", "second"} {
		if out[5+i].Err == nil {
			requireVersion(t, s, stream, "", true, 1)
		} else {
			requireVersion(t, s, stream, "", false, 0)
		}
	}
	requireVersion(t, s, "b2", "", true, 1)
	requireVersion(t, s, "stored", "", true, 1)
	require.Len(t, logOf(t, s, 4+7), 4+7, "the log holds the seeded and the clean events only")
}

// testBatchBadEvent puts parts with bad input next to clean ones: the
// clean ones commit.
func testBatchBadEvent(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	nul := []store.EventData{ev("Nul", `{"s":"a\u0000b"}`)}
	out := appendBatch(t, b,
		part("clean-1", store.Any, evs("E", 1)...),
		part("no-type", store.Any, store.EventData{Data: json.RawMessage(`{}`)}),
		part("bad-json", store.Any, ev("E", `{"a":`)),
		part("", store.Any, evs("E", 1)...),
		part("no-events", store.Any),
		store.StreamAppend{Stream: "bad-partition", Events: evs("E", 1), Options: store.AppendOptions{Partition: "x'--"}},
		part("nul", store.Any, nul...),
		part("clean-2", store.NoStream, evs("E", 2)...),
	)
	for i := 1; i <= 5; i++ {
		require.ErrorIs(t, out[i].Err, store.ErrInvalidArgument, "part %d", i)
	}
	require.NoError(t, out[0].Err)
	require.NoError(t, out[7].Err)
	requireVersion(t, s, "clean-1", "", true, 1)
	requireVersion(t, s, "clean-2", "", true, 2)
	for _, stream := range []store.StreamID{"no-type", "bad-json", "no-events"} {
		requireVersion(t, s, stream, "", false, 0)
	}
	// A string holding U+0000 is refused by stores that can't keep it
	// (PostgreSQL's jsonb) and stored by the others.
	if out[6].Err != nil {
		require.ErrorIs(t, out[6].Err, store.ErrInvalidArgument)
		requireVersion(t, s, "nul", "", false, 0)
	} else {
		requireVersion(t, s, "nul", "", true, 1)
	}
}

// testBatchSameStream sends two parts for one stream: the later one is
// refused, the rest of the batch commits. The same id in another
// partition is another stream.
func testBatchSameStream(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	other := store.StreamAppend{Stream: "twice", Events: evs("E", 1), Options: store.AppendOptions{Partition: "tenant-b"}}
	out := appendBatch(t, b,
		part("twice", store.NoStream, evs("First", 2)...),
		part("once", store.Any, evs("E", 1)...),
		store.StreamAppend{Stream: "twice", Events: evs("Second", 1), Options: store.AppendOptions{Partition: store.DefaultPartition}},
		other,
	)
	require.NoError(t, out[0].Err)
	require.NoError(t, out[1].Err)
	require.ErrorIs(t, out[2].Err, store.ErrInvalidArgument)
	require.NoError(t, out[3].Err)
	got := requireVersion(t, s, "twice", "", true, 2)
	require.Equal(t, "First", got.Events[1].Type)
	requireVersion(t, s, "twice", "tenant-b", true, 1)
	requireVersion(t, s, "once", "", true, 1)
}

func testBatchCancelled(t *testing.T, s store.EventStore) {
	b := batcher(t, s)
	if b == nil {
		return
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	out, err := b.AppendBatch(ctx, []store.StreamAppend{part("cancelled", store.Any, evs("E", 1)...)})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, err, context.Canceled)
	require.Nil(t, out)
	requireVersion(t, s, "cancelled", "", false, 0)
}

// testBatchInSession runs a batch inside a session: its parts commit or
// roll back with the session, and a refused part leaves the session usable.
func testBatchInSession(t *testing.T, s store.EventStore) {
	if batcher(t, s) == nil {
		return
	}
	ctx := t.Context()
	appendOK(t, s, "existing", store.AppendOptions{}, evs("Seeded", 1)...)
	for _, commit := range []bool{false, true} {
		stream := store.StreamID(fmt.Sprintf("session-%t", commit))
		err := s.WithSession(ctx, func(ctx context.Context, ses store.EventStore) error {
			b, ok := ses.(store.BatchAppender)
			require.True(t, ok, "the session's store of a store.BatchAppender is none")
			out, err := b.AppendBatch(ctx, []store.StreamAppend{
				part(stream, store.NoStream, evs("E", 2)...),
				part("existing", store.NoStream, evs("E", 1)...),
			})
			if err != nil {
				return err
			}
			if out[0].Err != nil {
				return out[0].Err
			}
			requireConflict(t, out[1].Err, "existing", store.DefaultPartition, store.NoStream, 1, true)
			if _, err := ses.AppendToStream(ctx, stream, evs("After", 1), store.AppendOptions{ExpectedVersion: store.Exact(2)}); err != nil {
				return err
			}
			if !commit {
				return errBoom
			}
			return nil
		})
		if !commit {
			require.ErrorIs(t, err, errBoom)
			requireVersion(t, s, stream, "", false, 0)
			continue
		}
		require.NoError(t, err)
		requireVersion(t, s, stream, "", true, 3)
	}
	requireVersion(t, s, "existing", "", true, 1)
}
