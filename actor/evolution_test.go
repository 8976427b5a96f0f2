package actor_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
	"github.com/troupehq/troupe/store/postgres"
)

// evolvedCodec is the counter's codec after years of changes: Incremented
// was {"amount":"2"} (v1), then {"amount":2} (v2), now {"by":2} (v3); the
// type was once called Bumped; DoubleBumped {"a":1,"b":2} was split into
// two Incremented (written at v1); Debug events are dropped.
func evolvedCodec() *store.JSONCodec {
	c := newCodec()
	c.MustRegisterUpcaster("Incremented", 1, func(data json.RawMessage) (json.RawMessage, error) {
		var v1 struct {
			Amount string `json:"amount"`
		}
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(v1.Amount)
		if err != nil {
			return nil, fmt.Errorf("amount %q: %w", v1.Amount, err)
		}
		return json.Marshal(map[string]int{"amount": n})
	}).MustRegisterUpcaster("Incremented", 2, func(data json.RawMessage) (json.RawMessage, error) {
		var v2 struct {
			Amount int `json:"amount"`
		}
		if err := json.Unmarshal(data, &v2); err != nil {
			return nil, err
		}
		return json.Marshal(Incremented{By: v2.Amount})
	}).MustRegisterRename("Bumped", "Incremented").
		MustRegisterSplit("DoubleBumped", 1, []string{"Incremented"}, func(data json.RawMessage) ([]store.UpcastEvent, error) {
			var d struct{ A, B int }
			if err := json.Unmarshal(data, &d); err != nil {
				return nil, err
			}
			return []store.UpcastEvent{
				{Type: "Incremented", Version: 1, Data: json.RawMessage(fmt.Sprintf(`{"amount":"%d"}`, d.A))},
				{Type: "Incremented", Version: 1, Data: json.RawMessage(fmt.Sprintf(`{"amount":"%d"}`, d.B))},
			}, nil
		}).MustRegisterDrop("Debug")
	return c
}

func rawV(typ, version, data string) store.EventData {
	return store.EventData{Type: typ, SchemaVersion: version, Data: json.RawMessage(data)}
}

// writeOldStream writes, as the first build did, events that fold to a
// count of 15 in 5 events at version 6.
func writeOldStream(t *testing.T, raw store.EventStore, stream store.StreamID) {
	t.Helper()
	_, err := raw.AppendToStream(t.Context(), stream, []store.EventData{
		rawV("Bumped", "1", `{"amount":"2"}`),
		rawV("Incremented", "1", `{"amount":"3"}`),
		rawV("Debug", "1", `{"x":1}`),
		rawV("DoubleBumped", "1", `{"A":1,"B":4}`),
		rawV("Incremented", "2", `{"amount":5}`),
		rawV("Debug", "1", `{"x":2}`),
	}, store.AppendOptions{Partition: "acme"})
	require.NoError(t, err)
}

// Must show: a stream written at v1 is replayed as v3 through two
// upcasters (with a rename, a split and drops) by a cold activation, and a
// new event is written at the current version.
func TestReplayUpcastsOldEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, pool))
	raw, err := postgres.New(pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	codec := evolvedCodec()
	st, err := postgres.New(pool, &postgres.Config{Logger: quietLogger(), Upcaster: codec})
	require.NoError(t, err)
	writeOldStream(t, raw, "old")

	k := counterKind()
	k.Codec = codec
	for _, page := range []int{1, 2, 100} {
		h, agg := startHost(t, st, actor.Config{ReplayPageSize: page}, k)
		s, v, err := agg.State(ctx, "acme", "old")
		require.NoError(t, err)
		assert.Equal(t, counterState{Count: 15, Events: 5}, s, "page size %d", page)
		assert.Equal(t, store.Version(6), v, "the version counts the dropped event at the end")
		require.NoError(t, h.Stop(ctx))
	}

	_, agg := startHost(t, st, actor.Config{ReplayPageSize: 2}, k)
	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "old", By: 10}, actor.SendOptions{ReturnState: true})
	require.NoError(t, err)
	assert.Equal(t, store.Version(7), r.Version)
	assert.Equal(t, counterState{Count: 25, Events: 6}, r.State)
	stored, err := raw.ReadStream(ctx, "old", store.ReadOptions{Partition: "acme", From: 7})
	require.NoError(t, err)
	require.Len(t, stored.Events, 1)
	assert.Equal(t, "Incremented", stored.Events[0].Type)
	assert.Equal(t, "3", stored.Events[0].SchemaVersion, "new events are written at the current version")
	assert.JSONEq(t, `{"by":10}`, string(stored.Events[0].Data))
}

// Bad input: a stream holding an event of a version newer than the reader
// knows, or whose upcaster fails, fails the command cleanly with an error
// naming the stream, position, type and version; nothing is appended and
// the host goes on serving other streams.
func TestReplayFailsOnEventItCannotUpcast(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	codec := evolvedCodec()
	st, err := memory.NewWithConfig(&memory.Config{Upcaster: codec})
	require.NoError(t, err)
	k := counterKind()
	k.Codec = codec
	_, agg := startHost(t, st, actor.Config{}, k)

	cases := []struct {
		stream, typ, version, data string
		cause                      error
		says                       string
	}{
		{"newer", "Incremented", "4", `{"by":1,"unit":"kg"}`, store.ErrUnknownSchemaVersion, "newer than 3"},
		{"failing", "Incremented", "1", `{"amount":"two"}`, nil, `amount "two"`},
	}
	for _, c := range cases {
		_, err := st.AppendToStream(ctx, store.StreamID(c.stream),
			[]store.EventData{rawV("Incremented", "3", `{"by":1}`), rawV(c.typ, c.version, c.data)}, store.AppendOptions{Partition: "acme"})
		require.NoError(t, err)
		_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: c.stream})
		require.Error(t, err, c.stream)
		require.ErrorIs(t, err, store.ErrUpcast)
		if c.cause != nil {
			require.ErrorIs(t, err, c.cause)
		}
		var ue *store.UpcastError
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, store.StreamID(c.stream), ue.Stream)
		assert.Equal(t, store.Version(2), ue.Position)
		assert.Equal(t, c.typ, ue.Type)
		assert.Equal(t, c.version, ue.SchemaVersion)
		assert.Contains(t, err.Error(), c.says)
		res, err := st.ReadStream(ctx, store.StreamID(c.stream), store.ReadOptions{Partition: "acme", To: 1})
		require.NoError(t, err)
		assert.Equal(t, store.Version(2), res.CurrentVersion, "nothing appended to %s", c.stream)
	}
	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "fine"})
	require.NoError(t, err)
	assert.Equal(t, store.Version(1), r.Version)
}

// Must show: a snapshot saved at an older state version is ignored: the
// state is folded from the events, and the next snapshot is saved at the
// kind's state version.
func TestSnapshotOfOlderStateVersionIsIgnored(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := memory.New()
	_, a1 := startHost(t, st, actor.Config{})
	for range 12 {
		_, err := a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "sv"})
		require.NoError(t, err)
	}
	// A snapshot of the old state's shape, which decodes into the new
	// state but means something else there.
	require.NoError(t, st.SaveSnapshot(ctx, store.Snapshot{Partition: "acme", Stream: "sv", Name: "counter", Version: 10,
		StateVersion: 1, State: json.RawMessage(`{"count":1000,"events":1}`)}))

	k := snapshotKind(5)
	k.Snapshot.Version = 2
	logs := &logBuffer{}
	h2, a2 := startHost(t, st, actor.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}, k)
	s, v, err := a2.State(ctx, "acme", "sv")
	require.NoError(t, err)
	assert.Equal(t, store.Version(12), v)
	assert.Equal(t, counterState{Count: 12, Events: 12}, s, "the old snapshot is not used")
	assert.Equal(t, int64(12), h2.Stats().EventsReplayed, "the whole stream was replayed")
	assert.Contains(t, logs.String(), "actor_snapshot_state_version_changed")

	for range 3 {
		_, err := a2.Send(ctx, counterCmd{Tenant: "acme", Stream: "sv"})
		require.NoError(t, err)
	}
	require.NoError(t, h2.Stop(ctx))
	snap, ok, err := st.LoadSnapshot(ctx, "acme", "sv", "counter")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, store.Version(15), snap.Version)
	assert.Equal(t, 2, snap.StateVersion)
	assert.JSONEq(t, `{"count":15,"events":15}`, string(snap.State))

	// The same version is used: a cold start reads only the tail.
	h3, a3 := startHost(t, st, actor.Config{}, k)
	_, err = a3.Send(ctx, counterCmd{Tenant: "acme", Stream: "sv"})
	require.NoError(t, err)
	assert.Equal(t, int64(0), h3.Stats().EventsReplayed)

	_, err = actor.Register(h3, func() actor.Kind[counterCmd, counterEvent, counterState] {
		k := snapshotKind(5)
		k.Name, k.Snapshot.Version = "negative", -1
		return k
	}())
	require.ErrorContains(t, err, "Kind.Snapshot.Version")
}
