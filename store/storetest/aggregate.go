package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var aggregateTests = []test{
	{"Fold", testAggregateFold},
	{"ExpectedVersion", testAggregateExpectedVersion},
	{"UnknownEventType", testAggregateUnknownType},
}

// The counter aggregate of the aggregate tests.
type counterEvent interface{ isCounterEvent() }

type added struct {
	N int `json:"n"`
}

type subtracted struct {
	N int `json:"n"`
}

func (added) isCounterEvent()      {}
func (subtracted) isCounterEvent() {}

type counter struct {
	Total  int
	Events int
}

func evolveCounter(s counter, e counterEvent) counter {
	switch e := e.(type) {
	case added:
		s.Total += e.N
	case subtracted:
		s.Total -= e.N
	}
	s.Events++
	return s
}

func counterCodec(t *testing.T) *store.JSONCodec {
	t.Helper()
	c := store.NewJSONCodec()
	require.NoError(t, c.Register("Added", added{}))
	require.NoError(t, c.Register("Subtracted", subtracted{}))
	return c
}

func appendCounter(t *testing.T, s store.EventStore, codec store.Codec, stream store.StreamID, partition string, events ...any) {
	t.Helper()
	data, err := store.Encode(codec, events...)
	require.NoError(t, err)
	appendOK(t, s, stream, store.AppendOptions{Partition: partition}, data...)
}

func testAggregateFold(t *testing.T, s store.EventStore) {
	codec := counterCodec(t)
	appendCounter(t, s, codec, "counter", "tenant-c", added{5}, added{10}, subtracted{3})
	appendCounter(t, s, codec, "counter", "tenant-c", added{1}, subtracted{2})
	appendCounter(t, s, codec, "counter", "", added{100}) // another partition

	for _, page := range []int{0, 1, 2, 5, 1000} {
		got, err := store.AggregateStream(t.Context(), s, codec, "counter", counter{}, evolveCounter,
			store.AggregateOptions{Partition: "tenant-c", PageSize: page})
		require.NoError(t, err, "page size %d", page)
		require.Equal(t, counter{Total: 11, Events: 5}, got.State, "page size %d", page)
		require.Equal(t, store.Version(5), got.CurrentVersion)
		require.True(t, got.StreamExists)
	}

	// From continues after a known state.
	got, err := store.AggregateStream(t.Context(), s, codec, "counter", counter{Total: 15, Events: 2}, evolveCounter,
		store.AggregateOptions{Partition: "tenant-c", From: 3, PageSize: 2})
	require.NoError(t, err)
	require.Equal(t, counter{Total: 11, Events: 5}, got.State)

	// A missing stream folds to the initial state.
	got, err = store.AggregateStream(t.Context(), s, codec, "nothing", counter{Total: -1}, evolveCounter, store.AggregateOptions{})
	require.NoError(t, err)
	require.Equal(t, counter{Total: -1}, got.State)
	require.Equal(t, store.Version(0), got.CurrentVersion)
	require.False(t, got.StreamExists)
}

func testAggregateExpectedVersion(t *testing.T, s store.EventStore) {
	codec := counterCodec(t)
	appendCounter(t, s, codec, "counter", "", added{1}, added{2}, added{3})
	aggregate := func(stream store.StreamID, expected store.ExpectedVersion) error {
		_, err := store.AggregateStream(t.Context(), s, codec, stream, counter{}, evolveCounter,
			store.AggregateOptions{ExpectedVersion: expected})
		return err
	}
	require.NoError(t, aggregate("counter", store.Exact(3)))
	require.NoError(t, aggregate("counter", store.StreamExists))
	require.NoError(t, aggregate("counter", store.Any))
	require.NoError(t, aggregate("missing", store.NoStream))
	require.NoError(t, aggregate("missing", store.Exact(0)))
	requireConflict(t, aggregate("counter", store.Exact(2)), "counter", store.DefaultPartition, store.Exact(2), 3, true)
	requireConflict(t, aggregate("counter", store.NoStream), "counter", store.DefaultPartition, store.NoStream, 3, true)
	requireConflict(t, aggregate("missing", store.StreamExists), "missing", store.DefaultPartition, store.StreamExists, 0, false)
	requireConflict(t, aggregate("missing", store.Exact(1)), "missing", store.DefaultPartition, store.Exact(1), 0, false)
}

func testAggregateUnknownType(t *testing.T, s store.EventStore) {
	codec := counterCodec(t)
	appendCounter(t, s, codec, "counter", "tenant-u", added{1})
	appendOK(t, s, "counter", store.AppendOptions{Partition: "tenant-u"}, ev("Multiplied", `{"n":2}`))
	_, err := store.AggregateStream(t.Context(), s, codec, "counter", counter{}, evolveCounter,
		store.AggregateOptions{Partition: "tenant-u"})
	require.ErrorIs(t, err, store.ErrUnknownEventType)
	var ue *store.UnknownEventTypeError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, "Multiplied", ue.Type)
	require.Equal(t, store.StreamID("counter"), ue.Stream)
	require.Equal(t, "tenant-u", ue.Partition)
	require.Equal(t, store.Version(2), ue.Position)
	require.Contains(t, err.Error(), "Multiplied")
	require.Contains(t, err.Error(), "counter")
}
