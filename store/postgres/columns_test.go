package postgres_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// What an append stores: the event's schema version, the database clock,
// metadata exactly as given, the stream type of the creating append; and
// what a read returns: the stored metadata with the system keys on top.
func TestAppendStoredColumns(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	meta := store.Metadata{
		store.MetaCorrelationID: "corr-1",
		store.MetaTraceParent:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		store.MetaMessageID:     "forged", // a system key: stored, but loses on read
		store.MetaPartition:     "elsewhere",
	}
	_, err := s.AppendToStream(ctx, "cart-1", []store.EventData{
		{Type: "V2", Data: json.RawMessage(`{"b":2,"a":[1,2]}`), Metadata: meta, SchemaVersion: "2", MessageID: "m-1"},
		{Type: "V1", Data: json.RawMessage(`null`), MessageID: "m-2"},
	}, store.AppendOptions{Partition: "tenant-a", StreamType: "cart"})
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "cart-1", events("Later", 1), store.AppendOptions{Partition: "tenant-a", StreamType: "other"})
	require.NoError(t, err)

	var schemaVersion, storedMeta, kind string
	var created, now time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT message_schema_version, message_metadata::text, message_kind, created, now()
FROM messages WHERE message_id = 'm-1'`).Scan(&schemaVersion, &storedMeta, &kind, &created, &now))
	require.Equal(t, "2", schemaVersion)
	require.Equal(t, "E", kind)
	require.JSONEq(t, `{"correlationId":"corr-1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","messageId":"forged","partition":"elsewhere"}`, storedMeta)
	require.WithinDuration(t, now, created, time.Minute, "created is the database clock")
	var streamType string
	require.NoError(t, pool.QueryRow(ctx, `SELECT stream_type FROM streams WHERE stream_id = 'cart-1'`).Scan(&streamType))
	require.Equal(t, "cart", streamType)

	rr, err := s.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.Len(t, rr.Events, 3)
	e := rr.Events[0]
	require.Equal(t, "2", e.SchemaVersion)
	require.Equal(t, "1", rr.Events[1].SchemaVersion)
	require.Equal(t, "cart", e.StreamType)
	require.Equal(t, "cart", rr.Events[2].StreamType, "a later append changed the stream type")
	require.JSONEq(t, `{"a":[1,2],"b":2}`, string(e.Data))
	require.JSONEq(t, `null`, string(rr.Events[1].Data))
	require.True(t, created.Equal(e.Created), "read created %v, stored %v", e.Created, created)
	require.Equal(t, store.Metadata{
		store.MetaCorrelationID:  "corr-1",
		store.MetaTraceParent:    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		store.MetaMessageID:      "m-1",
		store.MetaStreamID:       "cart-1",
		store.MetaStreamPosition: store.Version(1),
		store.MetaGlobalPosition: e.GlobalPosition,
		store.MetaPartition:      "tenant-a",
	}, e.Metadata)
}

// A JSON document jsonb can't store is bad input, not a database failure.
func TestAppendUnstorableJSON(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	_, err := s.AppendToStream(t.Context(), "s", []store.EventData{{Type: "E", Data: json.RawMessage(`{"a":"\u0000"}`)}}, store.AppendOptions{})
	require.ErrorIs(t, err, store.ErrInvalidArgument)
	rr, err := s.ReadStream(t.Context(), "s", store.ReadOptions{})
	require.NoError(t, err)
	require.False(t, rr.StreamExists)
}
