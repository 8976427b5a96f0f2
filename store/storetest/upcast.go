package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// RunUpcasting checks that the stores returned by newStore, configured
// with the given upcaster (postgres.Config.Upcaster,
// memory.Config.Upcaster), upcast every event ReadStream and ReadAll
// return: a stream written at version 1 reads at version 3 through two
// upcasters, a renamed type reads under its new name, a split gives events
// sharing the stored event's positions, a dropped type reads as nothing
// (and paged reads go on past it), type filters select by the types read,
// and an event of a version newer than the reader knows, of an
// unparseable version, or whose upcaster fails is an error naming its
// stream, position, type and version. newStore returns a fresh, empty
// store per call, as for Run.
func RunUpcasting(t *testing.T, newStore func(t *testing.T, u store.Upcaster) store.EventStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.EventStore)
	}{
		{"ReadStreamV1AsV3", testUpcastReadStream},
		{"ReadStreamPaging", testUpcastReadStreamPaging},
		{"ReadAll", testUpcastReadAll},
		{"ReadAllTypes", testUpcastReadAllTypes},
		{"ReadAllPaging", testUpcastReadAllPaging},
		{"Session", testUpcastSession},
		{"AppendAtCurrentVersion", testUpcastAppendAtCurrentVersion},
		{"NewerVersion", testUpcastNewerVersion},
		{"BadVersion", testUpcastBadVersion},
		{"FailingUpcaster", testUpcastFailing},
		{"UnknownType", testUpcastUnknownType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t, evolvedCodec()))
		})
	}
}

// itemAdded is the current (v3) shape of the evolved test type: v1 was
// {"sku","qty"}, v2 renamed qty to quantity, v3 added unit (default "pcs").
type itemAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Unit     string `json:"unit"`
}

type cartCreated struct {
	Cart string `json:"cart"`
}

type streetChanged struct {
	Street string `json:"street"`
}

type cityChanged struct {
	City string `json:"city"`
}

// evolvedCodec is the test schema: ItemAdded at v3 through two upcasters,
// CartOpened renamed CartCreated, AddressChanged v1 split into
// StreetChanged and CityChanged, DebugNote dropped, and Broken, whose
// upcaster fails.
func evolvedCodec() *store.JSONCodec {
	c := store.NewJSONCodec().
		MustRegister("ItemAdded", itemAdded{}).
		MustRegister("CartCreated", cartCreated{}).
		MustRegister("StreetChanged", streetChanged{}).
		MustRegister("CityChanged", cityChanged{}).
		MustRegister("Broken", cartCreated{}.Cart)
	c.MustRegisterUpcaster("ItemAdded", 1, func(data json.RawMessage) (json.RawMessage, error) {
		var v1 struct {
			SKU string `json:"sku"`
			Qty int    `json:"qty"`
		}
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]any{"sku": v1.SKU, "quantity": v1.Qty})
	}).MustRegisterUpcaster("ItemAdded", 2, func(data json.RawMessage) (json.RawMessage, error) {
		var v2 map[string]any
		if err := json.Unmarshal(data, &v2); err != nil {
			return nil, err
		}
		v2["unit"] = "pcs"
		return json.Marshal(v2)
	}).MustRegisterRename("CartOpened", "CartCreated").
		MustRegisterSplit("AddressChanged", 1, []string{"StreetChanged", "CityChanged"},
			func(data json.RawMessage) ([]store.UpcastEvent, error) {
				var a struct{ Street, City string }
				if err := json.Unmarshal(data, &a); err != nil {
					return nil, err
				}
				street, _ := json.Marshal(streetChanged{Street: a.Street})
				city, _ := json.Marshal(cityChanged{City: a.City})
				return []store.UpcastEvent{{Type: "StreetChanged", Data: street}, {Type: "CityChanged", Data: city}}, nil
			}).
		MustRegisterDrop("DebugNote").
		MustRegisterUpcaster("Broken", 1, func(json.RawMessage) (json.RawMessage, error) {
			return nil, errors.New("the body has no cart")
		})
	return c
}

// v1 returns a raw event at schema version 1.
func v1(typ, data string) store.EventData {
	return store.EventData{Type: typ, Data: json.RawMessage(data), SchemaVersion: "1"}
}

// writeV1 appends the fixture stream, every event as written by the first
// build: CartOpened, ItemAdded, DebugNote, AddressChanged, ItemAdded.
func writeV1(t *testing.T, s store.EventStore, stream store.StreamID, partition string) {
	t.Helper()
	appendOK(t, s, stream, store.AppendOptions{Partition: partition},
		v1("CartOpened", `{"cart":"c1"}`),
		v1("ItemAdded", `{"sku":"apple","qty":2}`),
		v1("DebugNote", `{"note":"x"}`),
		v1("AddressChanged", `{"Street":"Main St","City":"Springfield"}`),
		v1("ItemAdded", `{"sku":"pear","qty":5}`),
	)
}

type seen struct {
	typ, version string
	pos          store.Version
	data         string
}

func seenOf(t *testing.T, events []store.Event) []seen {
	t.Helper()
	out := make([]seen, len(events))
	for i, e := range events {
		var v any
		require.NoError(t, json.Unmarshal(e.Data, &v), "%s", e)
		b, _ := json.Marshal(v) // canonical key order
		out[i] = seen{e.Type, e.SchemaVersion, e.StreamPosition, string(b)}
	}
	return out
}

// wantV3 is what the fixture stream reads as.
var wantV3 = []seen{
	{"CartCreated", "1", 1, `{"cart":"c1"}`},
	{"ItemAdded", "3", 2, `{"quantity":2,"sku":"apple","unit":"pcs"}`},
	{"StreetChanged", "1", 4, `{"street":"Main St"}`},
	{"CityChanged", "1", 4, `{"city":"Springfield"}`},
	{"ItemAdded", "3", 5, `{"quantity":5,"sku":"pear","unit":"pcs"}`},
}

func testUpcastReadStream(t *testing.T, s store.EventStore) {
	writeV1(t, s, "cart-1", "")
	res := readStream(t, s, "cart-1", "")
	require.True(t, res.StreamExists)
	require.Equal(t, store.Version(5), res.CurrentVersion, "the version counts stored events")
	require.Equal(t, wantV3, seenOf(t, res.Events))
	// Split events share everything but type, version and body, and their
	// place in the split.
	a, b := res.Events[2], res.Events[3]
	require.Equal(t, a.MessageID, b.MessageID)
	require.Equal(t, a.GlobalPosition, b.GlobalPosition)
	require.Equal(t, a.Position(), b.Position())
	require.Equal(t, 0, a.Metadata[store.MetaSplitPart])
	require.Equal(t, 1, b.Metadata[store.MetaSplitPart])
	am, bm := maps.Clone(a.Metadata), maps.Clone(b.Metadata)
	delete(am, store.MetaSplitPart)
	delete(bm, store.MetaSplitPart)
	require.Equal(t, am, bm)
	for i, e := range res.Events {
		if i != 2 && i != 3 {
			require.NotContains(t, e.Metadata, store.MetaSplitPart, "event %d is not part of a split", i)
		}
	}
	// Every event decodes with the codec that upcast it.
	codec := evolvedCodec()
	for _, e := range res.Events {
		_, err := store.Decode(codec, e)
		require.NoError(t, err, "%s", e)
	}
	v, err := store.Decode(codec, res.Events[1])
	require.NoError(t, err)
	require.Equal(t, itemAdded{SKU: "apple", Quantity: 2, Unit: "pcs"}, v)
}

func testUpcastReadStreamPaging(t *testing.T, s store.EventStore) {
	writeV1(t, s, "cart-1", "")
	appendOK(t, s, "cart-1", store.AppendOptions{}, v1("DebugNote", `{}`), v1("DebugNote", `{}`))
	for _, page := range []int{1, 2, 3} {
		var got []store.Event
		from := store.Version(1)
		for reads := 0; ; reads++ {
			require.Less(t, reads, 20, "page %d: reads never end", page)
			res, err := s.ReadStream(t.Context(), "cart-1", store.ReadOptions{From: from, MaxCount: page})
			require.NoError(t, err)
			require.Equal(t, store.Version(7), res.CurrentVersion)
			got = append(got, res.Events...)
			if len(res.Events) < page {
				break // fewer than asked: the end, dropped events or not
			}
			from = res.Events[len(res.Events)-1].StreamPosition + 1
		}
		require.Equal(t, wantV3, seenOf(t, got), "page size %d", page)
	}
	// To bounds the range: a range of dropped events reads as none.
	res, err := s.ReadStream(t.Context(), "cart-1", store.ReadOptions{From: 3, To: 3, MaxCount: 1})
	require.NoError(t, err)
	require.Empty(t, res.Events)
	res, err = s.ReadStream(t.Context(), "cart-1", store.ReadOptions{From: 6, MaxCount: 1})
	require.NoError(t, err)
	require.Empty(t, res.Events)
	require.True(t, res.StreamExists)
}

// readAllOf reads the whole log in pages of limit.
func readAllOf(t *testing.T, s store.EventStore, opts store.ReadAllOptions) []store.Event {
	t.Helper()
	var out []store.Event
	for reads := 0; ; reads++ {
		require.Less(t, reads, 100, "reads never end")
		res, err := s.ReadAll(t.Context(), opts)
		require.NoError(t, err)
		out = append(out, res.Events...)
		if len(res.Events) == 0 {
			// The end. Next may have moved past stored events that read
			// as nothing.
			require.False(t, res.Next.Less(opts.After))
			return out
		}
		require.False(t, res.Next.Less(res.Events[len(res.Events)-1].Position()))
		opts.After = res.Next
	}
}

// waitUpcastLog waits until the whole log reads as at least n events
// (the visibility guard may hold back the tail for a while; see
// visibilityWait).
func waitUpcastLog(t *testing.T, s store.EventStore, n int) {
	t.Helper()
	deadline := time.Now().Add(visibilityWait)
	for len(readAllOf(t, s, store.ReadAllOptions{})) < n {
		if time.Now().After(deadline) {
			require.Failf(t, "events missing from read all", "want at least %d events after %s", n, visibilityWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testUpcastReadAll(t *testing.T, s store.EventStore) {
	writeV1(t, s, "cart-1", "tenant-a")
	waitUpcastLog(t, s, len(wantV3))
	require.Equal(t, wantV3, seenOf(t, readAllOf(t, s, store.ReadAllOptions{})))
	require.Equal(t, wantV3, seenOf(t, readAllOf(t, s, store.ReadAllOptions{Partition: "tenant-a"})))
}

func testUpcastReadAllTypes(t *testing.T, s store.EventStore) {
	writeV1(t, s, "cart-1", "")
	waitUpcastLog(t, s, len(wantV3))
	got := readAllOf(t, s, store.ReadAllOptions{Types: []string{"CartCreated", "CityChanged"}})
	require.Equal(t, []seen{wantV3[0], wantV3[3]}, seenOf(t, got),
		"a filter on the new name finds the renamed events, one on a split type its part of the split")
	require.Empty(t, readAllOf(t, s, store.ReadAllOptions{Types: []string{"DebugNote"}}), "dropped events read as nothing")
	require.Empty(t, readAllOf(t, s, store.ReadAllOptions{Types: []string{"CartOpened"}}), "the old name reads as nothing")
}

func testUpcastReadAllPaging(t *testing.T, s store.EventStore) {
	writeV1(t, s, "cart-1", "")
	// Dropped events between the fixture and one last event.
	drops := make([]store.EventData, 7)
	for i := range drops {
		drops[i] = v1("DebugNote", `{}`)
	}
	appendOK(t, s, "cart-1", store.AppendOptions{}, drops...)
	appendOK(t, s, "cart-2", store.AppendOptions{}, v1("CartOpened", `{"cart":"c2"}`))
	want := append(append([]seen{}, wantV3...), seen{"CartCreated", "1", 1, `{"cart":"c2"}`})
	waitUpcastLog(t, s, len(want))
	for _, limit := range []int{1, 2, 3, 4} {
		var got []store.Event
		opts := store.ReadAllOptions{Limit: limit}
		for reads := 0; ; reads++ {
			require.Less(t, reads, 50)
			res, err := s.ReadAll(t.Context(), opts)
			require.NoError(t, err)
			got = append(got, res.Events...)
			if len(res.Events) < limit {
				// Fewer than asked means caught up, even past the drops.
				break
			}
			require.LessOrEqual(t, len(res.Events), limit+1, "a batch holds at most Limit events, and the rest of a split")
			opts.After = res.Next
		}
		require.Equal(t, want, seenOf(t, got), "limit %d", limit)
	}
}

func testUpcastSession(t *testing.T, s store.EventStore) {
	writeV1(t, s, "cart-1", "")
	err := s.WithSession(t.Context(), func(ctx context.Context, ses store.EventStore) error {
		res, err := ses.ReadStream(ctx, "cart-1", store.ReadOptions{})
		require.NoError(t, err)
		require.Equal(t, wantV3, seenOf(t, res.Events), "a session's store upcasts too")
		return nil
	})
	require.NoError(t, err)
}

// An event appended without a schema version is stored at the current
// version of its type (its body has today's shape), by an append and by a
// batch; one that names its version keeps it.
func testUpcastAppendAtCurrentVersion(t *testing.T, s store.EventStore) {
	current := store.EventData{Type: "ItemAdded", Data: json.RawMessage(`{"sku":"a","quantity":1,"unit":"kg"}`)}
	unknown := store.EventData{Type: "Mystery", Data: json.RawMessage(`{}`)}
	events := []store.EventData{current, v1("ItemAdded", `{"sku":"b","qty":2}`), unknown}
	appendOK(t, s, "cart-1", store.AppendOptions{}, events...)
	require.Empty(t, events[0].SchemaVersion, "the caller's events are not modified")
	want := []seen{
		{"ItemAdded", "3", 1, `{"quantity":1,"sku":"a","unit":"kg"}`},
		{"ItemAdded", "3", 2, `{"quantity":2,"sku":"b","unit":"pcs"}`},
		{"Mystery", "1", 3, `{}`},
	}
	require.Equal(t, want, seenOf(t, readStream(t, s, "cart-1", "").Events))
	ba, ok := s.(store.BatchAppender)
	if !ok {
		return
	}
	res, err := ba.AppendBatch(t.Context(), []store.StreamAppend{{Stream: "cart-2", Events: []store.EventData{current}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.Equal(t, want[:1], seenOf(t, readStream(t, s, "cart-2", "").Events))
}

// requireUpcastError checks err names the event and its version.
func requireUpcastError(t *testing.T, err error, stream store.StreamID, pos store.Version, typ, version string, cause ...error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, store.ErrUpcast)
	for _, c := range cause {
		require.ErrorIs(t, err, c)
	}
	var ue *store.UpcastError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, stream, ue.Stream)
	require.Equal(t, pos, ue.Position)
	require.Equal(t, typ, ue.Type)
	require.Equal(t, version, ue.SchemaVersion)
	for _, part := range []string{string(stream), fmt.Sprint(pos), typ, version} {
		require.Contains(t, err.Error(), part)
	}
}

// requireReadsFail checks ReadStream and ReadAll both fail on the bad
// event, returning no events.
func requireReadsFail(t *testing.T, s store.EventStore, stream store.StreamID, pos store.Version, typ, version string, cause ...error) {
	t.Helper()
	res, err := s.ReadStream(t.Context(), stream, store.ReadOptions{})
	requireUpcastError(t, err, stream, pos, typ, version, cause...)
	require.Empty(t, res.Events, "nothing half-read")
	// Until the bad event is visible to ReadAll, it reads without error.
	var all store.ReadAllResult
	deadline := time.Now().Add(visibilityWait)
	for {
		all, err = s.ReadAll(t.Context(), store.ReadAllOptions{})
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	requireUpcastError(t, err, stream, pos, typ, version, cause...)
	require.Empty(t, all.Events, "nothing half-read")
	require.Equal(t, store.Position{}, all.Next, "the checkpoint does not move past a bad event")
}

func testUpcastNewerVersion(t *testing.T, s store.EventStore) {
	e := v1("ItemAdded", `{"sku":"apple","quantity":2,"unit":"kg","origin":"x"}`)
	e.SchemaVersion = "4"
	appendOK(t, s, "cart-1", store.AppendOptions{}, v1("CartOpened", `{"cart":"c1"}`), e)
	requireReadsFail(t, s, "cart-1", 2, "ItemAdded", "4", store.ErrUnknownSchemaVersion)
	_, err := s.ReadStream(t.Context(), "cart-1", store.ReadOptions{})
	require.Contains(t, err.Error(), "newer than 3")
}

func testUpcastBadVersion(t *testing.T, s store.EventStore) {
	e := v1("ItemAdded", `{"sku":"apple","qty":2}`)
	e.SchemaVersion = "v2"
	appendOK(t, s, "cart-1", store.AppendOptions{}, e)
	requireReadsFail(t, s, "cart-1", 1, "ItemAdded", "v2", store.ErrUnknownSchemaVersion)
}

func testUpcastFailing(t *testing.T, s store.EventStore) {
	appendOK(t, s, "cart-1", store.AppendOptions{}, v1("CartOpened", `{"cart":"c1"}`), v1("Broken", `"x"`))
	requireReadsFail(t, s, "cart-1", 2, "Broken", "1")
	_, err := s.ReadStream(t.Context(), "cart-1", store.ReadOptions{})
	require.Contains(t, err.Error(), "the body has no cart", "the upcaster's own error is kept")
	// The events before the bad one still read.
	res, err := s.ReadStream(t.Context(), "cart-1", store.ReadOptions{To: 1})
	require.NoError(t, err)
	require.Equal(t, []seen{wantV3[0]}, seenOf(t, res.Events))
}

func testUpcastUnknownType(t *testing.T, s store.EventStore) {
	e := v1("Mystery", `{"a":1}`)
	e.SchemaVersion = "9"
	appendOK(t, s, "cart-1", store.AppendOptions{}, e)
	// A type the upcaster knows nothing of passes through as stored (a
	// store may hold events of other services)...
	res := readStream(t, s, "cart-1", "")
	require.Equal(t, []seen{{"Mystery", "9", 1, `{"a":1}`}}, seenOf(t, res.Events))
	// ...and decoding it is the error, naming the type and version.
	_, err := store.Decode(evolvedCodec(), res.Events[0])
	require.ErrorIs(t, err, store.ErrUnknownEventType)
	var ute *store.UnknownEventTypeError
	require.ErrorAs(t, err, &ute)
	require.Equal(t, "9", ute.SchemaVersion)
	require.True(t, strings.Contains(err.Error(), `"Mystery"`) && strings.Contains(err.Error(), `"cart-1"`), err.Error())
}
