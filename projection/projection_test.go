package projection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// fastConfig is a projection config with short intervals for tests.
func fastConfig(name string, pool *pgxpool.Pool) Config {
	return Config{
		Name:               name,
		Pool:               pool,
		PollInterval:       200 * time.Millisecond,
		LeaseRetryInterval: 50 * time.Millisecond,
		Retry:              RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		Logger:             quietLogger,
	}
}

var quietLogger = slog.New(slog.NewTextHandler(logSink(), nil))

func logSink() io.Writer {
	if os.Getenv("PROJECTION_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func newProjection(t testing.TB, cfg Config) *Projection {
	t.Helper()
	p, err := New(cfg)
	require.NoError(t, err)
	return p
}

// start starts p and stops it at the end of the test.
func start(t testing.TB, p *Projection) {
	t.Helper()
	require.NoError(t, p.Start(testCtx(t)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, p.Stop(ctx))
	})
}

func waitFor(t testing.TB, p *Projection, pos store.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	require.NoError(t, p.WaitFor(ctx, pos))
}

func localState(p *Projection) State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// secondPool opens another pool on pool's database, as another process
// would.
func secondPool(t testing.TB, pool *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	p2, err := pgxpool.New(testCtx(t), pool.Config().ConnString())
	require.NoError(t, err)
	t.Cleanup(p2.Close)
	return p2
}

// lastPosition returns the position of the last event in the log.
func lastPosition(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) store.Position {
	t.Helper()
	evs := readAllEvents(t, pool, es, partition)
	require.NotEmpty(t, evs)
	return evs[len(evs)-1].Position()
}

func TestProjectionCatchesUpAndFollows(t *testing.T) {
	t.Parallel()
	for _, storage := range storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := newDB(t)
			createCartTable(t, pool, "carts", storage)
			createAppliedTable(t, pool)
			var mapped atomic.Int64
			sp := cartProjection(t, "carts", storage, &mapped)
			seedCarts(t, es, "tenant-a", 40, 5)
			seedCarts(t, es, "tenant-b", 10, 2)

			cfg := fastConfig("carts", pool)
			cfg.BatchSize = 64
			cfg.BatchHandlers = []BatchHandler{sp, countBatch{"p"}}
			p := newProjection(t, cfg)
			start(t, p)
			waitFor(t, p, lastPosition(t, pool, es, ""))
			requireReadModelMatchesLog(t, pool, es, "carts", storage, "")
			requireAppliedOnce(t, pool, es, "")
			require.EqualValues(t, 40*6+10*3, mapped.Load())

			// It follows new events.
			var pos store.Position
			for i := 0; i < 5; i++ {
				cart := fmt.Sprintf("cart-%d", i)
				pos = appendCart(t, es, "tenant-a", cart, cartEvent(typeAdded, cart, "new", 1)).LastPosition()
			}
			waitFor(t, p, pos)
			requireReadModelMatchesLog(t, pool, es, "carts", storage, "")
			requireAppliedOnce(t, pool, es, "")

			st, err := p.Status(testCtx(t))
			require.NoError(t, err)
			require.Equal(t, StateRunning, st.State)
			require.Equal(t, StateRunning, st.Local)
			require.True(t, st.Active)
			require.Equal(t, pos, st.Checkpoint)
			require.Equal(t, pos, st.LastEvent)
			require.Zero(t, st.LagEvents)
			require.Zero(t, st.Lag)
			require.Equal(t, AllPartitions, st.Partition)
		})
	}
}

func TestProjectionWakesOnNotify(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createAppliedTable(t, pool)
	cfg := fastConfig("notified", pool)
	cfg.PollInterval = time.Hour // only a notification can wake it up
	cfg.BatchHandlers = []BatchHandler{countBatch{"p"}}
	p := newProjection(t, cfg)
	start(t, p)
	eventually(t, 30*time.Second, "the projection to hold its lease", func() bool { return localState(p) == StateRunning })
	for i := 0; i < 3; i++ {
		pos := appendCart(t, es, "", "c1", cartEvent(typeAdded, "c1", "x", 1)).LastPosition()
		ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
		require.NoError(t, p.WaitFor(ctx, pos), "woken by NOTIFY")
		cancel()
	}
	requireAppliedOnce(t, pool, es, "")
}

func TestProjectionContention(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createCartTable(t, pool, "carts", SnapshotInTable)
	createAppliedTable(t, pool)
	sp := cartProjection(t, "carts", SnapshotInTable, nil)
	cfg := fastConfig("contention", pool)
	cfg.BatchSize = 50
	cfg.BatchHandlers = []BatchHandler{sp, countBatch{"p"}}
	p := newProjection(t, cfg)
	start(t, p)

	// 16 writers append with random commit delays; about one session in
	// five rolls back.
	const writers, sessions, carts = 16, 25, 20
	var (
		mu        sync.Mutex
		committed []store.Position
		wg        sync.WaitGroup
		rollback  = errors.New("rollback")
	)
	ctx := testCtx(t)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; i < sessions; i++ {
				cart := fmt.Sprintf("cart-%d", rng.IntN(carts))
				var evs []store.EventData
				for k := 0; k <= rng.IntN(3); k++ {
					typ := typeAdded
					if rng.IntN(4) == 0 {
						typ = typeRemoved
					}
					evs = append(evs, cartEvent(typ, cart, fmt.Sprintf("sku-%d", rng.IntN(3)), 1+rng.IntN(3)))
				}
				delay := time.Duration(rng.IntN(3000)) * time.Microsecond
				abort := rng.IntN(5) == 0
				var res store.AppendResult
				err := es.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
					var err error
					res, err = s.AppendToStream(ctx, store.StreamID(cart), evs, store.AppendOptions{Partition: "tenant-a"})
					if err != nil {
						return err
					}
					time.Sleep(delay) // hold the transaction open: commit late
					if abort {
						return rollback
					}
					return nil
				})
				switch {
				case errors.Is(err, rollback):
				case err != nil:
					errs <- err
					return
				default:
					mu.Lock()
					committed = append(committed, res.LastPosition())
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NotEmpty(t, committed)
	var last store.Position
	for _, pos := range committed {
		if last.Less(pos) {
			last = pos
		}
	}
	waitFor(t, p, last)
	requireReadModelMatchesLog(t, pool, es, "carts", SnapshotInTable, "")
	requireAppliedOnce(t, pool, es, "")
}

// blockAt returns a batch handler that, the first time it sees the event
// at global position at, reports the connection's backend pid on reached
// and then blocks until release is closed or ctx ends.
type blockAt struct {
	at      store.GlobalPosition
	once    sync.Once
	reached chan uint32
	release chan struct{}
}

func (b *blockAt) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	for _, e := range events {
		if e.GlobalPosition != b.at {
			continue
		}
		block := false
		b.once.Do(func() { block = true })
		if !block {
			return nil
		}
		b.reached <- tx.Conn().PgConn().PID()
		select {
		case <-b.release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func TestProjectionCrashMidBatch(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"cancel", "drop-connection"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			pool, es := newDB(t)
			createCartTable(t, pool, "carts", SnapshotInRow)
			createAppliedTable(t, pool)
			sp := cartProjection(t, "carts", SnapshotInRow, nil)
			seedCarts(t, es, "", 20, 4) // 100 events
			events := readAllEvents(t, pool, es, "")
			blocker := &blockAt{at: events[70].GlobalPosition, reached: make(chan uint32, 1), release: make(chan struct{})}
			cfg := fastConfig("crash", pool)
			cfg.BatchSize = 50 // the second batch (events 50..99) is in flight when it crashes
			cfg.BatchHandlers = []BatchHandler{sp, countBatch{"p"}, blocker}
			p := newProjection(t, cfg)

			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			pid := <-blocker.reached

			// The batch's writes are in its open transaction only.
			cp := loadCP(t, pool, "crash", AllPartitions)
			require.True(t, cp.Less(events[70].Position()))
			requireAppliedUpTo(t, pool, cp)
			switch how {
			case "cancel":
				cancel() // the process dies mid-batch
				require.NoError(t, <-done)
				require.Equal(t, cp, loadCP(t, pool, "crash", AllPartitions))
				requireAppliedUpTo(t, pool, cp)
				// Restart.
				close(blocker.release)
				ctx2, cancel2 := context.WithCancel(testCtx(t))
				defer cancel2()
				done = make(chan error, 1)
				go func() { done <- p.Run(ctx2) }()
				waitFor(t, p, events[99].Position())
				cancel2()
				require.NoError(t, <-done)
			case "drop-connection":
				_, err := pool.Exec(testCtx(t), `SELECT pg_terminate_backend($1)`, pid)
				require.NoError(t, err)
				close(blocker.release) // its writes fail now: the connection is gone
				waitFor(t, p, events[99].Position())
				cancel()
				require.NoError(t, <-done)
			}
			requireReadModelMatchesLog(t, pool, es, "carts", SnapshotInRow, "")
			requireAppliedOnce(t, pool, es, "")
		})
	}
}

// requireAppliedUpTo checks that the events applied are exactly those up
// to cp, each once, and returns their number.
func requireAppliedUpTo(t testing.TB, pool *pgxpool.Pool, cp store.Position) int {
	t.Helper()
	var upTo, applied, wrong int
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM messages WHERE (transaction_id, global_position) <= ($1::xid8, $2)`,
		cp.TransactionID, int64(cp.GlobalPosition)).Scan(&upTo))
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*), count(*) FILTER (WHERE n <> 1 OR m.message_id IS NULL
    OR (m.transaction_id, m.global_position) > ($1::xid8, $2))
FROM applied a LEFT JOIN messages m ON m.message_id = a.message_id`, cp.TransactionID, int64(cp.GlobalPosition)).Scan(&applied, &wrong))
	require.Equal(t, upTo, applied)
	require.Zero(t, wrong)
	return applied
}

// leaseHolder returns the pid of the backend holding the projection's
// lease, or 0.
func leaseHolder(t testing.TB, pool *pgxpool.Pool, p *Projection) int {
	t.Helper()
	var pid int
	err := pool.QueryRow(testCtx(t), `WITH k AS (SELECT hashtextextended($1, 0) AS v)
SELECT l.pid FROM pg_locks l, k WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = ((k.v >> 32) & 4294967295) AND l.objid::bigint = (k.v & 4294967295)`, p.lockKey).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	require.NoError(t, err)
	return pid
}

func owners(t testing.TB, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(testCtx(t), `SELECT owner, count(*) FROM applied GROUP BY owner`)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var o string
		var n int
		require.NoError(t, rows.Scan(&o, &n))
		out[o] = n
	}
	require.NoError(t, rows.Err())
	return out
}

func TestProjectionOneActiveRunnerAndTakeover(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createAppliedTable(t, pool)
	poolB := secondPool(t, pool) // another process

	cfgA := fastConfig("shared", pool)
	cfgA.BatchSize = 20
	cfgA.BatchHandlers = []BatchHandler{countBatch{"A"}}
	a := newProjection(t, cfgA)
	cfgB := cfgA
	cfgB.Pool = poolB
	cfgB.BatchHandlers = []BatchHandler{countBatch{"B"}}
	b := newProjection(t, cfgB)

	require.NoError(t, a.Start(testCtx(t)))
	eventually(t, 30*time.Second, "A to hold the lease", func() bool { return localState(a) == StateRunning })
	start(t, b)
	eventually(t, 30*time.Second, "B to stand by", func() bool { return localState(b) == StateStandby })

	pos := seedCarts(t, es, "", 30, 3)
	waitFor(t, a, pos)
	// A standby's WaitFor follows the stored checkpoint.
	waitFor(t, b, pos)
	require.Equal(t, map[string]int{"A": 120}, owners(t, pool))
	st, err := b.Status(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, StateRunning, st.State)
	require.True(t, st.Active)
	require.Equal(t, StateStandby, st.Local)

	// A stops: B takes over and finishes what is appended next.
	require.NoError(t, a.Stop(testCtx(t)))
	pos = seedCarts(t, es, "", 10, 1)
	waitFor(t, b, pos)
	require.Equal(t, StateRunning, localState(b))
	require.Equal(t, map[string]int{"A": 120, "B": 20}, owners(t, pool))
	requireAppliedOnce(t, pool, es, "")
}

func TestProjectionTakeoverWhenOwnerConnectionDies(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createAppliedTable(t, pool)
	poolB := secondPool(t, pool)
	cfgA := fastConfig("shared", pool)
	cfgA.BatchSize = 10
	cfgA.BatchHandlers = []BatchHandler{countBatch{"A"}}
	a := newProjection(t, cfgA)
	cfgB := cfgA
	cfgB.Pool = poolB
	cfgB.BatchHandlers = []BatchHandler{countBatch{"B"}}
	b := newProjection(t, cfgB)
	start(t, a)
	eventually(t, 30*time.Second, "A to hold the lease", func() bool { return localState(a) == StateRunning })
	start(t, b)
	pos := seedCarts(t, es, "", 5, 1)
	waitFor(t, a, pos)

	// A's lease connection dies (as when its process is killed): the lock
	// is released and one of the runners takes the projection over.
	holder := leaseHolder(t, pool, a)
	require.NotZero(t, holder)
	_, err := pool.Exec(testCtx(t), `SELECT pg_terminate_backend($1)`, holder)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "a new lease holder", func() bool {
		h := leaseHolder(t, pool, a)
		return h != 0 && h != holder
	})
	pos = seedCarts(t, es, "", 20, 2)
	eventually(t, time.Minute, "the new events to be applied", func() bool {
		return !loadCP(t, pool, "shared", AllPartitions).Less(pos)
	})
	requireAppliedOnce(t, pool, es, "")
	// Exactly one of them is active.
	eventually(t, 30*time.Second, "one active runner", func() bool {
		sa, sb := localState(a), localState(b)
		return (sa == StateRunning) != (sb == StateRunning)
	})
}

// poisonHandler fails every time on the event with message id bad.
func poisonHandler(bad *atomic.Value, calls *atomic.Int64) Handler {
	return func(_ context.Context, _ pgx.Tx, e store.Event) error {
		if id, _ := bad.Load().(string); id == e.MessageID {
			calls.Add(1)
			return fmt.Errorf("cannot handle %s", e.MessageID)
		}
		return nil
	}
}

func TestProjectionPoisonEventStopPolicy(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createAppliedTable(t, pool)
	seedCarts(t, es, "", 10, 2) // 30 events
	events := readAllEvents(t, pool, es, "")
	poison := events[15]
	var bad atomic.Value
	bad.Store(poison.MessageID)
	var calls atomic.Int64
	cfg := fastConfig("poison", pool)
	cfg.BatchSize = 10
	cfg.Handlers = Registry{typeOpened: {poisonHandler(&bad, &calls)}, typeAdded: {poisonHandler(&bad, &calls)}}
	cfg.BatchHandlers = []BatchHandler{countBatch{"p"}}
	p := newProjection(t, cfg)

	err := p.Run(testCtx(t))
	require.ErrorIs(t, err, ErrHandlerFailed)
	var he *HandlerError
	require.ErrorAs(t, err, &he)
	require.Equal(t, poison.MessageID, he.Event.MessageID)
	require.Equal(t, 3, he.Attempts)
	// The failed batch (unless the poison event came alone), then three
	// attempts alone.
	require.GreaterOrEqual(t, calls.Load(), int64(3))
	require.LessOrEqual(t, calls.Load(), int64(4))
	require.ErrorContains(t, he, "cannot handle")
	require.Equal(t, he, p.Err())

	// Stopped at the event: everything before it applied, nothing after.
	require.Equal(t, events[14].Position(), loadCP(t, pool, "poison", AllPartitions))
	var n int
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM applied`).Scan(&n))
	require.Equal(t, 15, n)

	st, err := p.Status(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, StateFailed, st.State)
	require.Equal(t, StateFailed, st.Local)
	require.False(t, st.Active)
	require.Contains(t, st.Error, "cannot handle")
	require.NotNil(t, st.FailedEvent)
	require.Equal(t, FailedEvent{Partition: poison.Partition, Position: poison.Position(), StreamID: poison.StreamID,
		StreamPosition: poison.StreamPosition, MessageID: poison.MessageID, Type: poison.Type}, *st.FailedEvent)
	require.EqualValues(t, 15, st.LagEvents)

	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	err = p.WaitFor(ctx, events[29].Position())
	require.ErrorIs(t, err, ErrFailed)
	require.ErrorIs(t, err, ErrHandlerFailed)

	// Fixed, it starts again from the failing event.
	bad.Store("")
	start(t, p)
	waitFor(t, p, events[29].Position())
	requireAppliedOnce(t, pool, es, "")
	st, err = p.Status(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, StateRunning, st.State)
	require.Empty(t, st.Error)
	require.Nil(t, st.FailedEvent)
}

func TestProjectionPoisonEventSkipPolicy(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createAppliedTable(t, pool)
	seedCarts(t, es, "tenant-a", 10, 2)
	events := readAllEvents(t, pool, es, "")
	poison := events[15]
	var bad atomic.Value
	bad.Store(poison.MessageID)
	var calls atomic.Int64
	cfg := fastConfig("skipper", pool)
	cfg.BatchSize = 10
	cfg.OnFailure = FailSkip
	cfg.BatchHandlers = []BatchHandler{countBatch{"p"}}
	cfg.Handlers = Registry{typeOpened: {poisonHandler(&bad, &calls)}, typeAdded: {poisonHandler(&bad, &calls)}}
	p := newProjection(t, cfg)
	start(t, p)
	waitFor(t, p, events[29].Position())

	var (
		id, typ, msg, part, scope string
		attempts                  int
		gp                        int64
		data                      string
	)
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT message_id, message_type, error, partition, scope, attempts,
global_position, message_data::text FROM projection_dead_letters WHERE projection = 'skipper'`).
		Scan(&id, &typ, &msg, &part, &scope, &attempts, &gp, &data))
	require.Equal(t, poison.MessageID, id)
	require.Equal(t, poison.Type, typ)
	require.Contains(t, msg, "cannot handle")
	require.Equal(t, "tenant-a", part)
	require.Equal(t, AllPartitions, scope)
	require.Equal(t, 3, attempts)
	require.EqualValues(t, poison.GlobalPosition, gp)
	require.JSONEq(t, string(poison.Data), data)

	// Everything else is applied, once; the poison event's writes are not.
	var n int
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM applied`).Scan(&n))
	require.Equal(t, 29, n)
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM applied WHERE message_id = $1`, poison.MessageID).Scan(&n))
	require.Zero(t, n)
	require.Equal(t, StateRunning, localState(p))
}

func TestProjectionReadYourWrites(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createCartTable(t, pool, "carts", SnapshotInTable)
	sp := cartProjection(t, "carts", SnapshotInTable, nil)
	cfg := fastConfig("ryw", pool)
	cfg.PollInterval = 10 * time.Second
	cfg.BatchHandlers = []BatchHandler{sp}
	p := newProjection(t, cfg)

	// Not running: the wait ends with its context.
	pos := appendCart(t, es, "", "c1", cartEvent(typeOpened, "c1", "", 0)).LastPosition()
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	err := p.WaitFor(ctx, pos)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	start(t, p)
	for i := 1; i <= 10; i++ {
		// The "command" returns the position of its last event...
		pos := appendCart(t, es, "", "c1", cartEvent(typeAdded, "c1", "x", 1)).LastPosition()
		ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
		require.NoError(t, p.WaitFor(ctx, pos))
		cancel()
		// ...and once WaitFor returns, the read model shows its effect.
		var count int
		require.NoError(t, pool.QueryRow(testCtx(t), `SELECT item_count FROM carts WHERE cart_id = 'c1'`).Scan(&count))
		require.Equal(t, i, count)
	}
}

func TestProjectionPartition(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createCartTable(t, pool, "carts", SnapshotInRow)
	createAppliedTable(t, pool)
	sp := cartProjection(t, "carts", SnapshotInRow, nil)
	seedCarts(t, es, "tenant-a", 5, 2)
	seedCarts(t, es, "tenant-b", 7, 2)
	cfg := fastConfig("carts-a", pool)
	cfg.Partition = "tenant-a"
	cfg.BatchHandlers = []BatchHandler{sp, countBatch{"p"}}
	p := newProjection(t, cfg)
	require.Equal(t, "tenant-a", p.Partition())
	start(t, p)
	waitFor(t, p, lastPosition(t, pool, es, "tenant-a"))
	requireReadModelMatchesLog(t, pool, es, "carts", SnapshotInRow, "tenant-a")
	requireAppliedOnce(t, pool, es, "tenant-a")
	// The checkpoint is the partition's.
	require.Equal(t, lastPosition(t, pool, es, "tenant-a"), loadCP(t, pool, "carts-a", "tenant-a"))

	// Notifications of other partitions are not its business; its own are.
	pos := appendCart(t, es, "tenant-a", "late", cartEvent(typeOpened, "late", "", 0)).LastPosition()
	appendCart(t, es, "tenant-b", "late", cartEvent(typeOpened, "late", "", 0))
	waitFor(t, p, pos)
	st, err := p.Status(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "tenant-a", st.Partition)
	require.Zero(t, st.LagEvents)
	requireReadModelMatchesLog(t, pool, es, "carts", SnapshotInRow, "tenant-a")
}

func TestProjectionStatusAndLag(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	ctx := testCtx(t)
	st, err := LoadStatus(ctx, pool, "lagging", "")
	require.NoError(t, err)
	require.Equal(t, Status{Name: "lagging", Partition: AllPartitions, State: StateStopped}, st)

	last := seedCarts(t, es, "", 4, 4)
	readAllEvents(t, pool, es, "") // visible
	st, err = LoadStatus(ctx, pool, "lagging", "")
	require.NoError(t, err)
	require.Equal(t, StateStopped, st.State)
	require.False(t, st.Active)
	require.Equal(t, store.Position{}, st.Checkpoint)
	require.Equal(t, last, st.LastEvent)
	require.EqualValues(t, 20, st.LagEvents)
	require.Positive(t, st.Lag)
	require.False(t, st.LastEventCreated.IsZero())

	cfg := fastConfig("lagging", pool)
	p := newProjection(t, cfg)
	start(t, p)
	waitFor(t, p, last)
	eventually(t, 30*time.Second, "status running", func() bool {
		st, err = LoadStatus(ctx, pool, "lagging", AllPartitions)
		require.NoError(t, err)
		return st.State == StateRunning
	})
	require.True(t, st.Active)
	require.Equal(t, last, st.Checkpoint)
	require.Zero(t, st.LagEvents)
	require.Zero(t, st.Lag)
	require.NotEmpty(t, st.Owner)
	require.False(t, st.Updated.IsZero())

	require.NoError(t, p.Stop(ctx))
	st, err = LoadStatus(ctx, pool, "lagging", "")
	require.NoError(t, err)
	require.Equal(t, StateStopped, st.State)
	require.False(t, st.Active)
	require.Equal(t, last, st.Checkpoint)
}

func TestProjectionRebuild(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createCartTable(t, pool, "carts", SnapshotInTable)
	createAppliedTable(t, pool)
	sp := cartProjection(t, "carts", SnapshotInTable, nil)
	seedCarts(t, es, "", 20, 4) // 100 events
	cfg := fastConfig("rebuilt", pool)
	cfg.BatchSize = 10
	cfg.BatchHandlers = []BatchHandler{sp, countBatch{"p"}}
	cfg.Reset = func(ctx context.Context, tx pgx.Tx, partition string) error {
		if partition != AllPartitions {
			return fmt.Errorf("unexpected partition %q", partition)
		}
		_, err := tx.Exec(ctx, `DELETE FROM applied`)
		return err
	}
	p := newProjection(t, cfg)
	start(t, p)
	last := lastPosition(t, pool, es, "")
	waitFor(t, p, last)

	// The read model drifts (a bug, a manual edit): rebuild it.
	_, err := pool.Exec(testCtx(t), `UPDATE carts SET item_count = -1`)
	require.NoError(t, err)
	var progress []RebuildProgress
	var states []State
	require.NoError(t, p.Rebuild(testCtx(t), RebuildOptions{Progress: func(pr RebuildProgress) {
		progress = append(progress, pr)
		states = append(states, localState(p))
	}}))
	require.Equal(t, RebuildProgress{Done: 0, Total: 100}, progress[0])
	require.Equal(t, RebuildProgress{Done: 100, Total: 100}, progress[len(progress)-1])
	require.GreaterOrEqual(t, len(progress), 11)
	for i := 1; i < len(progress); i++ {
		require.LessOrEqual(t, progress[i-1].Done, progress[i].Done)
	}
	require.Equal(t, StateRebuilding, states[0])
	requireReadModelMatchesLog(t, pool, es, "carts", SnapshotInTable, "")
	requireAppliedOnce(t, pool, es, "")
	require.Equal(t, StateRunning, localState(p))
	st, err := p.Status(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, StateRunning, st.State)

	// It keeps following the log afterwards.
	pos := appendCart(t, es, "", "cart-0", cartEvent(typeAdded, "cart-0", "y", 2)).LastPosition()
	waitFor(t, p, pos)
	requireReadModelMatchesLog(t, pool, es, "carts", SnapshotInTable, "")
}

func TestProjectionRebuildCancelled(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	createCartTable(t, pool, "carts", SnapshotInRow)
	createAppliedTable(t, pool)
	sp := cartProjection(t, "carts", SnapshotInRow, nil)
	seedCarts(t, es, "", 20, 4)
	cfg := fastConfig("rebuilt", pool)
	cfg.BatchSize = 10
	cfg.BatchHandlers = []BatchHandler{sp, countBatch{"p"}}
	cfg.Reset = func(ctx context.Context, tx pgx.Tx, _ string) error {
		_, err := tx.Exec(ctx, `DELETE FROM applied`)
		return err
	}
	p := newProjection(t, cfg)
	last := lastPosition(t, pool, es, "")

	// Not running: Rebuild runs it; cancelled after three batches.
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	err := p.Rebuild(ctx, RebuildOptions{Progress: func(pr RebuildProgress) {
		if pr.Done >= 30 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	cp := loadCP(t, pool, "rebuilt", AllPartitions)
	require.True(t, cp.Less(last), "stopped before the end")
	// Consistent: the applied events are exactly those up to the checkpoint.
	require.GreaterOrEqual(t, requireAppliedUpTo(t, pool, cp), 30)
	require.Equal(t, StateStopped, localState(p))

	// A later run finishes the job.
	start(t, p)
	waitFor(t, p, last)
	requireReadModelMatchesLog(t, pool, es, "carts", SnapshotInRow, "")
	requireAppliedOnce(t, pool, es, "")
}

func TestProjectionStartStop(t *testing.T) {
	t.Parallel()
	pool, _ := newDB(t)
	p := newProjection(t, fastConfig("ss", pool))
	require.NoError(t, p.Stop(testCtx(t)), "stopping a stopped projection")
	require.NoError(t, p.Start(testCtx(t)))
	require.ErrorIs(t, p.Start(testCtx(t)), ErrAlreadyRunning)
	require.ErrorIs(t, p.Run(testCtx(t)), ErrAlreadyRunning)
	require.NoError(t, p.Stop(testCtx(t)))
	require.Equal(t, StateStopped, localState(p))
	require.NoError(t, p.Start(testCtx(t)), "restart")
	require.NoError(t, p.Stop(testCtx(t)))
	require.Equal(t, "ss", p.Name())
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	pool, _ := newDB(t)
	base := Config{Name: "x", Pool: pool}
	cases := map[string]func(*Config){
		"Config.Name":                 func(c *Config) { c.Name = "" },
		"Config.Pool":                 func(c *Config) { c.Pool = nil },
		"Config.BatchSize":            func(c *Config) { c.BatchSize = -1 },
		"Config.PollInterval":         func(c *Config) { c.PollInterval = -1 },
		"Config.LeaseRetryInterval":   func(c *Config) { c.LeaseRetryInterval = -1 },
		"Config.Retry.MaxAttempts":    func(c *Config) { c.Retry.MaxAttempts = -1 },
		"Config.Retry.InitialBackoff": func(c *Config) { c.Retry.InitialBackoff = -1 },
		"Config.Retry.MaxBackoff":     func(c *Config) { c.Retry.MaxBackoff = -1 },
		"Config.OnFailure":            func(c *Config) { c.OnFailure = 9 },
		"Config.Partition":            func(c *Config) { c.Partition = "bad partition" },
		"Config.BatchHandlers[0]":     func(c *Config) { c.BatchHandlers = []BatchHandler{nil} },
	}
	for field, mutate := range cases {
		cfg := base
		mutate(&cfg)
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, field)
		require.ErrorContains(t, err, field)
	}
	p, err := New(base)
	require.NoError(t, err)
	require.Equal(t, DefaultBatchSize, p.cfg.BatchSize)
	require.Equal(t, DefaultPollInterval, p.cfg.PollInterval)
	require.Equal(t, DefaultLeaseRetryInterval, p.cfg.LeaseRetryInterval)
	require.Equal(t, RetryPolicy{MaxAttempts: DefaultMaxAttempts, InitialBackoff: DefaultInitialBackoff, MaxBackoff: DefaultMaxBackoff}, p.cfg.Retry)
	require.Equal(t, FailStop, p.cfg.OnFailure)
	require.IsType(t, &postgres.Store{}, p.store)
}

// A transaction that took its id first but waited for a stream's lock
// commits the stream's later event under the smaller transaction id: the
// global log (commit order) then holds the stream's events out of order.
// A snapshot projection must still fold them in stream order.
func TestProjectionStreamOrderInversion(t *testing.T) {
	t.Parallel()
	for _, storage := range storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := newDB(t)
			ctx := testCtx(t)
			createCartTable(t, pool, "carts", storage)
			createAppliedTable(t, pool)

			older := make(chan struct{})
			appendedA := make(chan struct{})
			doneB := make(chan error, 1)
			go func() {
				doneB <- es.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
					// Take a transaction id now, with another stream.
					if _, err := s.AppendToStream(ctx, "other", []store.EventData{cartEvent(typeOpened, "other", "", 0)}, store.AppendOptions{}); err != nil {
						return err
					}
					close(older)
					<-appendedA
					// Waits for A's lock on c1, then appends after it.
					_, err := s.AppendToStream(ctx, "c1", []store.EventData{cartEvent(typeRemoved, "c1", "x", 1)}, store.AppendOptions{})
					return err
				})
			}()
			<-older
			require.NoError(t, es.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
				if _, err := s.AppendToStream(ctx, "c1", []store.EventData{cartEvent(typeAdded, "c1", "x", 1)}, store.AppendOptions{}); err != nil {
					return err
				}
				close(appendedA)
				waitForLockWait(t, pool)
				return nil
			}))
			require.NoError(t, <-doneB)

			events := readAllEvents(t, pool, es, "")
			require.Len(t, events, 3)
			require.Equal(t, store.StreamID("c1"), events[1].StreamID)
			require.EqualValues(t, 2, events[1].StreamPosition, "the log holds c1's second event first")
			require.EqualValues(t, 1, events[2].StreamPosition)

			sp := cartProjection(t, "carts", storage, nil)
			for _, batch := range []int{1, 10} { // across batches, then within one
				name := fmt.Sprintf("inv-%d", batch)
				_, err := pool.Exec(ctx, `TRUNCATE carts; TRUNCATE applied; DELETE FROM snapshots`)
				require.NoError(t, err)
				cfg := fastConfig(name, pool)
				cfg.BatchSize = batch
				cfg.BatchHandlers = []BatchHandler{sp, countBatch{"p"}}
				p := newProjection(t, cfg)
				start(t, p)
				waitFor(t, p, events[2].Position())
				require.NoError(t, p.Stop(ctx))
				got := readCarts(t, pool, "carts", storage)["default_partition/c1"]
				require.Equal(t, cartState{Items: map[string]int{}, Applied: 2}, got.State, "batch size %d", batch)
				requireReadModelMatchesLog(t, pool, es, "carts", storage, "")
				requireAppliedOnce(t, pool, es, "")
			}
		})
	}
}
