package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

func TestStreamsReadAndArchive(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	appendEvents := func(partition string, evs ...store.EventData) {
		t.Helper()
		_, err := es.AppendToStream(testCtx(t), "c1", evs, store.AppendOptions{Partition: partition, StreamType: "cart"})
		require.NoError(t, err)
	}
	appendEvents("acme",
		store.EventData{Type: "CartCreated", Data: json.RawMessage(`{"eventData": {"currency": "EUR"}}`)},
		store.EventData{Type: "ItemAddedToCart", Data: json.RawMessage(`{"eventData":{"item":{"sku":"a","quantity":2}}}`)},
		store.EventData{Type: "CartCheckedOut", Data: json.RawMessage(`{"eventData":{"orderId":"o-1","total":39.98}}`)},
	)
	// The same id in another partition is another stream.
	appendEvents("globex", store.EventData{Type: "CartCreated", Data: json.RawMessage(`{"eventData":{"currency":"USD"}}`)})
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	// JSON lines (the default): one object per event, in stream order.
	r := ok(t, invocation{}, db("streams", "read", "c1", "--partition", "acme")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	want := []string{"CartCreated", "ItemAddedToCart", "CartCheckedOut"}
	var global int64
	for i, line := range lines {
		var e eventJSON
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		require.Equal(t, want[i], e.Type)
		require.Equal(t, "c1", e.StreamID)
		require.Equal(t, "acme", e.Partition)
		require.Equal(t, "cart", e.StreamType)
		require.Equal(t, int64(i+1), e.StreamPosition)
		require.Greater(t, e.GlobalPosition, global)
		global = e.GlobalPosition
		require.NotEmpty(t, e.MessageID)
		require.Equal(t, e.MessageID, e.Metadata[store.MetaMessageID])
		require.False(t, e.Created.IsZero())
		require.True(t, json.Valid(e.Data))
	}
	var checkout struct {
		EventData struct {
			OrderID string  `json:"orderId"`
			Total   float64 `json:"total"`
		} `json:"eventData"`
	}
	var last eventJSON
	require.NoError(t, json.Unmarshal([]byte(lines[2]), &last))
	require.NoError(t, json.Unmarshal(last.Data, &checkout))
	require.Equal(t, "o-1", checkout.EventData.OrderID)
	require.InDelta(t, 39.98, checkout.EventData.Total, 1e-9)

	// --from and --limit select a range.
	r = ok(t, invocation{}, db("streams", "read", "c1", "-p", "acme", "--from", "2", "--limit", "1")...)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], `"streamPosition":2`)

	// A table.
	r = ok(t, invocation{}, db("streams", "read", "c1", "-p", "acme", "--format", "table")...)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 4, r.stdout)
	require.Regexp(t, `^POSITION\s+GLOBAL\s+TYPE\s+CREATED\s+DATA$`, lines[0])
	require.Regexp(t, `^1\s+\d+\s+CartCreated\s+\S+\s+\{"eventData":\{"currency":"EUR"\}`, lines[1])
	require.Regexp(t, `^3\s+\d+\s+CartCheckedOut\s`, lines[3])

	// The other partition's stream.
	r = ok(t, invocation{}, db("streams", "read", "c1", "-p", "globex")...)
	require.Len(t, strings.Split(strings.TrimSpace(r.stdout), "\n"), 1)
	require.Contains(t, r.stdout, `"currency":"USD"`)

	// Missing streams and bad partitions fail with status 1.
	r = troupe(t, invocation{}, db("streams", "read", "c1")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `stream "c1" not found in partition "default_partition"`)
	r = troupe(t, invocation{}, db("streams", "read", "c1", "-p", "bad partition")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "--partition: invalid tenant id")

	// Archive: afterwards the stream reads as missing, and a second
	// archive finds nothing.
	r = ok(t, invocation{}, db("streams", "archive", "c1", "--partition", "acme")...)
	require.Equal(t, "archived stream c1 in partition acme\n", r.stdout)
	r = troupe(t, invocation{}, db("streams", "read", "c1", "-p", "acme")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "not found")
	r = troupe(t, invocation{}, db("streams", "archive", "c1", "-p", "acme")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `stream "c1" not found in partition "acme" (or already archived)`)
	// The other partition's stream is untouched.
	ok(t, invocation{}, db("streams", "read", "c1", "-p", "globex")...)
}

// Reading pages through streams longer than one read.
func TestStreamsReadLongStream(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	events := make([]store.EventData, readPage+250)
	for i := range events {
		events[i] = store.EventData{Type: "Tick", Data: json.RawMessage(`{"n":1}`)}
	}
	_, err := es.AppendToStream(testCtx(t), "ticks", events, store.AppendOptions{})
	require.NoError(t, err)
	r := ok(t, invocation{}, "--database-url", url, "streams", "read", "ticks")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, len(events))
	require.Contains(t, lines[len(lines)-1], `"streamPosition":1250`)
	r = ok(t, invocation{}, "--database-url", url, "streams", "read", "ticks", "--from", "900", "--limit", "200")
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 200)
	require.Contains(t, lines[0], `"streamPosition":900`)
	require.Contains(t, lines[199], `"streamPosition":1099`)
}
