package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/retry"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

func newConsumer(t testing.TB, pool *pgxpool.Pool, cfg *consumer.Config) *consumer.Consumer {
	t.Helper()
	if cfg == nil {
		cfg = &consumer.Config{}
	}
	if cfg.LeaseRetryInterval == 0 {
		cfg.LeaseRetryInterval = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = projtest.QuietLogger
	}
	c, err := consumer.New(pool, cfg)
	require.NoError(t, err)
	return c
}

func startConsumer(t testing.TB, c *consumer.Consumer) {
	t.Helper()
	require.NoError(t, c.Start(projtest.Ctx(t)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, c.Stop(ctx))
	})
}

// seen records what handlers received.
type seen struct {
	mu     sync.Mutex
	events []string
}

func (s *seen) handler(name string) projection.Handler {
	return func(_ context.Context, _ pgx.Tx, e store.Event) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.events = append(s.events, fmt.Sprintf("%s:%s:%s#%d", name, e.Partition, e.Type, e.StreamPosition))
		return nil
	}
}

func (s *seen) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func TestConsumerDefaults(t *testing.T) {
	t.Parallel()
	pool, _ := projtest.NewDB(t)
	c, err := consumer.New(pool, nil)
	require.NoError(t, err)
	cfg := consumer.ConfigOf(c)
	require.Equal(t, "default-consumer", cfg.Name)
	require.Equal(t, 100, cfg.BatchSize)
	require.Equal(t, time.Second, cfg.PollInterval)
	require.Equal(t, projection.FailStop, cfg.OnFailure)
	require.Equal(t, projection.AllPartitions, c.Projection().Partition())

	_, err = consumer.New(nil, nil)
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, "consumer.New: pool is nil")
	_, err = consumer.New(pool, &consumer.Config{BatchSize: -1})
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, "projection.Config.BatchSize")
}

func TestConsumerSubscriptionsAndPersistedCheckpoint(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.AppendCart(t, es, "tenant-a", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))
	projtest.AppendCart(t, es, "tenant-b", "c2", projtest.CartEvent(projtest.TypeNoted, "c2", "", 0), projtest.CartEvent(projtest.TypeOpened, "c2", "", 0))

	s := &seen{}
	c := newConsumer(t, pool, &consumer.Config{PollInterval: 100 * time.Millisecond})
	c.Subscribe(projtest.TypeOpened, s.handler("opened1"))
	c.Subscribe(projtest.TypeOpened, s.handler("opened2"))
	c.SubscribeToAll(s.handler("all"))
	require.NoError(t, c.Start(projtest.Ctx(t)))
	ctx, cancel := context.WithTimeout(projtest.Ctx(t), time.Minute)
	defer cancel()
	require.NoError(t, c.WaitFor(ctx, projtest.LastPosition(t, pool, es, "")))
	require.NoError(t, c.Stop(projtest.Ctx(t)))
	// Type handlers in subscription order, then the all-events handlers;
	// each event carries its partition.
	require.Equal(t, []string{
		"opened1:tenant-a:CartOpened#1", "opened2:tenant-a:CartOpened#1", "all:tenant-a:CartOpened#1",
		"all:tenant-a:ItemAdded#2",
		"all:tenant-b:CartNoted#1",
		"opened1:tenant-b:CartOpened#2", "opened2:tenant-b:CartOpened#2", "all:tenant-b:CartOpened#2",
	}, s.list())

	// The checkpoint persists: a new consumer (a restarted process) with
	// the same name goes on from it.
	require.Equal(t, projtest.LastPosition(t, pool, es, ""), projtest.LoadCheckpoint(t, pool, consumer.DefaultName, projection.AllPartitions))
	projtest.AppendCart(t, es, "tenant-a", "c1", projtest.CartEvent(projtest.TypeAdded, "c1", "y", 1))
	s2 := &seen{}
	c2 := newConsumer(t, pool, &consumer.Config{PollInterval: 100 * time.Millisecond})
	c2.SubscribeToAll(s2.handler("all"))
	startConsumer(t, c2)
	require.NoError(t, c2.WaitFor(ctx, projtest.LastPosition(t, pool, es, "")))
	require.Equal(t, []string{"all:tenant-a:ItemAdded#3"}, s2.list())

	// A subscription made while running applies from the next batch.
	c2.Subscribe(projtest.TypeAdded, s2.handler("added"))
	pos := projtest.AppendCart(t, es, "tenant-a", "c1", projtest.CartEvent(projtest.TypeAdded, "c1", "z", 1)).LastPosition()
	require.NoError(t, c2.WaitFor(ctx, pos))
	require.Equal(t, []string{"all:tenant-a:ItemAdded#3", "added:tenant-a:ItemAdded#4", "all:tenant-a:ItemAdded#4"}, s2.list())
}

func TestConsumerPartition(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.AppendCart(t, es, "tenant-a", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))
	projtest.AppendCart(t, es, "tenant-b", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))
	pos := projtest.AppendCart(t, es, "tenant-a", "c2", projtest.CartEvent(projtest.TypeOpened, "c2", "", 0)).LastPosition()
	s := &seen{}
	c := newConsumer(t, pool, &consumer.Config{Name: "a-only", Partition: "tenant-a", PollInterval: 100 * time.Millisecond})
	c.SubscribeToAll(s.handler("all"))
	startConsumer(t, c)
	ctx, cancel := context.WithTimeout(projtest.Ctx(t), time.Minute)
	defer cancel()
	require.NoError(t, c.WaitFor(ctx, pos))
	require.Equal(t, []string{"all:tenant-a:CartOpened#1", "all:tenant-a:CartOpened#1"}, s.list())
	require.Equal(t, pos, projtest.LoadCheckpoint(t, pool, "a-only", "tenant-a"))
}

func TestConsumerNeverPollsTwiceAtOnceAndStopWaitsForTheBatch(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.SeedCarts(t, es, "", 30, 3)
	var inFlight, maxInFlight, handled atomic.Int64
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	c := newConsumer(t, pool, &consumer.Config{BatchSize: 7, PollInterval: 10 * time.Millisecond})
	c.SubscribeToAll(func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		if handled.Add(1) == 100 {
			once.Do(func() { close(entered) })
			<-release // the 100th event: a slow handler while Stop is called
		}
		return nil
	})
	require.NoError(t, c.Start(projtest.Ctx(t)))
	<-entered

	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(projtest.Ctx(t)) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a batch was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-stopped)
	require.EqualValues(t, 1, maxInFlight.Load(), "handlers ran concurrently")

	// The batch in flight was finished and committed, not abandoned.
	cp := projtest.LoadCheckpoint(t, pool, consumer.DefaultName, projection.AllPartitions)
	events := projtest.ReadAllEvents(t, pool, es, "")
	idx := -1
	for i, e := range events {
		if e.Position() == cp {
			idx = i
		}
	}
	require.GreaterOrEqual(t, idx, 99, "the checkpoint includes the event handled during Stop")
	require.EqualValues(t, idx+1, handled.Load(), "every handled event is checkpointed")
}

func TestConsumerFailurePolicies(t *testing.T) {
	t.Parallel()
	for _, action := range []projection.FailureAction{projection.FailStop, projection.FailSkip} {
		t.Run(action.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			projtest.SeedCarts(t, es, "", 5, 1)
			events := projtest.ReadAllEvents(t, pool, es, "")
			bad := events[4].MessageID
			var ok atomic.Int64
			c := newConsumer(t, pool, &consumer.Config{OnFailure: action, PollInterval: 50 * time.Millisecond,
				Retry: retry.Policy{MaxAttempts: 2, InitialDelay: time.Millisecond}})
			c.SubscribeToAll(func(_ context.Context, _ pgx.Tx, e store.Event) error {
				if e.MessageID == bad {
					return errors.New("bad event")
				}
				ok.Add(1)
				return nil
			})
			startConsumer(t, c)
			ctx, cancel := context.WithTimeout(projtest.Ctx(t), time.Minute)
			defer cancel()
			if action == projection.FailSkip {
				require.NoError(t, c.WaitFor(ctx, events[9].Position()))
				var n int
				require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM projection_dead_letters WHERE projection = $1 AND message_id = $2`,
					consumer.DefaultName, bad).Scan(&n))
				require.Equal(t, 1, n)
				return
			}
			err := c.WaitFor(ctx, events[9].Position())
			require.ErrorIs(t, err, projection.ErrFailed)
			require.ErrorIs(t, c.Err(), projection.ErrHandlerFailed)
			require.Equal(t, events[3].Position(), projtest.LoadCheckpoint(t, pool, consumer.DefaultName, projection.AllPartitions))
			st, err := c.Status(ctx)
			require.NoError(t, err)
			require.Equal(t, projection.StateFailed, st.State)
			require.Equal(t, bad, st.FailedEvent.MessageID)
		})
	}
}

func TestConsumerWakesOnNotify(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	s := &seen{}
	c := newConsumer(t, pool, &consumer.Config{PollInterval: time.Hour})
	c.SubscribeToAll(s.handler("all"))
	startConsumer(t, c)
	projtest.Eventually(t, 30*time.Second, "the consumer to hold its lease", func() bool { return projtest.LocalState(t, c.Projection()) == projection.StateRunning })
	pos := projtest.AppendCart(t, es, "", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0)).LastPosition()
	ctx, cancel := context.WithTimeout(projtest.Ctx(t), 20*time.Second)
	defer cancel()
	require.NoError(t, c.WaitFor(ctx, pos))
	require.Len(t, s.list(), 1)
}
