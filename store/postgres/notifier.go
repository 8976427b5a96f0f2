package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/store"
)

// ErrNotifierStarted is returned by [Notifier.Start] on a Notifier that was
// already started (Notifiers are not restartable).
var ErrNotifierStarted = errors.New("postgres: notifier already started")

// notifySQL sends one notification per partition, with the payload an
// append statement sends ({"partition":…,"globalPosition":…}, built by the
// same json_build_object), in one statement and so one transaction.
const notifySQL = `SELECT pg_notify('` + NotifyChannel + `',
       json_build_object('partition', p.partition, 'globalPosition', p.global_position)::text)
FROM unnest($1::text[], $2::bigint[]) AS p (partition, global_position)`

// NotifierConfig configures a Notifier. The zero value (or nil) is ready to
// use.
type NotifierConfig struct {
	// Interval is the shortest time between two notification statements:
	// appends poked within one Interval share one statement, which notifies
	// once per partition written. It is also the longest a listener waits
	// beyond an append's commit, plus the statement's round trip. Defaults
	// to 5ms.
	Interval time.Duration
	// Logger receives failed notification statements. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// DefaultNotifyInterval is NotifierConfig.Interval's default.
const DefaultNotifyInterval = 5 * time.Millisecond

// validate reports the first unusable field of c, by name.
func (c *NotifierConfig) validate() error {
	if c.Interval < 0 {
		return fmt.Errorf("NotifierConfig.Interval is %v, must not be negative", c.Interval)
	}
	return nil
}

// withDefaults returns a copy of c (nil allowed) with every unset field
// filled in.
func (c *NotifierConfig) withDefaults() NotifierConfig {
	var out NotifierConfig
	if c != nil {
		out = *c
	}
	if out.Interval == 0 {
		out.Interval = DefaultNotifyInterval
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// Notifier sends the stores' append notifications after their commits,
// coalesced: a store whose Config.Notifier is set calls [Notifier.Poke]
// after each append on the pool, and the Notifier's goroutine notifies
// [NotifyChannel] at most once per Interval, once per partition poked in
// that window with the highest global position poked for it. The payload
// is the one the append statements send, so listeners work unchanged.
//
// Start it before (or while) the stores append and Stop it when done;
// pokes made before Start are sent once it runs. It is safe for
// concurrent use.
type Notifier struct {
	pool     *pgxpool.Pool
	interval time.Duration
	logger   *slog.Logger

	mu      sync.Mutex
	pending map[string]store.GlobalPosition // partition → highest position poked
	started bool
	stopCtx context.Context // set by Stop, read by the loop after stop closes

	wake chan struct{} // capacity 1: a poke since the last flush
	stop chan struct{} // closed by Stop
	done chan struct{} // closed when the loop returns
	once sync.Once     // closes stop
}

// NewNotifier returns a Notifier that sends its notifications on
// connections of pool. cfg may be nil.
func NewNotifier(pool *pgxpool.Pool, cfg *NotifierConfig) (*Notifier, error) {
	if pool == nil {
		return nil, errors.New("postgres.NewNotifier: pool is nil")
	}
	if cfg != nil {
		if err := cfg.validate(); err != nil {
			return nil, fmt.Errorf("postgres.NewNotifier: %w", err)
		}
	}
	c := cfg.withDefaults()
	return &Notifier{
		pool:     pool,
		interval: c.Interval,
		logger:   c.Logger,
		pending:  make(map[string]store.GlobalPosition),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

// Poke records that an append to partition committed with pos as its last
// global position, and wakes the Notifier. It never blocks on the
// database.
func (n *Notifier) Poke(partition string, pos store.GlobalPosition) {
	n.mu.Lock()
	if cur, ok := n.pending[partition]; !ok || pos > cur {
		n.pending[partition] = pos
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Start starts the Notifier's goroutine, which runs until [Notifier.Stop]
// is called or ctx is done. It returns [ErrNotifierStarted] when called a
// second time.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return ErrNotifierStarted
	}
	n.started = true
	go n.run(ctx)
	return nil
}

// Stop sends what was poked and not yet sent, stops the goroutine and
// waits for it to end, or for ctx to be done (then it returns ctx's error
// and the goroutine ends on its own after that last statement). The last
// statement runs with ctx. Stopping a Notifier that was never started, or
// stopping it again, returns nil at once.
func (n *Notifier) Stop(ctx context.Context) error {
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	if !started {
		return nil
	}
	n.once.Do(func() {
		n.mu.Lock()
		n.stopCtx = ctx
		n.mu.Unlock()
		close(n.stop)
	})
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop notifier: %w", ctx.Err())
	}
}

// run is the Notifier's goroutine: it waits for a poke, sends, then lets
// at least one interval pass before it sends again.
func (n *Notifier) run(ctx context.Context) {
	defer close(n.done)
	timer := time.NewTimer(n.interval)
	defer timer.Stop()
	for {
		select {
		case <-n.wake:
		case <-n.stop:
			n.mu.Lock()
			stopCtx := n.stopCtx
			n.mu.Unlock()
			n.flush(stopCtx)
			return
		case <-ctx.Done():
			return
		}
		n.flush(ctx)
		timer.Reset(n.interval)
		select {
		case <-timer.C:
		case <-n.stop:
			// The loop's first select sees stop too and sends the rest.
		case <-ctx.Done():
			return
		}
	}
}

// flush sends a notification for every partition poked since the last
// flush, in one statement. A failure is logged and the positions are
// dropped: notifications are hints, and listeners poll anyway.
func (n *Notifier) flush(ctx context.Context) {
	n.mu.Lock()
	if len(n.pending) == 0 {
		n.mu.Unlock()
		return
	}
	partitions := make([]string, 0, len(n.pending))
	positions := make([]int64, 0, len(n.pending))
	for p, pos := range n.pending {
		partitions = append(partitions, p)
		positions = append(positions, int64(pos))
	}
	clear(n.pending)
	n.mu.Unlock()
	if _, err := n.pool.Exec(ctx, notifySQL, partitions, positions); err != nil {
		n.logger.LogAttrs(ctx, slog.LevelWarn, "notify_failed",
			slog.Int("partitions", len(partitions)), slog.String("error", err.Error()))
	}
}
