package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/store"
)

// streamTallies is a per-stream projection registered for the tests: one
// row per stream of type "ticker" counting its Tick events, in the table
// stream_tallies.
var streamTallies = Projection{
	Name: "stream-tallies",
	Help: "Tick events per ticker stream, on demand",
	PerStream: &PerStream{
		StreamType: "ticker",
		New: func(ctx context.Context, pool *pgxpool.Pool) (*perstream.Runner, error) {
			if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS stream_tallies (partition text, stream_id text, n int NOT NULL,
				PRIMARY KEY (partition, stream_id))`); err != nil {
				return nil, err
			}
			return perstream.New(pool, &perstream.Config{Registry: projection.Registry{
				"Tick": {func(ctx context.Context, tx pgx.Tx, e store.Event) error {
					_, err := tx.Exec(ctx, `INSERT INTO stream_tallies VALUES ($1, $2, 1)
						ON CONFLICT (partition, stream_id) DO UPDATE SET n = stream_tallies.n + 1`, e.Partition, string(e.StreamID))
					return err
				}}}})
		},
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM stream_tallies`)
			return err
		},
	},
}

// tickStream appends n Tick events and one Other to a stream of type typ.
func tickStream(t testing.TB, pool *pgxpool.Pool, typ, partition, stream string, n int) {
	t.Helper()
	evs := []store.EventData{{Type: "Other", Data: []byte(`{}`)}}
	for range n {
		evs = append(evs, store.EventData{Type: "Tick", Data: []byte(`{}`)})
	}
	_, err := newStore(t, pool).AppendToStream(testCtx(t), store.StreamID(stream), evs,
		store.AppendOptions{Partition: partition, StreamType: typ})
	require.NoError(t, err)
}

// `projections rebuild` of a per-stream projection resets its read model
// and checkpoints, then drains every stream of its type: the read model
// equals a fold of the log, and every checkpoint is at its stream's end.
func TestProjectionsRebuildPerStream(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	ctx := testCtx(t)
	for i := range 6 {
		tickStream(t, pool, "ticker", "acme", fmt.Sprintf("s%d", i), i+1)
		tickStream(t, pool, "ticker", "globex", fmt.Sprintf("s%d", i), 2)
	}
	tickStream(t, pool, "other", "acme", "not-a-ticker", 4)
	want := func() []string {
		return tallyRows(t, pool, `SELECT m.partition, m.stream_id, count(*)::int FROM messages m
			JOIN streams s ON s.stream_id = m.stream_id AND s.partition = m.partition AND NOT s.is_archived
			WHERE NOT m.is_archived AND m.message_type = 'Tick' AND s.stream_type = 'ticker' GROUP BY 1, 2 ORDER BY 1, 2`)
	}
	got := func() []string {
		return tallyRows(t, pool, `SELECT partition, stream_id, n FROM stream_tallies ORDER BY 1, 2`)
	}
	inv := invocation{projections: []Projection{tallies, streamTallies}}
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	r := ok(t, inv, db("projections", "rebuild", "stream-tallies", "--batch-size", "2")...)
	var events int
	require.NoError(t, pool.QueryRow(ctx, `SELECT sum(stream_position)::int FROM streams WHERE stream_type = 'ticker'`).Scan(&events))
	require.Contains(t, r.stdout, fmt.Sprintf("rebuilt projection stream-tallies: %d events of 12 streams replayed", events))
	require.Contains(t, r.stderr, fmt.Sprintf("100%%  %d/%d events", events, events))
	require.Len(t, want(), 12)
	require.Equal(t, want(), got())

	// The service projecting on demand finds every stream caught up.
	runner, err := streamTallies.PerStream.New(ctx, pool)
	require.NoError(t, err)
	res, err := runner.ProjectEvents(ctx, "stream-tallies", "s3", perstream.ProjectOptions{Partition: "acme"})
	require.NoError(t, err)
	require.Zero(t, res.Processed)
	require.Equal(t, store.Version(5), res.Checkpoint)

	// Damage the read model and write more; a rebuild starts over.
	_, err = pool.Exec(ctx, `UPDATE stream_tallies SET n = 99 WHERE stream_id = 's1'; INSERT INTO stream_tallies VALUES ('acme', 'ghost', 1)`)
	require.NoError(t, err)
	tickStream(t, pool, "ticker", "initech", "late", 3)
	require.NotEqual(t, want(), got())
	ok(t, inv, db("projections", "rebuild", "stream-tallies")...)
	require.Equal(t, want(), got())
	var behind int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM streams s LEFT JOIN projection_stream_checkpoints c
		ON c.subscription_id = 'stream-tallies' AND c.partition = s.partition AND c.stream_id = s.stream_id
		WHERE s.stream_type = 'ticker' AND coalesce(c.last_processed_position, 0) <> s.stream_position`).Scan(&behind))
	require.Zero(t, behind, "every checkpoint is at its stream's end")

	// A runner that cannot be built, or a failing reset, changes nothing.
	broken := streamTallies
	broken.PerStream = &PerStream{New: streamTallies.PerStream.New, StreamType: "ticker",
		Reset: func(context.Context, pgx.Tx) error { return fmt.Errorf("no reset today") }}
	r = troupe(t, invocation{projections: []Projection{broken}}, db("projections", "rebuild", "stream-tallies")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "rebuild stream-tallies: reset the read model: no reset today (nothing was changed)")
	require.Equal(t, want(), got())
}

// `projections list` shows what this binary registered; status takes a
// name, and an unknown one is an error listing the known ones.
func TestProjectionsListAndStatusByName(t *testing.T) {
	t.Parallel()
	r := ok(t, invocation{}, "projections", "list")
	require.Contains(t, r.stdout, "no projection is registered in this binary")

	r = ok(t, invocation{projections: []Projection{tallies, streamTallies}}, "projections", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, `^NAME\s+ENGINE\s+DESCRIPTION$`, lines[0])
	require.Regexp(t, `^stream-tallies\s+per-stream\s+Tick events per ticker stream, on demand$`, lines[1])
	require.Regexp(t, `^tallies\s+continuous\s+Tick events per stream$`, lines[2])

	url, pool := migratedDB(t)
	tickStream(t, pool, "ticker", "acme", "s", 2)
	inv := invocation{projections: []Projection{tallies, streamTallies}}
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }
	ok(t, inv, db("projections", "rebuild", "tallies")...)

	r = ok(t, inv, db("projections", "status", "tallies")...)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	require.Regexp(t, `^tallies\s+\*\s+stopped\s+\d+\s+0\s+-$`, lines[1])

	r = troupe(t, inv, db("projections", "status", "talies")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `projection "talies" has not run on this database (tallies); registered in this binary: stream-tallies, tallies`)
	r = troupe(t, inv, db("projections", "status", "stream-tallies")...)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `projection "stream-tallies" is registered in this binary but has not run on this database`)
}

// Ctrl-C during a per-stream rebuild stops it with status 1 and a message;
// the next rebuild starts over and completes.
func TestProjectionsRebuildPerStreamCancel(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	for i := range 40 {
		tickStream(t, pool, "ticker", "acme", fmt.Sprintf("s%d", i), 4)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	stderr := &syncBuffer{onWrite: func(p []byte) {
		if strings.Contains(string(p), "rebuild stream-tallies [") {
			cancel() // as Ctrl-C would, once the progress bar shows
		}
	}}
	inv := invocation{ctx: ctx, stderr: stderr, projections: []Projection{streamTallies}}
	r := troupe(t, inv, "--database-url", url, "projections", "rebuild", "stream-tallies", "--batch-size", "1")
	require.Equal(t, ExitError, r.code, r.stderr)
	require.Regexp(t, `rebuild of stream-tallies cancelled after \d+ of 200 events`, r.stderr)

	r = ok(t, invocation{projections: []Projection{streamTallies}}, "--database-url", url, "projections", "rebuild", "stream-tallies")
	require.Contains(t, r.stdout, "200 events of 40 streams replayed")
	rows := tallyRows(t, pool, `SELECT partition, stream_id, n FROM stream_tallies ORDER BY 1, 2`)
	require.Len(t, rows, 40)
	for _, row := range rows {
		require.True(t, strings.HasSuffix(row, "=4"), row)
	}
}
