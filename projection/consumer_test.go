package projection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

func newConsumer(t testing.TB, cfg ConsumerConfig) *Consumer {
	t.Helper()
	if cfg.LeaseRetryInterval == 0 {
		cfg.LeaseRetryInterval = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	c, err := NewConsumer(cfg)
	require.NoError(t, err)
	return c
}

func startConsumer(t testing.TB, c *Consumer) {
	t.Helper()
	require.NoError(t, c.Start(testCtx(t)))
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

func (s *seen) handler(name string) Handler {
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
	pool, _ := newDB(t)
	c, err := NewConsumer(ConsumerConfig{Pool: pool})
	require.NoError(t, err)
	cfg := c.Projection().cfg
	require.Equal(t, "default-consumer", cfg.Name)
	require.Equal(t, 100, cfg.BatchSize)
	require.Equal(t, time.Second, cfg.PollInterval)
	require.Equal(t, FailStop, cfg.OnFailure)
	require.Equal(t, AllPartitions, c.Projection().Partition())

	_, err = NewConsumer(ConsumerConfig{})
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "Pool")
}

func TestConsumerSubscriptionsAndPersistedCheckpoint(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	appendCart(t, es, "tenant-a", "c1", cartEvent(typeOpened, "c1", "", 0), cartEvent(typeAdded, "c1", "x", 1))
	appendCart(t, es, "tenant-b", "c2", cartEvent(typeNoted, "c2", "", 0), cartEvent(typeOpened, "c2", "", 0))

	s := &seen{}
	c := newConsumer(t, ConsumerConfig{Pool: pool, PollInterval: 100 * time.Millisecond})
	c.Subscribe(typeOpened, s.handler("opened1"))
	c.Subscribe(typeOpened, s.handler("opened2"))
	c.SubscribeToAll(s.handler("all"))
	require.NoError(t, c.Start(testCtx(t)))
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	require.NoError(t, c.WaitFor(ctx, lastPosition(t, pool, es, "")))
	require.NoError(t, c.Stop(testCtx(t)))
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
	require.Equal(t, lastPosition(t, pool, es, ""), loadCP(t, pool, DefaultConsumerName, AllPartitions))
	appendCart(t, es, "tenant-a", "c1", cartEvent(typeAdded, "c1", "y", 1))
	s2 := &seen{}
	c2 := newConsumer(t, ConsumerConfig{Pool: pool, PollInterval: 100 * time.Millisecond})
	c2.SubscribeToAll(s2.handler("all"))
	startConsumer(t, c2)
	require.NoError(t, c2.WaitFor(ctx, lastPosition(t, pool, es, "")))
	require.Equal(t, []string{"all:tenant-a:ItemAdded#3"}, s2.list())

	// A subscription made while running applies from the next batch.
	c2.Subscribe(typeAdded, s2.handler("added"))
	pos := appendCart(t, es, "tenant-a", "c1", cartEvent(typeAdded, "c1", "z", 1)).LastPosition()
	require.NoError(t, c2.WaitFor(ctx, pos))
	require.Equal(t, []string{"all:tenant-a:ItemAdded#3", "added:tenant-a:ItemAdded#4", "all:tenant-a:ItemAdded#4"}, s2.list())
}

func TestConsumerPartition(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	appendCart(t, es, "tenant-a", "c1", cartEvent(typeOpened, "c1", "", 0))
	appendCart(t, es, "tenant-b", "c1", cartEvent(typeOpened, "c1", "", 0))
	pos := appendCart(t, es, "tenant-a", "c2", cartEvent(typeOpened, "c2", "", 0)).LastPosition()
	s := &seen{}
	c := newConsumer(t, ConsumerConfig{Pool: pool, Name: "a-only", Partition: "tenant-a", PollInterval: 100 * time.Millisecond})
	c.SubscribeToAll(s.handler("all"))
	startConsumer(t, c)
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	require.NoError(t, c.WaitFor(ctx, pos))
	require.Equal(t, []string{"all:tenant-a:CartOpened#1", "all:tenant-a:CartOpened#1"}, s.list())
	require.Equal(t, pos, loadCP(t, pool, "a-only", "tenant-a"))
}

func TestConsumerNeverPollsTwiceAtOnceAndStopWaitsForTheBatch(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	seedCarts(t, es, "", 30, 3)
	var inFlight, maxInFlight, handled atomic.Int64
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	c := newConsumer(t, ConsumerConfig{Pool: pool, BatchSize: 7, PollInterval: 10 * time.Millisecond})
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
	require.NoError(t, c.Start(testCtx(t)))
	<-entered

	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(testCtx(t)) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a batch was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-stopped)
	require.EqualValues(t, 1, maxInFlight.Load(), "handlers ran concurrently")

	// The batch in flight was finished and committed, not abandoned.
	cp := loadCP(t, pool, DefaultConsumerName, AllPartitions)
	events := readAllEvents(t, pool, es, "")
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
	for _, action := range []FailureAction{FailStop, FailSkip} {
		t.Run(action.String(), func(t *testing.T) {
			t.Parallel()
			pool, es := newDB(t)
			seedCarts(t, es, "", 5, 1)
			events := readAllEvents(t, pool, es, "")
			bad := events[4].MessageID
			var ok atomic.Int64
			c := newConsumer(t, ConsumerConfig{Pool: pool, OnFailure: action, PollInterval: 50 * time.Millisecond,
				Retry: RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}})
			c.SubscribeToAll(func(_ context.Context, _ pgx.Tx, e store.Event) error {
				if e.MessageID == bad {
					return errors.New("bad event")
				}
				ok.Add(1)
				return nil
			})
			startConsumer(t, c)
			ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
			defer cancel()
			if action == FailSkip {
				require.NoError(t, c.WaitFor(ctx, events[9].Position()))
				var n int
				require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM projection_dead_letters WHERE projection = $1 AND message_id = $2`,
					DefaultConsumerName, bad).Scan(&n))
				require.Equal(t, 1, n)
				return
			}
			err := c.WaitFor(ctx, events[9].Position())
			require.ErrorIs(t, err, ErrFailed)
			require.ErrorIs(t, c.Err(), ErrHandlerFailed)
			require.Equal(t, events[3].Position(), loadCP(t, pool, DefaultConsumerName, AllPartitions))
			st, err := c.Status(ctx)
			require.NoError(t, err)
			require.Equal(t, StateFailed, st.State)
			require.Equal(t, bad, st.FailedEvent.MessageID)
		})
	}
}

func TestConsumerWakesOnNotify(t *testing.T) {
	t.Parallel()
	pool, es := newDB(t)
	s := &seen{}
	c := newConsumer(t, ConsumerConfig{Pool: pool, PollInterval: time.Hour})
	c.SubscribeToAll(s.handler("all"))
	startConsumer(t, c)
	eventually(t, 30*time.Second, "the consumer to hold its lease", func() bool { return localState(c.Projection()) == StateRunning })
	pos := appendCart(t, es, "", "c1", cartEvent(typeOpened, "c1", "", 0)).LastPosition()
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	require.NoError(t, c.WaitFor(ctx, pos))
	require.Len(t, s.list(), 1)
}
