package perstream_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// A per-stream runner on a store with an upcaster sees renamed types under
// their new name and goes on past ranges of dropped events.
func TestRunnerReadsUpcastEvents(t *testing.T) {
	t.Parallel()
	pool, raw := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	schema := store.NewJSONCodec().MustRegisterRename("CartStarted", projtest.TypeOpened).MustRegisterDrop("Debug")
	es, err := postgres.New(pool, &postgres.Config{Upcaster: schema})
	require.NoError(t, err)
	debug := store.EventData{Type: "Debug", Data: json.RawMessage(`{}`)}
	projtest.AppendCart(t, raw, "", "c1", store.EventData{Type: "CartStarted", Data: json.RawMessage(`{"cart":"c1"}`)},
		debug, debug, debug, debug, projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1), debug)

	rec := &recorder{}
	r, err := perstream.New(pool, &perstream.Config{Store: es, Registry: projection.Registry{
		projtest.TypeOpened: {rec.handler("h")},
		projtest.TypeAdded:  {rec.handler("h")},
	}})
	require.NoError(t, err)
	res, err := r.Drain(ctx, "sub", "c1", perstream.ProjectOptions{BatchSize: 2})
	require.NoError(t, err)
	require.Equal(t, []string{"h:CartOpened@1", "h:ItemAdded@6"}, rec.got())
	require.Equal(t, store.Version(7), res.CurrentStreamVersion)
	require.Equal(t, store.Version(6), res.Checkpoint)
	require.Equal(t, 2, res.Processed)
}
