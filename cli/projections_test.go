package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
)

// tallies is a projection registered for the rebuild tests: one row per
// stream counting its Tick events, in the table tallies.
var tallies = Projection{
	Name: "tallies",
	Help: "Tick events per stream",
	New: func(ctx context.Context, pool *pgxpool.Pool, opts ProjectionOptions) (*projection.Projection, error) {
		if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS tallies (partition text, stream_id text, n int NOT NULL,
			PRIMARY KEY (partition, stream_id))`); err != nil {
			return nil, err
		}
		return projection.New(pool, &projection.Config{Name: "tallies", BatchSize: opts.BatchSize, Logger: opts.Logger,
			Handlers: projection.Registry{"Tick": {func(ctx context.Context, tx pgx.Tx, e store.Event) error {
				_, err := tx.Exec(ctx, `INSERT INTO tallies VALUES ($1, $2, 1)
					ON CONFLICT (partition, stream_id) DO UPDATE SET n = tallies.n + 1`, e.Partition, string(e.StreamID))
				return err
			}}},
			Reset: func(ctx context.Context, tx pgx.Tx, _ string) error {
				_, err := tx.Exec(ctx, `DELETE FROM tallies`)
				return err
			}})
	},
}

// tally is one row of tallies: "partition/stream=n".
func tallyRows(t testing.TB, pool *pgxpool.Pool, sql string) []string {
	t.Helper()
	rows, err := pool.Query(testCtx(t), sql)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var p, s string
		var n int
		err := r.Scan(&p, &s, &n)
		return fmt.Sprintf("%s/%s=%d", p, s, n), err
	})
	require.NoError(t, err)
	return out
}

// foldRows returns the tallies a from-scratch count of the log gives.
func foldRows(t testing.TB, pool *pgxpool.Pool) []string {
	return tallyRows(t, pool, `SELECT partition, stream_id, count(*)::int FROM messages
		WHERE NOT is_archived AND message_type = 'Tick' GROUP BY 1, 2 ORDER BY 1, 2`)
}

func readModel(t testing.TB, pool *pgxpool.Pool) []string {
	return tallyRows(t, pool, `SELECT partition, stream_id, n FROM tallies ORDER BY 1, 2`)
}

func eventCount(t testing.TB, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM messages WHERE NOT is_archived`).Scan(&n))
	return n
}

// ticks appends n Tick events (and one Other) to stream in partition.
func ticks(t testing.TB, es store.EventStore, partition, stream string, n int) {
	t.Helper()
	evs := []store.EventData{{Type: "Other", Data: json.RawMessage(`{}`)}}
	for range n {
		evs = append(evs, store.EventData{Type: "Tick", Data: json.RawMessage(`{}`)})
	}
	_, err := es.AppendToStream(testCtx(t), store.StreamID(stream), evs, store.AppendOptions{Partition: partition})
	require.NoError(t, err)
}

// `projections rebuild` shows progress and leaves the read model equal to
// a from-scratch fold, whatever state it was in.
func TestProjectionsRebuildEqualsFold(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	for i := range 10 {
		ticks(t, es, "acme", fmt.Sprintf("s%d", i), i+1)
		ticks(t, es, "globex", fmt.Sprintf("s%d", i), 2)
	}
	inv := invocation{projections: []Projection{tallies}}
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	// First build, from nothing (the table is created on demand).
	r := ok(t, inv, db("projections", "rebuild", "tallies")...)
	events := eventCount(t, pool)
	require.Contains(t, r.stdout, fmt.Sprintf("rebuilt projection tallies: %d events replayed", events))
	want := foldRows(t, pool)
	require.Len(t, want, 20)
	require.Equal(t, want, readModel(t, pool))

	// Damage the read model, and write more events.
	ctx := testCtx(t)
	_, err := pool.Exec(ctx, `UPDATE tallies SET n = 99 WHERE stream_id = 's1'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM tallies WHERE stream_id = 's2' AND partition = 'acme'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO tallies VALUES ('acme', 'ghost', 3)`)
	require.NoError(t, err)
	ticks(t, es, "initech", "late", 3)
	require.NotEqual(t, foldRows(t, pool), readModel(t, pool))

	stderr := &syncBuffer{}
	inv.stderr = stderr
	r = ok(t, inv, db("projections", "rebuild", "tallies", "--batch-size", "7")...)
	events = eventCount(t, pool)
	require.Contains(t, r.stdout, fmt.Sprintf("rebuilt projection tallies: %d events replayed", events))
	frames := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\r")
	require.GreaterOrEqual(t, len(frames), 3, "progress: %q", r.stderr)
	require.Contains(t, frames[1], "rebuild tallies [")
	require.Contains(t, frames[1], fmt.Sprintf("  0%%  0/%d events", events))
	require.Contains(t, frames[len(frames)-1], fmt.Sprintf("100%%  %d/%d events", events, events))
	require.True(t, strings.HasSuffix(r.stderr, "\n"))
	require.Equal(t, foldRows(t, pool), readModel(t, pool))

	// status reports the projection, caught up.
	r = ok(t, invocation{}, db("projections", "status")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	require.Regexp(t, `^NAME\s+PARTITION\s+STATE\s+CHECKPOINT\s+LAG\s+LAST ERROR$`, lines[0])
	var lastGlobal int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(global_position) FROM messages`).Scan(&lastGlobal))
	require.Regexp(t, fmt.Sprintf(`^tallies\s+\*\s+stopped\s+%d\s+0\s+-$`, lastGlobal), lines[1])
}

// Ctrl-C during a rebuild stops it between batches with status 1 and a
// message; the next rebuild starts over and completes.
func TestProjectionsRebuildCancel(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	for i := range 80 {
		ticks(t, es, "acme", fmt.Sprintf("s%d", i), 4) // 5 events each
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	stderr := &syncBuffer{onWrite: func(p []byte) {
		if strings.Contains(string(p), "rebuild tallies [") {
			cancel() // as Ctrl-C would, once the progress bar shows
		}
	}}
	inv := invocation{ctx: ctx, stderr: stderr, projections: []Projection{tallies}}
	r := troupe(t, inv, "--database-url", url, "projections", "rebuild", "tallies", "--batch-size", "5")
	require.Equal(t, ExitError, r.code, r.stderr)
	require.Regexp(t, `troupe: error: rebuild of tallies cancelled after \d+ of 400 events`, r.stderr)
	require.Contains(t, r.stderr, "the read model is consistent with its checkpoint")

	st, err := projection.LoadStatus(testCtx(t), pool, "tallies", projection.AllPartitions)
	require.NoError(t, err)
	require.Positive(t, st.LagEvents, "a cancelled rebuild leaves events to apply")
	require.False(t, st.Active)

	r = ok(t, invocation{projections: []Projection{tallies}}, "--database-url", url, "projections", "rebuild", "tallies", "--batch-size", "100")
	require.Contains(t, r.stdout, "400 events replayed")
	require.Equal(t, foldRows(t, pool), readModel(t, pool))
}

// A name no projection is registered under is an error listing the
// registered ones; so is a registration whose projection has another name
// or cannot be built.
func TestProjectionsRebuildUnknown(t *testing.T) {
	t.Parallel()
	url, _ := migratedDB(t)
	r := troupe(t, invocation{}, "--database-url", url, "projections", "rebuild", "orders")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `troupe: error: projection "orders" is not registered in this binary (registered: none)`)

	r = troupe(t, invocation{projections: []Projection{tallies}}, "--database-url", url, "projections", "rebuild", "orders")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `projection "orders" is not registered in this binary (registered: tallies)`)

	misnamed := tallies
	misnamed.Name = "counts"
	r = troupe(t, invocation{projections: []Projection{misnamed}}, "--database-url", url, "projections", "rebuild", "counts")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, `projection registered as "counts" is named "tallies"`)

	broken := Projection{Name: "broken", New: func(context.Context, *pgxpool.Pool, ProjectionOptions) (*projection.Projection, error) {
		return nil, errors.New("no table")
	}}
	r = troupe(t, invocation{projections: []Projection{broken}}, "--database-url", url, "projections", "rebuild", "broken")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "troupe: error: build projection broken: no table")
}

// status lists every projection and consumer from the tables, with lag
// and the error of a failed one, in a table or JSON.
func TestProjectionsStatus(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	ctx := testCtx(t)
	db := func(args ...string) []string { return append([]string{"--database-url", url}, args...) }

	r := ok(t, invocation{}, db("projections", "status")...)
	require.Equal(t, "no projections have run on this database\n", r.stdout)

	tick := func(stream string, n int) store.AppendResult {
		evs := make([]store.EventData, n)
		for i := range evs {
			evs[i] = store.EventData{Type: "Tick", Data: json.RawMessage(`{}`)}
		}
		res, err := es.AppendToStream(ctx, store.StreamID(stream), evs, store.AppendOptions{Partition: "acme"})
		require.NoError(t, err)
		return res
	}
	last := tick("s1", 3)

	// A projection that caught up, then stopped.
	counter, err := projection.New(pool, &projection.Config{Name: "counter", Logger: quiet, Handlers: projection.Registry{
		"Tick": {func(context.Context, pgx.Tx, store.Event) error { return nil }}}})
	require.NoError(t, err)
	require.NoError(t, counter.Start(ctx))
	require.NoError(t, counter.WaitFor(ctx, last.LastPosition()))
	require.NoError(t, counter.Stop(ctx))

	// A projection limited to one partition that fails on its first event.
	failing, err := projection.New(pool, &projection.Config{Name: "fragile", Partition: "acme", Logger: quiet,
		Retry: retry.Policy{MaxAttempts: 1, InitialDelay: time.Millisecond},
		Handlers: projection.Registry{"Tick": {func(context.Context, pgx.Tx, store.Event) error {
			return errors.New("boom:\nthe handler failed")
		}}}})
	require.NoError(t, err)
	runErr := failing.Run(ctx)
	require.ErrorIs(t, runErr, projection.ErrHandlerFailed)

	tick("s2", 2) // two events the counter has not seen

	r = ok(t, invocation{}, db("projections", "status")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, fmt.Sprintf(`^counter\s+\*\s+stopped\s+%d\s+2 events \(\d.*\)\s+-$`, last.LastGlobalPosition), lines[1])
	require.Regexp(t, `^fragile\s+acme\s+failed\s+0\s+5 events \(.*\)\s+boom: the handler failed at Tick@acme/s1#1$`, lines[2])

	r = ok(t, invocation{}, db("projections", "status", "--format", "json")...)
	var sts []statusJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sts))
	require.Len(t, sts, 2)
	require.Equal(t, "counter", sts[0].Name)
	require.Equal(t, "stopped", sts[0].State)
	require.Equal(t, int64(last.LastGlobalPosition), sts[0].Checkpoint.GlobalPosition)
	require.Equal(t, int64(2), sts[0].LagEvents)
	require.Equal(t, "fragile", sts[1].Name)
	require.Equal(t, "acme", sts[1].Partition)
	require.Equal(t, "failed", sts[1].State)
	require.Contains(t, sts[1].Error, "boom")
	require.NotNil(t, sts[1].FailedAt)
}
