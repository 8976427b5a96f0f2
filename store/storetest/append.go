package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var appendTests = []test{
	{"ExpectedVersionMatrix", testExpectedVersionMatrix},
	{"Defaults", testAppendDefaults},
	{"ResultFields", testAppendResult},
	{"StreamTypeSetAtCreation", testStreamType},
	{"BadInput", testBadInput},
	{"BadInputOnRead", testBadReadInput},
	{"IdempotentRetry", testIdempotentRetry},
	{"DuplicateMessageID", testDuplicateMessageID},
	{"Metadata", testMetadata},
	{"InputsNotAliased", testNotAliased},
	{"CancelledContext", testCancelledContext},
}

// testExpectedVersionMatrix covers every cell of the expected-version
// table (any, stream exists, no stream, exact n), on a missing stream and
// on a stream at version 2.
func testExpectedVersionMatrix(t *testing.T, s store.EventStore) {
	cases := expectedVersionCases
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := store.StreamID("matrix-" + tc.name)
			var before store.Version
			if tc.exists {
				appendOK(t, s, stream, store.AppendOptions{}, evs("Seeded", 2)...)
				before = 2
			}
			res, err := s.AppendToStream(t.Context(), stream, evs("Appended", 2), store.AppendOptions{ExpectedVersion: tc.expected})
			if !tc.ok {
				requireConflict(t, err, stream, store.DefaultPartition, tc.expected, before, tc.exists)
				requireVersion(t, s, stream, "", tc.exists, before)
				return
			}
			require.NoError(t, err)
			require.Equal(t, before+2, res.NextExpectedVersion)
			require.Equal(t, !tc.exists, res.CreatedNewStream)
			got := requireVersion(t, s, stream, "", true, before+2)
			require.Equal(t, "Appended", got.Events[before].Type)
			require.Equal(t, "Appended", got.Events[before+1].Type)
		})
	}
}

func testAppendDefaults(t *testing.T, s store.EventStore) {
	start := time.Now()
	res := appendOK(t, s, "defaults", store.AppendOptions{}, ev("First", `{"a":1}`), ev("Second", `{"b":[1,2]}`))
	require.Equal(t, store.Version(2), res.NextExpectedVersion)

	// The empty partition is the default partition, on read and on write.
	for _, p := range []string{"", store.DefaultPartition} {
		got := requireVersion(t, s, "defaults", p, true, 2)
		for i, e := range got.Events {
			require.Equal(t, store.StreamID("defaults"), e.StreamID)
			require.Equal(t, store.DefaultPartition, e.Partition)
			require.Equal(t, store.DefaultStreamType, e.StreamType)
			require.Equal(t, store.DefaultSchemaVersion, e.SchemaVersion)
			require.Equal(t, store.Version(i+1), e.StreamPosition)
			_, err := uuid.Parse(e.MessageID)
			require.NoError(t, err, "generated message id %q is not a UUID", e.MessageID)
			require.Positive(t, e.GlobalPosition)
			require.NotZero(t, e.TransactionID)
			require.WithinRange(t, e.Created, start.Add(-time.Minute), time.Now().Add(time.Minute))
		}
		require.Equal(t, "First", got.Events[0].Type)
		require.JSONEq(t, `{"a":1}`, string(got.Events[0].Data))
		require.Equal(t, "Second", got.Events[1].Type)
		require.JSONEq(t, `{"b":[1,2]}`, string(got.Events[1].Data))
		require.NotEqual(t, got.Events[0].MessageID, got.Events[1].MessageID)
	}

	// Supplied message ids and schema versions are kept; null is a body.
	e := ev("Third", `null`)
	e.MessageID = "my-own-id"
	e.SchemaVersion = "7"
	appendOK(t, s, "defaults", store.AppendOptions{}, e)
	got := requireVersion(t, s, "defaults", "", true, 3)
	require.Equal(t, "my-own-id", got.Events[2].MessageID)
	require.Equal(t, "7", got.Events[2].SchemaVersion)
	require.JSONEq(t, `null`, string(got.Events[2].Data))
}

func testAppendResult(t *testing.T, s store.EventStore) {
	r1 := appendOK(t, s, "result", store.AppendOptions{}, evs("E", 1)...)
	require.Equal(t, store.Version(1), r1.NextExpectedVersion)
	require.True(t, r1.CreatedNewStream)
	require.NotZero(t, r1.TransactionID)
	require.Positive(t, r1.LastGlobalPosition)

	r2 := appendOK(t, s, "result", store.AppendOptions{ExpectedVersion: store.Exact(1)}, evs("E", 3)...)
	require.Equal(t, store.Version(4), r2.NextExpectedVersion)
	require.False(t, r2.CreatedNewStream)
	require.NotZero(t, r2.TransactionID)
	require.Greater(t, r2.LastGlobalPosition, r1.LastGlobalPosition)
	require.True(t, r1.LastPosition().Less(r2.LastPosition()))

	r3 := appendOK(t, s, "other", store.AppendOptions{}, evs("E", 1)...)
	require.Greater(t, r3.LastGlobalPosition, r2.LastGlobalPosition)
	require.True(t, r3.CreatedNewStream)

	// The result describes the stored events: the last one's global
	// position, and the transaction that wrote all of them.
	got := requireVersion(t, s, "result", "", true, 4)
	require.Equal(t, r1.LastGlobalPosition, got.Events[0].GlobalPosition)
	require.Equal(t, r1.TransactionID, got.Events[0].TransactionID)
	for i, e := range got.Events[1:] {
		require.Equal(t, r2.TransactionID, e.TransactionID, "event %d", i+2)
		if i > 0 {
			require.Greater(t, e.GlobalPosition, got.Events[i].GlobalPosition, "global positions within an append increase")
		}
	}
	require.Equal(t, r2.LastGlobalPosition, got.Events[3].GlobalPosition)
}

func testStreamType(t *testing.T, s store.EventStore) {
	appendOK(t, s, "typed", store.AppendOptions{StreamType: "cart"}, evs("E", 1)...)
	appendOK(t, s, "typed", store.AppendOptions{StreamType: "order"}, evs("E", 1)...)
	appendOK(t, s, "typed", store.AppendOptions{}, evs("E", 1)...)
	got := requireVersion(t, s, "typed", "", true, 3)
	for _, e := range got.Events {
		require.Equal(t, "cart", e.StreamType, "event %s", e)
	}
	for _, e := range logOf(t, s, 3) {
		require.Equal(t, "cart", e.StreamType, "event %s from read all", e)
	}
}

func testBadInput(t *testing.T, s store.EventStore) {
	// An existing stream, to check a rejected append leaves it alone.
	appendOK(t, s, "existing", store.AppendOptions{}, evs("E", 1)...)
	good := ev("Good", `{}`)
	dupID := []store.EventData{good, ev("Good", `{}`)}
	dupID[0].MessageID, dupID[1].MessageID = "same", "same"
	cases := []struct {
		name   string
		stream store.StreamID
		events []store.EventData
		opts   store.AppendOptions
	}{
		{"no_events", "s", []store.EventData{}, store.AppendOptions{}},
		{"nil_events", "s", nil, store.AppendOptions{}},
		{"no_events_existing", "existing", nil, store.AppendOptions{}},
		{"empty_stream_id", "", []store.EventData{good}, store.AppendOptions{}},
		{"partition_semicolon", "s", []store.EventData{good}, store.AppendOptions{Partition: "bad;partition"}},
		{"partition_space", "s", []store.EventData{good}, store.AppendOptions{Partition: "a b"}},
		{"partition_quote", "s", []store.EventData{good}, store.AppendOptions{Partition: "x'--"}},
		{"event_without_type", "s", []store.EventData{good, {Data: json.RawMessage(`{}`)}}, store.AppendOptions{}},
		{"event_without_data", "s", []store.EventData{good, {Type: "E"}}, store.AppendOptions{}},
		{"invalid_json", "s", []store.EventData{good, ev("E", `{"a":`)}, store.AppendOptions{}},
		{"invalid_json_existing", "existing", []store.EventData{good, ev("E", `nope`)}, store.AppendOptions{}},
		{"message_id_twice", "s", dupID, store.AppendOptions{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.AppendToStream(t.Context(), tc.stream, tc.events, tc.opts)
			require.ErrorIs(t, err, store.ErrInvalidArgument)
		})
	}
	requireVersion(t, s, "existing", "", true, 1)
	requireVersion(t, s, "s", "", false, 0)
	require.Len(t, logOf(t, s, 1), 1, "only the seeded event is stored")
}

func testBadReadInput(t *testing.T, s store.EventStore) {
	ctx := t.Context()
	_, err := s.ReadStream(ctx, "", store.ReadOptions{})
	require.ErrorIs(t, err, store.ErrInvalidArgument, "read with empty stream id")
	_, err = s.ReadStream(ctx, "s", store.ReadOptions{Partition: "bad;partition"})
	require.ErrorIs(t, err, store.ErrInvalidArgument, "read with invalid partition")
	_, err = s.ReadAll(ctx, store.ReadAllOptions{Partition: "a b"})
	require.ErrorIs(t, err, store.ErrInvalidArgument, "read all with invalid partition")
	err = s.ArchiveStream(ctx, "", store.ArchiveOptions{})
	require.ErrorIs(t, err, store.ErrInvalidArgument, "archive with empty stream id")
	err = s.ArchiveStream(ctx, "s", store.ArchiveOptions{Partition: "bad;partition"})
	require.ErrorIs(t, err, store.ErrInvalidArgument, "archive with invalid partition")
}

func testIdempotentRetry(t *testing.T, s store.EventStore) {
	t.Run("exact", func(t *testing.T) {
		batch := withIDs("exact", evs("E", 2))
		first := appendOK(t, s, "retry-exact", store.AppendOptions{ExpectedVersion: store.Exact(0)}, batch...)
		again := appendOK(t, s, "retry-exact", store.AppendOptions{ExpectedVersion: store.Exact(0)}, batch...)
		require.Equal(t, first, again, "a retry returns the original result")
		requireVersion(t, s, "retry-exact", "", true, 2)

		// Still a retry after the stream moved on.
		appendOK(t, s, "retry-exact", store.AppendOptions{ExpectedVersion: store.Exact(2)}, evs("Later", 1)...)
		again = appendOK(t, s, "retry-exact", store.AppendOptions{ExpectedVersion: store.Exact(0)}, batch...)
		require.Equal(t, first, again)
		requireVersion(t, s, "retry-exact", "", true, 3)

		// A batch in the middle of the stream.
		mid := withIDs("mid", evs("E", 2))
		r := appendOK(t, s, "retry-exact", store.AppendOptions{ExpectedVersion: store.Exact(3)}, mid...)
		appendOK(t, s, "retry-exact", store.AppendOptions{}, evs("Later", 1)...)
		again = appendOK(t, s, "retry-exact", store.AppendOptions{ExpectedVersion: store.Exact(3)}, mid...)
		require.Equal(t, r, again)
		require.False(t, again.CreatedNewStream)
		requireVersion(t, s, "retry-exact", "", true, 6)
	})
	t.Run("any", func(t *testing.T) {
		batch := withIDs("any", evs("E", 3))
		first := appendOK(t, s, "retry-any", store.AppendOptions{}, batch...)
		appendOK(t, s, "retry-any", store.AppendOptions{}, evs("Later", 1)...)
		again := appendOK(t, s, "retry-any", store.AppendOptions{}, batch...)
		require.Equal(t, first, again, "a retry returns the original result")
		requireVersion(t, s, "retry-any", "", true, 4)
	})
	require.Len(t, logOf(t, s, 10), 10, "retries wrote nothing")
}

func testDuplicateMessageID(t *testing.T, s store.EventStore) {
	batch := withIDs("dup", evs("E", 2))
	appendOK(t, s, "dup", store.AppendOptions{}, batch...)
	appendOK(t, s, "dup", store.AppendOptions{}, evs("Later", 1)...)
	appendOK(t, s, "elsewhere", store.AppendOptions{}, evs("E", 1)...)

	fresh := ev("E", `{}`)
	fresh.MessageID = "dup-new"
	cases := []struct {
		name   string
		stream store.StreamID
		events []store.EventData
		opts   store.AppendOptions
	}{
		{"other_positions", "dup", batch, store.AppendOptions{ExpectedVersion: store.Exact(3)}},
		{"shifted_positions", "dup", batch, store.AppendOptions{ExpectedVersion: store.Exact(1)}},
		{"other_stream", "elsewhere", batch, store.AppendOptions{}},
		{"other_stream_exact", "elsewhere", batch, store.AppendOptions{ExpectedVersion: store.Exact(1)}},
		{"new_stream", "brand-new", batch, store.AppendOptions{ExpectedVersion: store.NoStream}},
		{"with_a_new_event", "dup", []store.EventData{batch[0], batch[1], fresh}, store.AppendOptions{}},
		{"new_event_first", "dup", []store.EventData{fresh, batch[0]}, store.AppendOptions{}},
		{"reordered", "dup", []store.EventData{batch[1], batch[0]}, store.AppendOptions{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.AppendToStream(t.Context(), tc.stream, tc.events, tc.opts)
			require.ErrorIs(t, err, store.ErrDuplicateMessageID)
		})
	}
	requireVersion(t, s, "dup", "", true, 3)
	requireVersion(t, s, "elsewhere", "", true, 1)
	requireVersion(t, s, "brand-new", "", false, 0)
	require.Len(t, logOf(t, s, 4), 4, "nothing written by the rejected appends")

	// Message ids are unique per partition: another tenant may use them.
	res := appendOK(t, s, "dup", store.AppendOptions{Partition: "tenant-b", ExpectedVersion: store.NoStream}, batch...)
	require.True(t, res.CreatedNewStream)
	requireVersion(t, s, "dup", "tenant-b", true, 2)
}

func testMetadata(t *testing.T, s store.EventStore) {
	e := ev("E", `{}`)
	e.MessageID = "meta-1"
	e.Metadata = store.Metadata{
		store.MetaCorrelationID: "corr-1",
		store.MetaCausationID:   "cause-1",
		store.MetaTraceParent:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		store.MetaTraceState:    "congo=t61rcWkgMzE",
		"custom":                map[string]any{"nested": []any{"x", true}},
		// System keys a caller must not be able to fake.
		store.MetaMessageID:      "forged",
		store.MetaStreamID:       "forged",
		store.MetaStreamPosition: 99,
		store.MetaGlobalPosition: 99,
		store.MetaPartition:      "forged",
	}
	plain := ev("E", `{}`) // no metadata at all
	appendOK(t, s, "meta", store.AppendOptions{Partition: "tenant-m"}, e, plain)

	check := func(t *testing.T, got []store.Event) {
		t.Helper()
		require.Len(t, got, 2)
		m := got[0].Metadata
		require.Equal(t, "corr-1", m[store.MetaCorrelationID])
		require.Equal(t, "cause-1", m[store.MetaCausationID])
		require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", m[store.MetaTraceParent])
		require.Equal(t, "congo=t61rcWkgMzE", m[store.MetaTraceState])
		require.Equal(t, map[string]any{"nested": []any{"x", true}}, m["custom"])
		for i, e := range got {
			m := e.Metadata
			require.Equal(t, "tenant-m", e.Partition)
			require.Equal(t, e.MessageID, fmt.Sprint(m[store.MetaMessageID]), "event %d", i)
			require.Equal(t, "meta", fmt.Sprint(m[store.MetaStreamID]), "event %d", i)
			require.Equal(t, fmt.Sprint(i+1), fmt.Sprint(m[store.MetaStreamPosition]), "event %d", i)
			require.Equal(t, fmt.Sprint(e.GlobalPosition), fmt.Sprint(m[store.MetaGlobalPosition]), "event %d", i)
			require.Equal(t, "tenant-m", fmt.Sprint(m[store.MetaPartition]), "event %d", i)
		}
		require.Equal(t, "meta-1", got[0].MessageID)
	}
	t.Run("read_stream", func(t *testing.T) {
		check(t, readStream(t, s, "meta", "tenant-m").Events)
	})
	t.Run("read_all", func(t *testing.T) {
		check(t, logOf(t, s, 2))
	})
}

// testNotAliased checks that neither the caller's input nor the returned
// events share memory with what the store keeps.
func testNotAliased(t *testing.T, s store.EventStore) {
	e := ev("E", `{"v":1}`)
	e.Metadata = store.Metadata{"k": "v"}
	appendOK(t, s, "alias", store.AppendOptions{}, e)
	copy(e.Data, `{"v":2}`)
	e.Metadata["k"] = "changed"

	got := readStream(t, s, "alias", "").Events[0]
	require.JSONEq(t, `{"v":1}`, string(got.Data))
	require.Equal(t, "v", got.Metadata["k"])
	copy(got.Data, `{"v":3}`)
	got.Metadata["k"] = "changed"

	again := readStream(t, s, "alias", "").Events[0]
	require.JSONEq(t, `{"v":1}`, string(again.Data))
	require.Equal(t, "v", again.Metadata["k"])
}

func testCancelledContext(t *testing.T, s store.EventStore) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.AppendToStream(ctx, "cancelled", evs("E", 3), store.AppendOptions{})
	require.Error(t, err)
	requireVersion(t, s, "cancelled", "", false, 0)
}

// expectedVersionCases is every cell of the expected-version table, on a
// missing stream and on a stream at version 2, and whether the append is
// allowed.
var expectedVersionCases = []struct {
	name     string
	exists   bool
	expected store.ExpectedVersion
	ok       bool
}{
	{"missing/any", false, store.Any, true},
	{"missing/stream_exists", false, store.StreamExists, false},
	{"missing/no_stream", false, store.NoStream, true},
	{"missing/exact_0", false, store.Exact(0), true},
	{"missing/exact_1", false, store.Exact(1), false},
	{"missing/exact_2", false, store.Exact(2), false},
	{"existing/any", true, store.Any, true},
	{"existing/stream_exists", true, store.StreamExists, true},
	{"existing/no_stream", true, store.NoStream, false},
	{"existing/exact_0", true, store.Exact(0), false},
	{"existing/exact_1", true, store.Exact(1), false},
	{"existing/exact_2", true, store.Exact(2), true},
	{"existing/exact_3", true, store.Exact(3), false},
}
