package postgres_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// batchTracer records the statements of every batch sent on its pool.
type batchTracer struct {
	mu      sync.Mutex
	batches [][]string
}

func (*batchTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (*batchTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (b *batchTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches = append(b.batches, nil)
	return ctx
}
func (b *batchTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.batches) - 1
	b.batches[n] = append(b.batches[n], data.SQL)
}
func (*batchTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// runs returns, for each batch sent since the last call, how many of its
// statements wrote a run of parts and how many a single part.
func (b *batchTracer) runs() (out [][2]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, batch := range b.batches {
		var r [2]int
		for _, sql := range batch {
			switch {
			case strings.HasPrefix(sql, "WITH i AS"):
				r[0]++
			case strings.HasPrefix(sql, "WITH s AS"):
				r[1]++
			}
		}
		out = append(out, r)
	}
	b.batches = nil
	return out
}

// newTracedStore returns a store on a fresh, migrated database whose pool
// records its batches, and the pool.
func newTracedStore(t *testing.T, notifier bool) (*postgres.Store, *pgxpool.Pool, *batchTracer) {
	t.Helper()
	base := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(t.Context(), base))
	cfg := base.Config().Copy()
	tr := &batchTracer{}
	cfg.ConnConfig.Tracer = tr
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	c := &postgres.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if notifier {
		n, err := postgres.NewNotifier(pool, nil)
		require.NoError(t, err)
		c.Notifier = n
	}
	s, err := postgres.New(pool, c)
	require.NoError(t, err)
	return s, pool, tr
}

// seed appends n events to each stream and returns their results.
func seed(t *testing.T, s store.EventStore, n int, streams ...store.StreamID) map[store.StreamID]store.AppendResult {
	t.Helper()
	out := make(map[store.StreamID]store.AppendResult)
	for _, st := range streams {
		res, err := s.AppendToStream(t.Context(), st, events("Seeded", n), store.AppendOptions{ExpectedVersion: store.NoStream})
		require.NoError(t, err)
		out[st] = res
	}
	return out
}

// requireLast checks that res is the result of the stream's last append:
// its version and the global position of its last message.
func requireLast(t *testing.T, pool *pgxpool.Pool, stream store.StreamID, res store.AppendResult) {
	t.Helper()
	var version, global int64
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT max(stream_position), max(global_position) FROM messages
WHERE stream_id = $1 AND partition = $2 AND NOT is_archived`, string(stream), store.DefaultPartition).Scan(&version, &global))
	require.Equal(t, store.Version(version), res.NextExpectedVersion, "stream %q", stream)
	require.Equal(t, store.GlobalPosition(global), res.LastGlobalPosition, "stream %q", stream)
}

// Consecutive parts to existing streams share one statement, which refuses
// stale versions and incarnations part by part without failing the others;
// a part to a new stream goes alone between two runs, in the same
// transaction.
func TestAppendBatchRuns(t *testing.T) {
	t.Parallel()
	for _, notifier := range []bool{false, true} {
		name := map[bool]string{false: "pg_notify", true: "notifier"}[notifier]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, pool, tr := newTracedStore(t, notifier)
			ctx := t.Context()
			seeded := seed(t, s, 2, "a-ok", "b-stale", "c-exists", "e-ok", "f-incarnation", "g-any")
			tr.runs()

			var conn *pgx.Conn
			if !notifier {
				conn = listen(t, pool)
			}
			inc := func(p store.StreamAppend, i store.Incarnation) store.StreamAppend {
				p.Options.Incarnation = i
				return p
			}
			out, err := s.AppendBatch(ctx, []store.StreamAppend{
				inc(batchPart("g-any", store.Any, events("E", 1)...), seeded["g-any"].Incarnation),
				batchPart("a-ok", store.Exact(2), events("E", 1)...),
				inc(batchPart("f-incarnation", store.Exact(2), events("E", 1)...), seeded["f-incarnation"].Incarnation+1000),
				batchPart("b-stale", store.Exact(1), events("E", 1)...),
				batchPart("d-new", store.NoStream, events("E", 2)...),
				batchPart("c-exists", store.StreamExists, events("E", 2)...),
				batchPart("e-ok", store.Exact(2), events("E", 3)...),
			})
			require.NoError(t, err)
			require.Equal(t, [][2]int{{2, 1}}, tr.runs(), "one batch: the runs a-c and e-g, and d alone")

			for i, want := range map[int]store.Version{0: 3, 1: 3, 4: 2, 5: 4, 6: 5} {
				require.NoError(t, out[i].Err, "part %d", i)
				require.Equal(t, want, out[i].Result.NextExpectedVersion, "part %d", i)
				require.Equal(t, out[1].Result.TransactionID, out[i].Result.TransactionID, "part %d", i)
				requireLast(t, pool, []store.StreamID{"g-any", "a-ok", "", "", "d-new", "c-exists", "e-ok"}[i], out[i].Result)
			}
			require.Equal(t, i64(seeded["a-ok"].Incarnation), i64(out[1].Result.Incarnation))
			require.Equal(t, i64(seeded["g-any"].Incarnation), i64(out[0].Result.Incarnation))
			require.False(t, out[1].Result.CreatedNewStream)
			require.True(t, out[4].Result.CreatedNewStream)
			require.ErrorIs(t, out[2].Err, store.ErrVersionConflict)
			var vc *store.VersionConflictError
			require.ErrorAs(t, out[2].Err, &vc)
			require.True(t, vc.IncarnationChanged())
			requireConflict(t, out[3].Err, "b-stale", store.DefaultPartition, store.Exact(1), 2, true)
			for stream, want := range map[store.StreamID]store.Version{"a-ok": 3, "b-stale": 2, "c-exists": 4, "d-new": 2, "e-ok": 5, "f-incarnation": 2, "g-any": 3} {
				require.Equal(t, want, requireConsistent(t, pool, stream, store.DefaultPartition), stream)
			}
			if conn != nil {
				// One notification per written part, at its last position.
				want := map[store.GlobalPosition]bool{}
				for _, i := range []int{0, 1, 4, 5, 6} {
					want[out[i].Result.LastGlobalPosition] = true
				}
				got := map[store.GlobalPosition]bool{}
				for range want {
					n := nextNotification(t, conn)
					require.Equal(t, store.DefaultPartition, n.Partition)
					got[n.GlobalPosition] = true
				}
				require.Equal(t, want, got)
			}
		})
	}
}

func i64(i store.Incarnation) int64 { return int64(i) }

// A run whose statement raises an error (a missing stream, a stored
// message id) is sent again part by part in the next round: each part gets
// its own outcome (an idempotent retry its original result) and the clean
// parts commit together.
func TestAppendBatchRunFallback(t *testing.T) {
	t.Parallel()
	s, pool, tr := newTracedStore(t, false)
	ctx := t.Context()
	seed(t, s, 1, "a-ok", "c-dup", "e-ok", "other")
	first, err := s.AppendToStream(ctx, "d-retry", withIDs("retry", events("E", 2)), store.AppendOptions{})
	require.NoError(t, err)
	_, err = s.AppendToStream(ctx, "other", withIDs("taken", events("E", 1)), store.AppendOptions{ExpectedVersion: store.Exact(1)})
	require.NoError(t, err)
	tr.runs()

	out, err := s.AppendBatch(ctx, []store.StreamAppend{
		batchPart("a-ok", store.Exact(1), events("E", 1)...),
		batchPart("b-missing", store.Exact(1), events("E", 1)...),
		batchPart("c-dup", store.Exact(1), withIDs("taken", events("E", 1))...),
		batchPart("d-retry", store.StreamExists, withIDs("retry", events("E", 2))...),
		batchPart("e-ok", store.StreamExists, events("E", 2)...),
	})
	require.NoError(t, err)
	runs := tr.runs()
	require.Equal(t, [2]int{1, 0}, runs[0], "the first round is one statement")
	require.Greater(t, len(runs), 1)
	for _, r := range runs[1:] {
		require.Zero(t, r[0], "the next rounds send every part alone")
		require.NotZero(t, r[1])
	}

	require.NoError(t, out[0].Err)
	requireConflict(t, out[1].Err, "b-missing", store.DefaultPartition, store.Exact(1), 0, false)
	require.ErrorIs(t, out[2].Err, store.ErrDuplicateMessageID)
	require.NoError(t, out[3].Err)
	require.Equal(t, first, out[3].Result, "an idempotent retry gets the original result")
	require.NoError(t, out[4].Err)
	require.Equal(t, out[0].Result.TransactionID, out[4].Result.TransactionID)
	for stream, want := range map[store.StreamID]store.Version{"a-ok": 2, "b-missing": 0, "c-dup": 1, "d-retry": 2, "e-ok": 3} {
		require.Equal(t, want, requireConsistent(t, pool, stream, store.DefaultPartition), stream)
	}
}
