package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/store/storetest"
)

// notifyPayload is a notification's payload, read the way projections read
// it.
type notifyPayload struct {
	Partition      string `json:"partition"`
	GlobalPosition int64  `json:"globalPosition"`
}

// endOfNotifications is the payload collect sends to find the end of what
// a listener received.
const endOfNotifications = "end-of-test"

// newNotifierStore returns a store with a Notifier (not started) on a
// fresh, migrated database, the Notifier and the pool.
func newNotifierStore(t testing.TB, interval time.Duration) (*postgres.Store, *postgres.Notifier, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(context.Background(), pool))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := postgres.NewNotifier(pool, &postgres.NotifierConfig{Interval: interval, Logger: logger})
	require.NoError(t, err)
	s, err := postgres.New(pool, &postgres.Config{Logger: logger, Notifier: n})
	require.NoError(t, err)
	return s, n, pool
}

// startNotifier starts n and stops it at cleanup (before the pool closes).
func startNotifier(t testing.TB, n *postgres.Notifier) {
	t.Helper()
	require.NoError(t, n.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, n.Stop(context.Background())) })
}

// next waits for conn's next notification, for at most 20 seconds.
func next(t testing.TB, conn *pgx.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	require.NoError(t, err, "waiting for a notification")
	return n.Payload
}

// collect returns every notification conn received so far: it sends a
// notification of its own after them (committed after every statement that
// committed before collect was called, so delivered after their
// notifications) and reads up to it.
func collect(t testing.TB, pool *pgxpool.Pool, conn *pgx.Conn) []notifyPayload {
	t.Helper()
	_, err := pool.Exec(context.Background(), "SELECT pg_notify($1, $2)", postgres.NotifyChannel, endOfNotifications)
	require.NoError(t, err)
	var out []notifyPayload
	for {
		payload := next(t, conn)
		if payload == endOfNotifications {
			return out
		}
		var p notifyPayload
		require.NoError(t, json.Unmarshal([]byte(payload), &p), "payload %q", payload)
		out = append(out, p)
	}
}

// A listener (as a projection listens) hears of an append made through a
// store with a Notifier, with the payload the append statements send.
func TestNotifierWakesListener(t *testing.T) {
	t.Parallel()
	s, n, pool := newNotifierStore(t, 0)
	conn := listen(t, pool)
	startNotifier(t, n)
	for i := range 3 {
		res, err := s.AppendToStream(t.Context(), store.StreamID(fmt.Sprintf("cart-%d", i)), events("Added", 2),
			store.AppendOptions{Partition: "tenant-a"})
		require.NoError(t, err)
		var p notifyPayload
		require.NoError(t, json.Unmarshal([]byte(next(t, conn)), &p))
		require.Equal(t, notifyPayload{Partition: "tenant-a", GlobalPosition: int64(res.LastGlobalPosition)}, p)
	}
}

// The payload format is the append statement's, byte for byte.
func TestNotifierPayloadMatchesAppendStatement(t *testing.T) {
	t.Parallel()
	plain, pool := newStore(t)
	conn := listen(t, pool)
	res, err := plain.AppendToStream(t.Context(), "a", events("E", 1), store.AppendOptions{Partition: "p"})
	require.NoError(t, err)
	fromAppend := next(t, conn)

	n, err := postgres.NewNotifier(pool, nil)
	require.NoError(t, err)
	startNotifier(t, n)
	n.Poke("p", res.LastGlobalPosition)
	require.Equal(t, fromAppend, next(t, conn))
}

// A burst of appends from many goroutines sends far fewer notifications
// than appends, at most one statement per interval, and the last
// notification of each partition names the partition's last position.
func TestNotifierCoalescesBurst(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	s, n, pool := newNotifierStore(t, interval)
	conn := listen(t, pool)
	startNotifier(t, n)

	const writers, appends = 16, 500
	partitions := []string{"tenant-a", "tenant-b"}
	var mu sync.Mutex
	last := map[string]int64{}
	var wg sync.WaitGroup
	began := time.Now()
	for w := range writers {
		wg.Go(func() {
			partition := partitions[w%len(partitions)]
			for i := w; i < appends; i += writers {
				res, err := s.AppendToStream(context.Background(), store.StreamID(fmt.Sprintf("s-%d", w)), events("E", 1),
					store.AppendOptions{Partition: partition})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				last[partition] = max(last[partition], int64(res.LastGlobalPosition))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NoError(t, n.Stop(t.Context()))
	elapsed := time.Since(began)

	got := collect(t, pool, conn)
	seen := map[string]int64{}
	for _, p := range got {
		require.Contains(t, partitions, p.Partition)
		require.Greater(t, p.GlobalPosition, seen[p.Partition], "positions of a partition only grow")
		seen[p.Partition] = p.GlobalPosition
	}
	require.Equal(t, last, seen, "the last notification of each partition names its last append")
	require.Less(t, len(got), appends/4, "notifications for %d appends", appends)
	// One statement when the burst starts, then at most one per interval,
	// plus the one Stop sends; each notifies once per partition.
	bound := len(partitions) * (int(elapsed/interval) + 2)
	require.LessOrEqual(t, len(got), bound, "notifications in %v at one statement per %v", elapsed, interval)
	t.Logf("%d appends in %v: %d notifications", appends, elapsed, len(got))
}

// With a Notifier, the pool's append statements send no notification (none
// arrives while the Notifier is not running), appends in a transaction
// still notify from their own statement, and the Notifier, once started,
// sends what the pool's appends poked.
func TestNotifierAppendsWithoutPgNotify(t *testing.T) {
	t.Parallel()
	s, n, pool := newNotifierStore(t, 0)
	conn := listen(t, pool)
	ctx := t.Context()

	// Every pool statement: Any, NoStream, Exact, StreamExists.
	var lastPos store.GlobalPosition
	for i := range 5 {
		stream := store.StreamID(fmt.Sprintf("s-%d", i))
		res, err := s.AppendToStream(ctx, stream, events("E", 2), store.AppendOptions{Partition: "p", ExpectedVersion: store.NoStream})
		require.NoError(t, err)
		res, err = s.AppendToStream(ctx, stream, events("E", 1), store.AppendOptions{Partition: "p", ExpectedVersion: store.Exact(res.NextExpectedVersion)})
		require.NoError(t, err)
		_, err = s.AppendToStream(ctx, stream, events("E", 1), store.AppendOptions{Partition: "p", ExpectedVersion: store.StreamExists})
		require.NoError(t, err)
		res, err = s.AppendToStream(ctx, stream, events("E", 1), store.AppendOptions{Partition: "p"})
		require.NoError(t, err)
		lastPos = res.LastGlobalPosition
	}
	require.Empty(t, collect(t, pool, conn), "the pool's appends notified by themselves")

	var txPos store.GlobalPosition
	require.NoError(t, s.WithSession(ctx, func(ctx context.Context, es store.EventStore) error {
		res, err := es.AppendToStream(ctx, "in-tx", events("E", 1), store.AppendOptions{Partition: "q"})
		txPos = res.LastGlobalPosition
		return err
	}))
	require.Equal(t, []notifyPayload{{Partition: "q", GlobalPosition: int64(txPos)}}, collect(t, pool, conn),
		"an append in a transaction notifies from its statement")

	startNotifier(t, n)
	var p notifyPayload
	require.NoError(t, json.Unmarshal([]byte(next(t, conn)), &p))
	require.Equal(t, notifyPayload{Partition: "p", GlobalPosition: int64(lastPos)}, p)
}

// Stop sends what was poked before it returns, and the Notifier's
// lifecycle calls are safe in any order.
func TestNotifierStopFlushesAndWaits(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	conn := listen(t, pool)
	n, err := postgres.NewNotifier(pool, &postgres.NotifierConfig{Interval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, n.Stop(t.Context()), "stopping a notifier never started")

	require.NoError(t, n.Start(t.Context()))
	require.ErrorIs(t, n.Start(t.Context()), postgres.ErrNotifierStarted)
	n.Poke("a", 1) // sent at once
	require.Equal(t, `{"partition" : "a", "globalPosition" : 1}`, next(t, conn))
	// Within the hour-long interval: only Stop sends these.
	n.Poke("a", 7)
	n.Poke("a", 5)
	n.Poke("b", 3)
	require.NoError(t, n.Stop(t.Context()))
	got := collect(t, pool, conn)
	require.ElementsMatch(t, []notifyPayload{{"a", 7}, {"b", 3}}, got)

	require.NoError(t, n.Stop(t.Context()), "stopping twice")
	n.Poke("c", 1) // after Stop: recorded, never sent, never blocks
	require.Empty(t, collect(t, pool, conn))
}

// A Notifier whose context ends stops without Stop.
func TestNotifierEndsWithContext(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	n, err := postgres.NewNotifier(pool, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	require.NoError(t, n.Start(ctx))
	cancel()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer stopCancel()
	require.NoError(t, n.Stop(stopCtx))
}

func TestNewNotifierValidates(t *testing.T) {
	t.Parallel()
	_, err := postgres.NewNotifier(nil, nil)
	require.ErrorContains(t, err, "pool is nil")
	pool := pgtest.NewPool(t)
	_, err = postgres.NewNotifier(pool, &postgres.NotifierConfig{Interval: -time.Second})
	require.ErrorContains(t, err, "NotifierConfig.Interval")
}

func TestConformanceWithNotifier(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.EventStore {
		s, n, _ := newNotifierStore(t, 0)
		startNotifier(t, n)
		return s
	})
}
