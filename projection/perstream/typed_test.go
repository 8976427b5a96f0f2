package perstream_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/store"
)

type noted struct {
	Text string `json:"text"`
}

// TestRunnerTypedRegistry: a registry of typed handlers runs in the
// runner's transaction with decoded events; merged with a string-keyed
// registry, both run, in argument order.
func TestRunnerTypedRegistry(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	codec := store.NewJSONCodec().MustRegister("Noted", noted{})
	_, err := pool.Exec(ctx, `CREATE TABLE notes (stream text, position bigint, text text)`)
	require.NoError(t, err)
	typed := projection.MustRegistry(codec, projection.On(func(ctx context.Context, tx pgx.Tx, e noted, ev store.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO notes VALUES ($1, $2, $3)`, string(ev.StreamID), int64(ev.StreamPosition), e.Text)
		return err
	}))
	var rec recorder
	r, err := perstream.New(pool, &perstream.Config{Registry: projection.MergeRegistries(typed, projection.Registry{"Noted": {rec.handler("raw")}})})
	require.NoError(t, err)
	events, err := store.Encode(codec, noted{Text: "a"}, noted{Text: "b"})
	require.NoError(t, err)
	_, err = es.AppendToStream(ctx, "n-1", events, store.AppendOptions{})
	require.NoError(t, err)
	_, err = r.Drain(ctx, "notes", "n-1", perstream.ProjectOptions{})
	require.NoError(t, err)
	rows, err := pool.Query(ctx, `SELECT stream || '@' || position || ':' || text FROM notes ORDER BY position`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"n-1@1:a", "n-1@2:b"}, got)
	require.Equal(t, []string{"raw:Noted@1", "raw:Noted@2"}, rec.got())
}
