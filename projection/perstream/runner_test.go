package perstream_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/perstream"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// recorder is a handler recording the events it got, in order, with a name.
type recorder struct {
	mu    sync.Mutex
	calls []string // "name:type@position"
}

func (r *recorder) handler(name string) projection.Handler {
	return func(_ context.Context, tx pgx.Tx, e store.Event) error {
		if tx == nil {
			return errors.New("no transaction")
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls = append(r.calls, fmt.Sprintf("%s:%s@%d", name, e.Type, e.StreamPosition))
		return nil
	}
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func streamCheckpoint(t *testing.T, pool *pgxpool.Pool, sub, partition, stream string) (int64, bool) {
	t.Helper()
	var pos int64
	err := pool.QueryRow(projtest.Ctx(t), `SELECT last_processed_position FROM projection_stream_checkpoints
WHERE subscription_id = $1 AND partition = $2 AND stream_id = $3`, sub, partition, stream).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false
	}
	require.NoError(t, err)
	return pos, true
}

func TestRunnerProjectsEventsWithHandlers(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.AppendCart(t, es, "tenant-a", "c1",
		projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1), projtest.CartEvent(projtest.TypeNoted, "c1", "", 0))

	rec := &recorder{}
	r, err := perstream.New(pool, &perstream.Config{Registry: projection.Registry{
		projtest.TypeOpened: {rec.handler("h1")},
		projtest.TypeAdded:  {rec.handler("h2"), rec.handler("h3")}, // several handlers, in order
	}})
	require.NoError(t, err)

	res, err := r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.Equal(t, perstream.Result{Processed: 3, CurrentStreamVersion: 3, Checkpoint: 3}, res)
	require.Equal(t, []string{"h1:CartOpened@1", "h2:ItemAdded@2", "h3:ItemAdded@2"}, rec.got())
	// The event with no handler is checkpointed too.
	pos, ok := streamCheckpoint(t, pool, "sub", "tenant-a", "c1")
	require.True(t, ok)
	require.EqualValues(t, 3, pos)

	// Caught up: nothing more is processed or handled.
	res, err = r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.Equal(t, perstream.Result{Processed: 0, CurrentStreamVersion: 3, Checkpoint: 3}, res)
	require.Len(t, rec.got(), 3)
}

func TestRunnerEmptyRegistryAndMissingStream(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	r, err := perstream.New(pool, nil)
	require.NoError(t, err)

	res, err := r.ProjectEvents(ctx, "sub", "missing", perstream.ProjectOptions{})
	require.NoError(t, err)
	require.Equal(t, perstream.Result{}, res)
	// The checkpoint is created, at 0, in the default partition.
	pos, ok := streamCheckpoint(t, pool, "sub", store.DefaultPartition, "missing")
	require.True(t, ok)
	require.Zero(t, pos)

	projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))
	res, err = r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{})
	require.NoError(t, err)
	require.Equal(t, perstream.Result{Processed: 1, CurrentStreamVersion: 1, Checkpoint: 1}, res)
}

func TestRunnerHandlerErrorRollsBack(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.CreateAppliedTable(t, pool)
	projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1), projtest.CartEvent(projtest.TypeAdded, "c1", "y", 1))

	boom := errors.New("boom")
	failing := true
	r, err := perstream.New(pool, &perstream.Config{Registry: projection.Registry{
		projtest.TypeOpened: {projtest.CountHandler("r")},
		projtest.TypeAdded: {projtest.CountHandler("r"), func(_ context.Context, _ pgx.Tx, e store.Event) error {
			if failing && e.StreamPosition == 3 {
				return boom
			}
			return nil
		}},
	}})
	require.NoError(t, err)

	_, err = r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{})
	require.ErrorIs(t, err, boom)
	require.ErrorIs(t, err, projection.ErrHandlerFailed)
	var he *projection.HandlerError
	require.ErrorAs(t, err, &he)
	require.EqualValues(t, 3, he.Event.StreamPosition)
	require.Equal(t, "sub", he.Projection)

	// Rolled back: the checkpoint did not pass the failing event, and the
	// writes of the events before it in the batch are undone.
	pos, _ := streamCheckpoint(t, pool, "sub", store.DefaultPartition, "c1")
	require.Zero(t, pos)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM applied`).Scan(&n))
	require.Zero(t, n)

	failing = false
	res, err := r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{})
	require.NoError(t, err)
	require.Equal(t, 3, res.Processed)
	projtest.RequireAppliedOnce(t, pool, es, "")
}

func TestRunnerCheckpointCreateNeverResets(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))
	rec := &recorder{}
	r, err := perstream.New(pool, &perstream.Config{Registry: projection.Registry{projtest.TypeOpened: {rec.handler("h")}, projtest.TypeAdded: {rec.handler("h")}}})
	require.NoError(t, err)
	_, err = r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{})
	require.NoError(t, err)

	// A second runner (another process) on the same subscription starts
	// from the stored checkpoint, not from zero.
	r2, err := perstream.New(pool, &perstream.Config{Registry: projection.Registry{projtest.TypeOpened: {rec.handler("h2")}, projtest.TypeAdded: {rec.handler("h2")}}})
	require.NoError(t, err)
	res, err := r2.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{})
	require.NoError(t, err)
	require.Zero(t, res.Processed)
	require.Equal(t, []string{"h:CartOpened@1", "h:ItemAdded@2"}, rec.got())
}

func TestRunnerBatchesAndDrain(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	var evs []store.EventData
	for i := 0; i < 23; i++ {
		evs = append(evs, projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))
	}
	projtest.AppendCart(t, es, "", "c1", evs...)
	rec := &recorder{}
	r, err := perstream.New(pool, &perstream.Config{Registry: projection.Registry{projtest.TypeAdded: {rec.handler("h")}}})
	require.NoError(t, err)

	// One call projects at most BatchSize events: checkpoint+1 .. checkpoint+BatchSize.
	res, err := r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{BatchSize: 10})
	require.NoError(t, err)
	require.Equal(t, perstream.Result{Processed: 10, CurrentStreamVersion: 23, Checkpoint: 10}, res)

	res, err = r.Drain(ctx, "sub", "c1", perstream.ProjectOptions{BatchSize: 10})
	require.NoError(t, err)
	require.Equal(t, perstream.Result{Processed: 13, CurrentStreamVersion: 23, Checkpoint: 23}, res)
	require.Len(t, rec.got(), 23)
	for i, c := range rec.got() {
		require.Equal(t, fmt.Sprintf("h:ItemAdded@%d", i+1), c)
	}

	// The default batch size is 500.
	_, err = r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{BatchSize: -1})
	require.ErrorIs(t, err, store.ErrInvalidArgument)
}

func TestRunnerCheckpointsArePerStream(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.AppendCart(t, es, "", "a", projtest.CartEvent(projtest.TypeAdded, "a", "x", 1), projtest.CartEvent(projtest.TypeAdded, "a", "x", 1), projtest.CartEvent(projtest.TypeAdded, "a", "x", 1))
	projtest.AppendCart(t, es, "", "b", projtest.CartEvent(projtest.TypeAdded, "b", "x", 1))
	rec := &recorder{}
	r, err := perstream.New(pool, &perstream.Config{Registry: projection.Registry{projtest.TypeAdded: {rec.handler("h")}}})
	require.NoError(t, err)
	_, err = r.ProjectEvents(ctx, "sub", "a", perstream.ProjectOptions{})
	require.NoError(t, err)
	// Stream b starts from its own checkpoint (0), not stream a's (3).
	res, err := r.ProjectEvents(ctx, "sub", "b", perstream.ProjectOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, res.Processed)
	require.Len(t, rec.got(), 4)
}

func TestRunnerConcurrentCallsDoNotDoubleApply(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.CreateAppliedTable(t, pool)
	var evs []store.EventData
	for i := 0; i < 50; i++ {
		evs = append(evs, projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))
	}
	projtest.AppendCart(t, es, "", "c1", evs...)
	r, err := perstream.New(pool, &perstream.Config{Registry: projection.Registry{projtest.TypeAdded: {projtest.CountHandler("r")}}})
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Drain(ctx, "sub", "c1", perstream.ProjectOptions{BatchSize: 7})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	projtest.RequireAppliedOnce(t, pool, es, "")
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := perstream.New(nil, nil)
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, "perstream.New: db is nil")
}

// handlerID tells handlers apart in registry tests: each handler returns
// an error carrying its id.
func handlerID(id string) projection.Handler {
	return func(context.Context, pgx.Tx, store.Event) error { return errors.New(id) }
}

func ids(hs []projection.Handler) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h(context.Background(), nil, store.Event{}).Error()
	}
	return out
}

func TestMergeRegistries(t *testing.T) {
	t.Parallel()
	require.Equal(t, projection.Registry{}, projection.MergeRegistries())
	require.NotNil(t, projection.MergeRegistries())
	require.Equal(t, projection.Registry{}, projection.MergeRegistries(projection.Registry{}))
	require.Equal(t, projection.Registry{}, projection.MergeRegistries(projection.Registry{}, projection.Registry{}, nil))

	r1 := projection.Registry{"A": {handlerID("1"), handlerID("2")}}
	r2 := projection.Registry{"A": {handlerID("3")}, "B": {handlerID("4")}}
	m := projection.MergeRegistries(projection.Registry{}, r1, projection.Registry{}, r2)
	require.Len(t, m, 2)
	require.Equal(t, []string{"1", "2", "3"}, ids(m["A"]))
	require.Equal(t, []string{"4"}, ids(m["B"]))
	// Argument order decides handler order.
	require.Equal(t, []string{"3", "1", "2"}, ids(projection.MergeRegistries(r2, r1)["A"]))
	// The inputs are not modified.
	require.Equal(t, []string{"1", "2"}, ids(r1["A"]))
	require.Len(t, r2["A"], 1)
}
