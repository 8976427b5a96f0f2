package projection_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/readmodel"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

func TestProjectionCatchesUpAndFollows(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			projtest.CreateAppliedTable(t, pool)
			var mapped atomic.Int64
			sp := projtest.CartProjection(t, "carts", storage, &mapped)
			projtest.SeedCarts(t, es, "tenant-a", 40, 5)
			projtest.SeedCarts(t, es, "tenant-b", 10, 2)

			cfg := projtest.FastConfig("carts")
			cfg.BatchSize = 64
			cfg.BatchHandlers = []projection.BatchHandler{sp, projtest.CountBatch{Owner: "p"}}
			p := projtest.NewProjection(t, pool, cfg)
			projtest.Start(t, p)
			projtest.WaitFor(t, p, projtest.LastPosition(t, pool, es, ""))
			projtest.RequireReadModelMatchesLog(t, pool, es, "carts", storage, "")
			projtest.RequireAppliedOnce(t, pool, es, "")
			require.EqualValues(t, 40*6+10*3, mapped.Load())

			// It follows new events.
			var pos store.Position
			for i := 0; i < 5; i++ {
				cart := fmt.Sprintf("cart-%d", i)
				pos = projtest.AppendCart(t, es, "tenant-a", cart, projtest.CartEvent(projtest.TypeAdded, cart, "new", 1)).LastPosition()
			}
			projtest.WaitFor(t, p, pos)
			projtest.RequireReadModelMatchesLog(t, pool, es, "carts", storage, "")
			projtest.RequireAppliedOnce(t, pool, es, "")

			st, err := p.Status(projtest.Ctx(t))
			require.NoError(t, err)
			require.Equal(t, projection.StateRunning, st.State)
			require.Equal(t, projection.StateRunning, st.Local)
			require.True(t, st.Active)
			require.Equal(t, pos, st.Checkpoint)
			require.Equal(t, pos, st.LastEvent)
			require.Zero(t, st.LagEvents)
			require.Zero(t, st.Lag)
			require.Equal(t, projection.AllPartitions, st.Partition)
		})
	}
}

func TestProjectionWakesOnNotify(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateAppliedTable(t, pool)
	cfg := projtest.FastConfig("notified")
	cfg.PollInterval = time.Hour // only a notification can wake it up
	cfg.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "p"}}
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)
	projtest.Eventually(t, 30*time.Second, "the projection to hold its lease", func() bool { return projtest.LocalState(t, p) == projection.StateRunning })
	for i := 0; i < 3; i++ {
		pos := projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1)).LastPosition()
		ctx, cancel := context.WithTimeout(projtest.Ctx(t), 20*time.Second)
		require.NoError(t, p.WaitFor(ctx, pos), "woken by NOTIFY")
		cancel()
	}
	projtest.RequireAppliedOnce(t, pool, es, "")
}

func TestProjectionContention(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InTable)
	projtest.CreateAppliedTable(t, pool)
	sp := projtest.CartProjection(t, "carts", readmodel.InTable, nil)
	cfg := projtest.FastConfig("contention")
	cfg.BatchSize = 50
	cfg.BatchHandlers = []projection.BatchHandler{sp, projtest.CountBatch{Owner: "p"}}
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)

	// 16 writers append with random commit delays; about one session in
	// five rolls back.
	const writers, sessions, carts = 16, 25, 20
	var (
		mu        sync.Mutex
		committed []store.Position
		wg        sync.WaitGroup
		rollback  = errors.New("rollback")
	)
	ctx := projtest.Ctx(t)
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
					typ := projtest.TypeAdded
					if rng.IntN(4) == 0 {
						typ = projtest.TypeRemoved
					}
					evs = append(evs, projtest.CartEvent(typ, cart, fmt.Sprintf("sku-%d", rng.IntN(3)), 1+rng.IntN(3)))
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
	projtest.WaitFor(t, p, last)
	projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InTable, "")
	projtest.RequireAppliedOnce(t, pool, es, "")
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
			pool, es := projtest.NewDB(t)
			projtest.CreateCartTable(t, pool, "carts", readmodel.InRow)
			projtest.CreateAppliedTable(t, pool)
			sp := projtest.CartProjection(t, "carts", readmodel.InRow, nil)
			projtest.SeedCarts(t, es, "", 20, 4) // 100 events
			events := projtest.ReadAllEvents(t, pool, es, "")
			blocker := &blockAt{at: events[70].GlobalPosition, reached: make(chan uint32, 1), release: make(chan struct{})}
			cfg := projtest.FastConfig("crash")
			cfg.BatchSize = 50 // the second batch (events 50..99) is in flight when it crashes
			cfg.BatchHandlers = []projection.BatchHandler{sp, projtest.CountBatch{Owner: "p"}, blocker}
			p := projtest.NewProjection(t, pool, cfg)

			ctx, cancel := context.WithCancel(projtest.Ctx(t))
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			pid := <-blocker.reached

			// The batch's writes are in its open transaction only.
			cp := projtest.LoadCheckpoint(t, pool, "crash", projection.AllPartitions)
			require.True(t, cp.Less(events[70].Position()))
			requireAppliedUpTo(t, pool, cp)
			switch how {
			case "cancel":
				cancel() // the process dies mid-batch
				require.NoError(t, <-done)
				require.Equal(t, cp, projtest.LoadCheckpoint(t, pool, "crash", projection.AllPartitions))
				requireAppliedUpTo(t, pool, cp)
				// Restart.
				close(blocker.release)
				ctx2, cancel2 := context.WithCancel(projtest.Ctx(t))
				defer cancel2()
				done = make(chan error, 1)
				go func() { done <- p.Run(ctx2) }()
				projtest.WaitFor(t, p, events[99].Position())
				cancel2()
				require.NoError(t, <-done)
			case "drop-connection":
				_, err := pool.Exec(projtest.Ctx(t), `SELECT pg_terminate_backend($1)`, pid)
				require.NoError(t, err)
				close(blocker.release) // its writes fail now: the connection is gone
				projtest.WaitFor(t, p, events[99].Position())
				cancel()
				require.NoError(t, <-done)
			}
			projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InRow, "")
			projtest.RequireAppliedOnce(t, pool, es, "")
		})
	}
}

// requireAppliedUpTo checks that the events applied are exactly those up
// to cp, each once, and returns their number.
func requireAppliedUpTo(t testing.TB, pool *pgxpool.Pool, cp store.Position) int {
	t.Helper()
	var upTo, applied, wrong int
	require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT count(*) FROM messages WHERE (transaction_id, global_position) <= ($1::xid8, $2)`,
		cp.TransactionID, int64(cp.GlobalPosition)).Scan(&upTo))
	require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT count(*), count(*) FILTER (WHERE n <> 1 OR m.message_id IS NULL
    OR (m.transaction_id, m.global_position) > ($1::xid8, $2))
FROM applied a LEFT JOIN messages m ON m.message_id = a.message_id`, cp.TransactionID, int64(cp.GlobalPosition)).Scan(&applied, &wrong))
	require.Equal(t, upTo, applied)
	require.Zero(t, wrong)
	return applied
}

// leaseHolder returns the pid of the backend holding the projection's
// lease, or 0.
func leaseHolder(t testing.TB, pool *pgxpool.Pool, p *projection.Projection) int {
	t.Helper()
	var pid int
	err := pool.QueryRow(projtest.Ctx(t), `WITH k AS (SELECT hashtextextended($1, 0) AS v)
SELECT l.pid FROM pg_locks l, k WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = ((k.v >> 32) & 4294967295) AND l.objid::bigint = (k.v & 4294967295)`, projection.LockKeyOf(p)).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	require.NoError(t, err)
	return pid
}

func owners(t testing.TB, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(projtest.Ctx(t), `SELECT owner, count(*) FROM applied GROUP BY owner`)
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
	pool, es := projtest.NewDB(t)
	projtest.CreateAppliedTable(t, pool)
	poolB := projtest.SecondPool(t, pool) // another process

	cfgA := projtest.FastConfig("shared")
	cfgA.BatchSize = 20
	cfgA.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "A"}}
	a := projtest.NewProjection(t, pool, cfgA)
	cfgB := cfgA
	cfgB.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "B"}}
	b := projtest.NewProjection(t, poolB, cfgB)

	require.NoError(t, a.Start(projtest.Ctx(t)))
	projtest.Eventually(t, 30*time.Second, "A to hold the lease", func() bool { return projtest.LocalState(t, a) == projection.StateRunning })
	projtest.Start(t, b)
	projtest.Eventually(t, 30*time.Second, "B to stand by", func() bool { return projtest.LocalState(t, b) == projection.StateStandby })

	pos := projtest.SeedCarts(t, es, "", 30, 3)
	projtest.WaitFor(t, a, pos)
	// A standby's WaitFor follows the stored checkpoint.
	projtest.WaitFor(t, b, pos)
	require.Equal(t, map[string]int{"A": 120}, owners(t, pool))
	st, err := b.Status(projtest.Ctx(t))
	require.NoError(t, err)
	require.Equal(t, projection.StateRunning, st.State)
	require.True(t, st.Active)
	require.Equal(t, projection.StateStandby, st.Local)

	// A stops: B takes over and finishes what is appended next.
	require.NoError(t, a.Stop(projtest.Ctx(t)))
	pos = projtest.SeedCarts(t, es, "", 10, 1)
	projtest.WaitFor(t, b, pos)
	require.Equal(t, projection.StateRunning, projtest.LocalState(t, b))
	require.Equal(t, map[string]int{"A": 120, "B": 20}, owners(t, pool))
	projtest.RequireAppliedOnce(t, pool, es, "")
}

func TestProjectionTakeoverWhenOwnerConnectionDies(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateAppliedTable(t, pool)
	poolB := projtest.SecondPool(t, pool)
	cfgA := projtest.FastConfig("shared")
	cfgA.BatchSize = 10
	cfgA.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "A"}}
	a := projtest.NewProjection(t, pool, cfgA)
	cfgB := cfgA
	cfgB.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "B"}}
	b := projtest.NewProjection(t, poolB, cfgB)
	projtest.Start(t, a)
	projtest.Eventually(t, 30*time.Second, "A to hold the lease", func() bool { return projtest.LocalState(t, a) == projection.StateRunning })
	projtest.Start(t, b)
	pos := projtest.SeedCarts(t, es, "", 5, 1)
	projtest.WaitFor(t, a, pos)

	// A's lease connection dies (as when its process is killed): the lock
	// is released and one of the runners takes the projection over.
	holder := leaseHolder(t, pool, a)
	require.NotZero(t, holder)
	_, err := pool.Exec(projtest.Ctx(t), `SELECT pg_terminate_backend($1)`, holder)
	require.NoError(t, err)
	projtest.Eventually(t, 30*time.Second, "a new lease holder", func() bool {
		h := leaseHolder(t, pool, a)
		return h != 0 && h != holder
	})
	pos = projtest.SeedCarts(t, es, "", 20, 2)
	projtest.Eventually(t, time.Minute, "the new events to be applied", func() bool {
		return !projtest.LoadCheckpoint(t, pool, "shared", projection.AllPartitions).Less(pos)
	})
	projtest.RequireAppliedOnce(t, pool, es, "")
	// Exactly one of them is active.
	projtest.Eventually(t, 30*time.Second, "one active runner", func() bool {
		sa, sb := projtest.LocalState(t, a), projtest.LocalState(t, b)
		return (sa == projection.StateRunning) != (sb == projection.StateRunning)
	})
}

// poisonHandler fails every time on the event with message id bad.
func poisonHandler(bad *atomic.Value, calls *atomic.Int64) projection.Handler {
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
	pool, es := projtest.NewDB(t)
	projtest.CreateAppliedTable(t, pool)
	projtest.SeedCarts(t, es, "", 10, 2) // 30 events
	events := projtest.ReadAllEvents(t, pool, es, "")
	poison := events[15]
	var bad atomic.Value
	bad.Store(poison.MessageID)
	var calls atomic.Int64
	cfg := projtest.FastConfig("poison")
	cfg.BatchSize = 10
	cfg.Handlers = projection.Registry{projtest.TypeOpened: {poisonHandler(&bad, &calls)}, projtest.TypeAdded: {poisonHandler(&bad, &calls)}}
	cfg.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "p"}}
	p := projtest.NewProjection(t, pool, cfg)

	err := p.Run(projtest.Ctx(t))
	require.ErrorIs(t, err, projection.ErrHandlerFailed)
	var he *projection.HandlerError
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
	require.Equal(t, events[14].Position(), projtest.LoadCheckpoint(t, pool, "poison", projection.AllPartitions))
	var n int
	require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT count(*) FROM applied`).Scan(&n))
	require.Equal(t, 15, n)

	st, err := p.Status(projtest.Ctx(t))
	require.NoError(t, err)
	require.Equal(t, projection.StateFailed, st.State)
	require.Equal(t, projection.StateFailed, st.Local)
	require.False(t, st.Active)
	require.Contains(t, st.Error, "cannot handle")
	require.NotNil(t, st.FailedEvent)
	require.Equal(t, projection.FailedEvent{Partition: poison.Partition, Position: poison.Position(), StreamID: poison.StreamID,
		StreamPosition: poison.StreamPosition, MessageID: poison.MessageID, Type: poison.Type}, *st.FailedEvent)
	require.EqualValues(t, 15, st.LagEvents)

	ctx, cancel := context.WithTimeout(projtest.Ctx(t), 5*time.Second)
	defer cancel()
	err = p.WaitFor(ctx, events[29].Position())
	require.ErrorIs(t, err, projection.ErrFailed)
	require.ErrorIs(t, err, projection.ErrHandlerFailed)

	// Fixed, it starts again from the failing event.
	bad.Store("")
	projtest.Start(t, p)
	projtest.WaitFor(t, p, events[29].Position())
	projtest.RequireAppliedOnce(t, pool, es, "")
	st, err = p.Status(projtest.Ctx(t))
	require.NoError(t, err)
	require.Equal(t, projection.StateRunning, st.State)
	require.Empty(t, st.Error)
	require.Nil(t, st.FailedEvent)
}

func TestProjectionPoisonEventSkipPolicy(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateAppliedTable(t, pool)
	projtest.SeedCarts(t, es, "tenant-a", 10, 2)
	events := projtest.ReadAllEvents(t, pool, es, "")
	poison := events[15]
	var bad atomic.Value
	bad.Store(poison.MessageID)
	var calls atomic.Int64
	cfg := projtest.FastConfig("skipper")
	cfg.BatchSize = 10
	cfg.OnFailure = projection.FailSkip
	cfg.BatchHandlers = []projection.BatchHandler{projtest.CountBatch{Owner: "p"}}
	cfg.Handlers = projection.Registry{projtest.TypeOpened: {poisonHandler(&bad, &calls)}, projtest.TypeAdded: {poisonHandler(&bad, &calls)}}
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)
	projtest.WaitFor(t, p, events[29].Position())

	var (
		id, typ, msg, part, scope string
		attempts                  int
		gp                        int64
		data                      string
	)
	require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT message_id, message_type, error, partition, scope, attempts,
global_position, message_data::text FROM projection_dead_letters WHERE projection = 'skipper'`).
		Scan(&id, &typ, &msg, &part, &scope, &attempts, &gp, &data))
	require.Equal(t, poison.MessageID, id)
	require.Equal(t, poison.Type, typ)
	require.Contains(t, msg, "cannot handle")
	require.Equal(t, "tenant-a", part)
	require.Equal(t, projection.AllPartitions, scope)
	require.Equal(t, 3, attempts)
	require.EqualValues(t, poison.GlobalPosition, gp)
	require.JSONEq(t, string(poison.Data), data)

	// Everything else is applied, once; the poison event's writes are not.
	var n int
	require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT count(*) FROM applied`).Scan(&n))
	require.Equal(t, 29, n)
	require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT count(*) FROM applied WHERE message_id = $1`, poison.MessageID).Scan(&n))
	require.Zero(t, n)
	require.Equal(t, projection.StateRunning, projtest.LocalState(t, p))
}

func TestProjectionReadYourWrites(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InTable)
	sp := projtest.CartProjection(t, "carts", readmodel.InTable, nil)
	cfg := projtest.FastConfig("ryw")
	cfg.PollInterval = 10 * time.Second
	cfg.BatchHandlers = []projection.BatchHandler{sp}
	p := projtest.NewProjection(t, pool, cfg)

	// Not running: the wait ends with its context.
	pos := projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0)).LastPosition()
	ctx, cancel := context.WithTimeout(projtest.Ctx(t), 100*time.Millisecond)
	err := p.WaitFor(ctx, pos)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	projtest.Start(t, p)
	for i := 1; i <= 10; i++ {
		// The "command" returns the position of its last event...
		pos := projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1)).LastPosition()
		ctx, cancel := context.WithTimeout(projtest.Ctx(t), 20*time.Second)
		require.NoError(t, p.WaitFor(ctx, pos))
		cancel()
		// ...and once WaitFor returns, the read model shows its effect.
		var count int
		require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT item_count FROM carts WHERE cart_id = 'c1'`).Scan(&count))
		require.Equal(t, i, count)
	}
}

func TestProjectionPartition(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InRow)
	projtest.CreateAppliedTable(t, pool)
	sp := projtest.CartProjection(t, "carts", readmodel.InRow, nil)
	projtest.SeedCarts(t, es, "tenant-a", 5, 2)
	projtest.SeedCarts(t, es, "tenant-b", 7, 2)
	cfg := projtest.FastConfig("carts-a")
	cfg.Partition = "tenant-a"
	cfg.BatchHandlers = []projection.BatchHandler{sp, projtest.CountBatch{Owner: "p"}}
	p := projtest.NewProjection(t, pool, cfg)
	require.Equal(t, "tenant-a", p.Partition())
	projtest.Start(t, p)
	projtest.WaitFor(t, p, projtest.LastPosition(t, pool, es, "tenant-a"))
	projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InRow, "tenant-a")
	projtest.RequireAppliedOnce(t, pool, es, "tenant-a")
	// The checkpoint is the partition's.
	require.Equal(t, projtest.LastPosition(t, pool, es, "tenant-a"), projtest.LoadCheckpoint(t, pool, "carts-a", "tenant-a"))

	// Notifications of other partitions are not its business; its own are.
	pos := projtest.AppendCart(t, es, "tenant-a", "late", projtest.CartEvent(projtest.TypeOpened, "late", "", 0)).LastPosition()
	projtest.AppendCart(t, es, "tenant-b", "late", projtest.CartEvent(projtest.TypeOpened, "late", "", 0))
	projtest.WaitFor(t, p, pos)
	st, err := p.Status(projtest.Ctx(t))
	require.NoError(t, err)
	require.Equal(t, "tenant-a", st.Partition)
	require.Zero(t, st.LagEvents)
	projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InRow, "tenant-a")
}

func TestProjectionStatusAndLag(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	st, err := projection.LoadStatus(ctx, pool, "lagging", "")
	require.NoError(t, err)
	require.Equal(t, projection.Status{Name: "lagging", Partition: projection.AllPartitions, State: projection.StateStopped}, st)

	last := projtest.SeedCarts(t, es, "", 4, 4)
	projtest.ReadAllEvents(t, pool, es, "") // visible
	st, err = projection.LoadStatus(ctx, pool, "lagging", "")
	require.NoError(t, err)
	require.Equal(t, projection.StateStopped, st.State)
	require.False(t, st.Active)
	require.Equal(t, store.Position{}, st.Checkpoint)
	require.Equal(t, last, st.LastEvent)
	require.EqualValues(t, 20, st.LagEvents)
	require.Positive(t, st.Lag)
	require.False(t, st.LastEventCreated.IsZero())

	cfg := projtest.FastConfig("lagging")
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)
	projtest.WaitFor(t, p, last)
	projtest.Eventually(t, 30*time.Second, "status running", func() bool {
		st, err = projection.LoadStatus(ctx, pool, "lagging", projection.AllPartitions)
		require.NoError(t, err)
		return st.State == projection.StateRunning
	})
	require.True(t, st.Active)
	require.Equal(t, last, st.Checkpoint)
	require.Zero(t, st.LagEvents)
	require.Zero(t, st.Lag)
	require.NotEmpty(t, st.Owner)
	require.False(t, st.Updated.IsZero())

	require.NoError(t, p.Stop(ctx))
	st, err = projection.LoadStatus(ctx, pool, "lagging", "")
	require.NoError(t, err)
	require.Equal(t, projection.StateStopped, st.State)
	require.False(t, st.Active)
	require.Equal(t, last, st.Checkpoint)
}

func TestProjectionRebuild(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InTable)
	projtest.CreateAppliedTable(t, pool)
	sp := projtest.CartProjection(t, "carts", readmodel.InTable, nil)
	projtest.SeedCarts(t, es, "", 20, 4) // 100 events
	cfg := projtest.FastConfig("rebuilt")
	cfg.BatchSize = 10
	cfg.BatchHandlers = []projection.BatchHandler{sp, projtest.CountBatch{Owner: "p"}}
	cfg.Reset = func(ctx context.Context, tx pgx.Tx, partition string) error {
		if partition != projection.AllPartitions {
			return fmt.Errorf("unexpected partition %q", partition)
		}
		_, err := tx.Exec(ctx, `DELETE FROM applied`)
		return err
	}
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)
	last := projtest.LastPosition(t, pool, es, "")
	projtest.WaitFor(t, p, last)

	// The read model drifts (a bug, a manual edit): rebuild it.
	_, err := pool.Exec(projtest.Ctx(t), `UPDATE carts SET item_count = -1`)
	require.NoError(t, err)
	var progress []projection.RebuildProgress
	var states []projection.State
	require.NoError(t, p.Rebuild(projtest.Ctx(t), projection.RebuildOptions{Progress: func(pr projection.RebuildProgress) {
		progress = append(progress, pr)
		states = append(states, projtest.LocalState(t, p))
	}}))
	require.Equal(t, projection.RebuildProgress{Done: 0, Total: 100}, progress[0])
	require.Equal(t, projection.RebuildProgress{Done: 100, Total: 100}, progress[len(progress)-1])
	require.GreaterOrEqual(t, len(progress), 11)
	for i := 1; i < len(progress); i++ {
		require.LessOrEqual(t, progress[i-1].Done, progress[i].Done)
	}
	require.Equal(t, projection.StateRebuilding, states[0])
	projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InTable, "")
	projtest.RequireAppliedOnce(t, pool, es, "")
	require.Equal(t, projection.StateRunning, projtest.LocalState(t, p))
	st, err := p.Status(projtest.Ctx(t))
	require.NoError(t, err)
	require.Equal(t, projection.StateRunning, st.State)

	// It keeps following the log afterwards.
	pos := projtest.AppendCart(t, es, "", "cart-0", projtest.CartEvent(projtest.TypeAdded, "cart-0", "y", 2)).LastPosition()
	projtest.WaitFor(t, p, pos)
	projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InTable, "")
}

func TestProjectionRebuildCancelled(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InRow)
	projtest.CreateAppliedTable(t, pool)
	sp := projtest.CartProjection(t, "carts", readmodel.InRow, nil)
	projtest.SeedCarts(t, es, "", 20, 4)
	cfg := projtest.FastConfig("rebuilt")
	cfg.BatchSize = 10
	cfg.BatchHandlers = []projection.BatchHandler{sp, projtest.CountBatch{Owner: "p"}}
	cfg.Reset = func(ctx context.Context, tx pgx.Tx, _ string) error {
		_, err := tx.Exec(ctx, `DELETE FROM applied`)
		return err
	}
	p := projtest.NewProjection(t, pool, cfg)
	last := projtest.LastPosition(t, pool, es, "")

	// Not running: Rebuild runs it; cancelled after three batches.
	ctx, cancel := context.WithCancel(projtest.Ctx(t))
	defer cancel()
	err := p.Rebuild(ctx, projection.RebuildOptions{Progress: func(pr projection.RebuildProgress) {
		if pr.Done >= 30 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	cp := projtest.LoadCheckpoint(t, pool, "rebuilt", projection.AllPartitions)
	require.True(t, cp.Less(last), "stopped before the end")
	// Consistent: the applied events are exactly those up to the checkpoint.
	require.GreaterOrEqual(t, requireAppliedUpTo(t, pool, cp), 30)
	require.Equal(t, projection.StateStopped, projtest.LocalState(t, p))

	// A later run finishes the job.
	projtest.Start(t, p)
	projtest.WaitFor(t, p, last)
	projtest.RequireReadModelMatchesLog(t, pool, es, "carts", readmodel.InRow, "")
	projtest.RequireAppliedOnce(t, pool, es, "")
}

func TestProjectionStartStop(t *testing.T) {
	t.Parallel()
	pool, _ := projtest.NewDB(t)
	p := projtest.NewProjection(t, pool, projtest.FastConfig("ss"))
	require.NoError(t, p.Stop(projtest.Ctx(t)), "stopping a stopped projection")
	require.NoError(t, p.Start(projtest.Ctx(t)))
	require.ErrorIs(t, p.Start(projtest.Ctx(t)), projection.ErrAlreadyRunning)
	require.ErrorIs(t, p.Run(projtest.Ctx(t)), projection.ErrAlreadyRunning)
	require.NoError(t, p.Stop(projtest.Ctx(t)))
	require.Equal(t, projection.StateStopped, projtest.LocalState(t, p))
	require.NoError(t, p.Start(projtest.Ctx(t)), "restart")
	require.NoError(t, p.Stop(projtest.Ctx(t)))
	require.Equal(t, "ss", p.Name())
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	pool, _ := projtest.NewDB(t)
	base := projection.Config{Name: "x"}
	cases := map[string]func(*projection.Config){
		"Config.Name":               func(c *projection.Config) { c.Name = "" },
		"Config.BatchSize":          func(c *projection.Config) { c.BatchSize = -1 },
		"Config.PollInterval":       func(c *projection.Config) { c.PollInterval = -1 },
		"Config.LeaseRetryInterval": func(c *projection.Config) { c.LeaseRetryInterval = -1 },
		"Config.Retry.MaxAttempts":  func(c *projection.Config) { c.Retry.MaxAttempts = -1 },
		"Config.Retry.InitialDelay": func(c *projection.Config) { c.Retry.InitialDelay = -1 },
		"Config.Retry.MaxDelay":     func(c *projection.Config) { c.Retry.MaxDelay = -1 },
		"Config.OnFailure":          func(c *projection.Config) { c.OnFailure = 9 },
		"Config.Partition":          func(c *projection.Config) { c.Partition = "bad partition" },
		"Config.BatchHandlers[0]":   func(c *projection.Config) { c.BatchHandlers = []projection.BatchHandler{nil} },
	}
	for field, mutate := range cases {
		cfg := base
		mutate(&cfg)
		_, err := projection.New(pool, &cfg)
		require.ErrorIs(t, err, projection.ErrInvalidConfig, field)
		require.ErrorContains(t, err, "projection."+field)
	}
	_, err := projection.New(nil, &base)
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, "pool is nil")
	_, err = projection.New(pool, nil)
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, "projection.Config.Name")
	p, err := projection.New(pool, &base)
	require.NoError(t, err)
	cfg := projection.ConfigOf(p)
	require.Equal(t, projection.DefaultBatchSize, cfg.BatchSize)
	require.Equal(t, projection.DefaultPollInterval, cfg.PollInterval)
	require.Equal(t, projection.DefaultLeaseRetryInterval, cfg.LeaseRetryInterval)
	require.Equal(t, projection.DefaultRetry, cfg.Retry)
	require.Equal(t, projection.FailStop, cfg.OnFailure)
	require.IsType(t, &postgres.Store{}, projection.StoreOf(p))
}

// A transaction that took its id first but waited for a stream's lock
// commits the stream's later event under the smaller transaction id: the
// global log (commit order) then holds the stream's events out of order.
// A snapshot projection must still fold them in stream order.
func TestProjectionStreamOrderInversion(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			ctx := projtest.Ctx(t)
			projtest.CreateCartTable(t, pool, "carts", storage)
			projtest.CreateAppliedTable(t, pool)

			older := make(chan struct{})
			appendedA := make(chan struct{})
			doneB := make(chan error, 1)
			go func() {
				doneB <- es.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
					// Take a transaction id now, with another stream.
					if _, err := s.AppendToStream(ctx, "other", []store.EventData{projtest.CartEvent(projtest.TypeOpened, "other", "", 0)}, store.AppendOptions{}); err != nil {
						return err
					}
					close(older)
					<-appendedA
					// Waits for A's lock on c1, then appends after it.
					_, err := s.AppendToStream(ctx, "c1", []store.EventData{projtest.CartEvent(projtest.TypeRemoved, "c1", "x", 1)}, store.AppendOptions{})
					return err
				})
			}()
			<-older
			require.NoError(t, es.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
				if _, err := s.AppendToStream(ctx, "c1", []store.EventData{projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1)}, store.AppendOptions{}); err != nil {
					return err
				}
				close(appendedA)
				projtest.WaitForLockWait(t, pool)
				return nil
			}))
			require.NoError(t, <-doneB)

			events := projtest.ReadAllEvents(t, pool, es, "")
			require.Len(t, events, 3)
			require.Equal(t, store.StreamID("c1"), events[1].StreamID)
			require.EqualValues(t, 2, events[1].StreamPosition, "the log holds c1's second event first")
			require.EqualValues(t, 1, events[2].StreamPosition)

			sp := projtest.CartProjection(t, "carts", storage, nil)
			for _, batch := range []int{1, 10} { // across batches, then within one
				name := fmt.Sprintf("inv-%d", batch)
				_, err := pool.Exec(ctx, `TRUNCATE carts; TRUNCATE applied; DELETE FROM snapshots`)
				require.NoError(t, err)
				cfg := projtest.FastConfig(name)
				cfg.BatchSize = batch
				cfg.BatchHandlers = []projection.BatchHandler{sp, projtest.CountBatch{Owner: "p"}}
				p := projtest.NewProjection(t, pool, cfg)
				projtest.Start(t, p)
				projtest.WaitFor(t, p, events[2].Position())
				require.NoError(t, p.Stop(ctx))
				got := projtest.ReadCarts(t, pool, "carts", storage)["default_partition/c1"]
				require.Equal(t, projtest.CartState{Items: map[string]int{}, Applied: 2}, got.State, "batch size %d", batch)
				projtest.RequireReadModelMatchesLog(t, pool, es, "carts", storage, "")
				projtest.RequireAppliedOnce(t, pool, es, "")
			}
		})
	}
}
