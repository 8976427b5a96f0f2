package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/projection/internal/batchtel"
	"github.com/troupehq/troupe/projection/internal/hook"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// AllPartitions is the partition under which a projection over every
// partition keeps its checkpoint, status and lease, and the argument
// Resetter.ResetReadModel gets for it. No tenant can be named so:
// store.ValidateTenantID rejects '*'.
const AllPartitions = "*"

// Defaults of Config.
const (
	DefaultBatchSize          = 500
	DefaultPollInterval       = time.Second
	DefaultLeaseRetryInterval = time.Second
)

// DefaultRetry is the retry policy of failing events when Config.Retry
// leaves a field zero: 5 attempts, 100ms doubling up to 5s.
var DefaultRetry = retry.Policy{MaxAttempts: 5, InitialDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}

// FailureAction is what a projection does with an event its handlers keep
// failing on once the retries are used up.
type FailureAction int

const (
	// FailStop stops the projection at the event: the checkpoint stays
	// before it, the status is "failed" and names the event and the error.
	FailStop FailureAction = iota
	// FailSkip records the event and the error in projection_dead_letters
	// and moves the checkpoint past it, in one transaction, then goes on.
	FailSkip
)

func (a FailureAction) String() string {
	switch a {
	case FailStop:
		return "stop"
	case FailSkip:
		return "skip"
	default:
		return fmt.Sprintf("FailureAction(%d)", int(a))
	}
}

// Config configures a continuous Projection.
type Config struct {
	// Name identifies the projection: its checkpoint (subscriptions), lease,
	// status and dead letters are kept under it. Required: no default.
	Name string
	// Store is read with ReadAll. Defaults to a store/postgres store on
	// the pool given to New, without upcasters: when event types evolve,
	// pass a store configured with them (postgres.Config.Upcaster), so
	// the projection and its rebuilds see current types.
	Store store.EventStore
	// Partition limits the projection to one partition (tenant). Defaults
	// to every partition (recorded as AllPartitions).
	Partition string
	// Handlers are run for each event of their type, in log order.
	// Defaults to none.
	Handlers Registry
	// BatchHandlers are run once per batch with every event of the batch,
	// after Handlers, in order. Defaults to none.
	BatchHandlers []BatchHandler
	// BatchSize is the most events read and applied per transaction.
	// Defaults to DefaultBatchSize.
	BatchSize int
	// PollInterval is how often the log is read when no notification
	// arrives. Defaults to DefaultPollInterval.
	PollInterval time.Duration
	// DisableNotify turns LISTEN/NOTIFY wake-ups off, leaving polling only.
	// Defaults to false.
	DisableNotify bool
	// LeaseRetryInterval is how often a standby runner tries to take the
	// lease over, and how long a runner waits before reconnecting its
	// lease connection. Defaults to DefaultLeaseRetryInterval.
	LeaseRetryInterval time.Duration
	// Retry is how often a failing event is tried (MaxAttempts) before
	// OnFailure applies, and the jittered delays between tries; MaxDelay
	// also caps the wait between attempts to reach the database after
	// infrastructure errors, which are retried for as long as the
	// projection runs. Transient database errors a handler returns
	// (deadlocks, serialization failures, lock and statement timeouts,
	// lost connections…) are infrastructure errors: they never count as
	// attempts. Each zero field defaults to DefaultRetry's.
	Retry retry.Policy
	// OnFailure is what happens once an event's retries are used up.
	// Defaults to FailStop.
	OnFailure FailureAction
	// Reset deletes the read-model rows of partition (AllPartitions for
	// every partition) when the projection is rebuilt, in the transaction
	// that resets the checkpoint. Batch handlers implementing Resetter are
	// reset as well. Defaults to nil: only those are reset.
	Reset func(ctx context.Context, tx pgx.Tx, partition string) error
	// Logger receives diagnostics. Defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider creates the tracer of the "projection <Name>" span of
	// each batch (handler writes and checkpoint; see docs/telemetry.md).
	// Defaults to otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the instruments of the batch duration, events
	// projected, dead-lettered events and the lag gauges. Defaults to
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

func (c *Config) validate() error {
	switch {
	case c.Name == "":
		return configError("projection.Config.Name is empty")
	case c.BatchSize < 0:
		return configError("projection.Config.BatchSize %d is negative", c.BatchSize)
	case c.PollInterval < 0:
		return configError("projection.Config.PollInterval %v is negative", c.PollInterval)
	case c.LeaseRetryInterval < 0:
		return configError("projection.Config.LeaseRetryInterval %v is negative", c.LeaseRetryInterval)
	case c.OnFailure != FailStop && c.OnFailure != FailSkip:
		return configError("projection.Config.OnFailure %d is not FailStop or FailSkip", int(c.OnFailure))
	}
	if err := c.Retry.Validate("projection.Config.Retry"); err != nil {
		return configError("%v", err)
	}
	if c.Partition != "" {
		if _, err := store.ValidatePartition(c.Partition); err != nil {
			return configError("projection.Config.Partition: %v", err)
		}
	}
	for i, h := range c.BatchHandlers {
		if h == nil {
			return configError("projection.Config.BatchHandlers[%d] is nil", i)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.LeaseRetryInterval == 0 {
		c.LeaseRetryInterval = DefaultLeaseRetryInterval
	}
	c.Retry = c.Retry.WithDefaults(DefaultRetry)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Handlers = MergeRegistries(c.Handlers)
	return c
}

// State is a projection's state.
type State string

const (
	// StateStopped: no runner is running the projection.
	StateStopped State = "stopped"
	// StateStandby: this runner is running but another one holds the lease.
	StateStandby State = "standby"
	// StateRunning: the runner holding the lease is applying events.
	StateRunning State = "running"
	// StateRebuilding: the runner holding the lease is replaying the log
	// after a reset.
	StateRebuilding State = "rebuilding"
	// StateFailed: the projection stopped at a failing event (FailStop).
	StateFailed State = "failed"
)

// Projection is a continuous projection: a goroutine component that reads
// the global log from its checkpoint in batches, runs its handlers and
// commits the read-model writes and the new checkpoint in one transaction
// per batch. It wakes up on the store's notifications (LISTEN/NOTIFY) and
// polls as a fallback. Across processes, only the runner holding the
// projection's lease (a session advisory lock) applies events; the others
// stand by and take over when its connection goes away.
//
// Run it with Start and Stop, or with Run. Its methods are safe for
// concurrent use.
type Projection struct {
	cfg     Config
	pool    *pgxpool.Pool
	scope   string // partition, or AllPartitions
	store   store.EventStore
	lockKey string
	owner   string
	// leasePID is the backend pid of the lease connection while it holds
	// the lock, else 0; every write of the checkpoint or the status checks
	// that this backend still holds the lock (see fence.go).
	leasePID atomic.Uint32
	tel      *otelwire.Telemetry
	// consumer names batch spans "consumer <name>".
	consumer bool
	lag      lagTracker

	// runMu guards the run fields.
	runMu   sync.Mutex
	running bool
	stopCh  chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	rebuilds chan *rebuildRequest

	// mu guards what the worker publishes.
	mu         sync.Mutex
	state      State
	active     bool
	checkpoint store.Position
	failure    *HandlerError
	exitErr    error // why the last run ended, when not by Stop, ctx or FailStop
	changed    chan struct{}
}

// New checks cfg and returns a Projection on pool, not yet running. The
// pool holds the log, the checkpoint and the read model. A Projection
// needs a pool, not a single connection or a transaction: while it runs it
// holds a lease connection of its own and shares the process's listener
// connection (one per pool, see the package doc). A nil cfg is rejected:
// Config.Name has no default.
func New(pool *pgxpool.Pool, cfg *Config) (*Projection, error) {
	if pool == nil {
		return nil, configError("projection.New: pool is nil (a projection needs a *pgxpool.Pool: it holds a lease connection of its own)")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	if err := c.validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	p := &Projection{
		cfg:      c,
		pool:     pool,
		scope:    scopeOf(c.Partition),
		store:    c.Store,
		owner:    ownerID(),
		rebuilds: make(chan *rebuildRequest),
		state:    StateStopped,
		changed:  make(chan struct{}),
	}
	p.lockKey = lockKey(c.Name, p.scope)
	tel, err := batchtel.New(c.TracerProvider, c.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("new projection %q: %w", c.Name, err)
	}
	p.tel = tel
	if p.store == nil {
		s, err := postgres.New(pool, &postgres.Config{Logger: c.Logger})
		if err != nil {
			return nil, fmt.Errorf("new projection %q: %w", c.Name, err)
		}
		p.store = s
	}
	return p, nil
}

func init() {
	hook.MarkConsumer = func(p any) { p.(*Projection).consumer = true }
}

// lockKey is the advisory-lock key of a projection's lease.
func lockKey(name, scope string) string { return "troupe.projection/" + name + "/" + scope }

func scopeOf(partition string) string {
	if partition == "" {
		return AllPartitions
	}
	return partition
}

// ownerID names this runner in status rows: host, process and a random
// suffix telling runners of one process apart.
func ownerID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Name returns the projection's name.
func (p *Projection) Name() string { return p.cfg.Name }

// Partition returns the partition the projection is limited to, or
// AllPartitions.
func (p *Projection) Partition() string { return p.scope }

// Start starts the projection's goroutines and returns. The projection
// runs until Stop (ctx only carries values; cancelling it does not stop the
// projection) or until it stops at a failing event under FailStop. Starting
// a running projection returns ErrAlreadyRunning.
func (p *Projection) Start(ctx context.Context) error {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if p.running {
		return fmt.Errorf("start projection %q: %w", p.cfg.Name, ErrAlreadyRunning)
	}
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := make(chan struct{})
	done := make(chan struct{})
	p.running, p.stopCh, p.cancel, p.done = true, stop, cancel, done
	p.starting()
	go func() {
		defer close(done)
		defer cancel()
		_ = p.run(base, stop, nil)
		p.runMu.Lock()
		if p.done == done {
			p.running = false
		}
		p.runMu.Unlock()
	}()
	return nil
}

// Stop stops a started projection gracefully: the batch in flight is
// finished (committed or rolled back), the lease is released and Stop
// returns once every goroutine has ended. When ctx ends first, the batch in
// flight is cancelled (rolled back); Stop still waits for the goroutines,
// then returns ctx's error. Stopping a stopped projection does nothing.
func (p *Projection) Stop(ctx context.Context) error {
	p.runMu.Lock()
	stop, cancel, done := p.stopCh, p.cancel, p.done
	if stop != nil {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}
	p.runMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		cancel()
		<-done
		return fmt.Errorf("stop projection %q: %w", p.cfg.Name, ctx.Err())
	}
}

// Run runs the projection until ctx is cancelled (then the batch in flight
// is rolled back, as if the process died, and Run returns nil) or the
// projection stops at a failing event under FailStop (Run returns the
// *HandlerError). Running a running projection returns ErrAlreadyRunning.
func (p *Projection) Run(ctx context.Context) error {
	p.runMu.Lock()
	if p.running {
		p.runMu.Unlock()
		return fmt.Errorf("run projection %q: %w", p.cfg.Name, ErrAlreadyRunning)
	}
	rctx, cancel := context.WithCancel(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	p.running, p.stopCh, p.cancel, p.done = true, stop, cancel, done
	p.starting()
	p.runMu.Unlock()
	defer func() {
		cancel()
		p.runMu.Lock()
		if p.done == done {
			p.running = false
		}
		p.runMu.Unlock()
		close(done)
	}()
	err := p.run(rctx, stop, nil)
	if err != nil && rctx.Err() != nil && !errors.Is(err, ErrHandlerFailed) {
		return nil
	}
	return err
}

// Err returns the failure the projection stopped at under FailStop (a
// *HandlerError), or the error that ended its last run otherwise (one
// matching store.ErrTenantDropped for a projection limited to a partition
// that was dropped), or nil.
func (p *Projection) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failure != nil {
		return p.failure
	}
	return p.exitErr
}

// publish updates the published fields under mu and wakes every waiter.
func (p *Projection) publish(f func()) {
	p.mu.Lock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *Projection) setState(s State) {
	p.publish(func() { p.state = s })
}

func (p *Projection) setCheckpoint(c store.Position) {
	p.publish(func() { p.checkpoint = c })
}

func (p *Projection) currentCheckpoint() store.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checkpoint
}

// starting publishes the state of a runner just started: standby, no
// failure. Start, Run and Rebuild call it before they return or block, so
// a WaitFor right after Start does not see the previous run's failure.
func (p *Projection) starting() {
	p.publish(func() { p.state, p.active, p.failure = StateStandby, false, nil })
}

// run is the worker: it starts the lease goroutine, then applies batches
// while it holds the lease. It returns when ctx is done, stop is closed,
// the projection fails under FailStop, or (once != nil) the rebuild once
// is finished.
func (p *Projection) run(ctx context.Context, stop <-chan struct{}, once *rebuildRequest) (err error) {
	ctx = detachSpan(ctx)
	unobserve := p.observeLag(ctx)
	defer unobserve()
	l := newLease(p)
	lctx, lcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.run(lctx)
	}()
	w := &worker{p: p, l: l, stop: stop, pending: once, once: once != nil}
	defer func() {
		final := StateStopped
		var he *HandlerError
		if errors.As(err, &he) {
			final = StateFailed
		}
		if w.active {
			p.persistExit(ctx, final, he)
		}
		lcancel()
		wg.Wait()
		p.lag.stop()
		w.abandonRebuild(err)
		p.publish(func() {
			p.state, p.active = final, false
			if final == StateFailed {
				p.failure = he
			}
			p.exitErr = nil
			if err != nil && he == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.exitErr = err
			}
		})
	}()
	return w.loop(ctx)
}

// persistExit records the state the runner leaves the projection in,
// provided it still holds the lease (a runner that lost it writes nothing).
func (p *Projection) persistExit(ctx context.Context, s State, he *HandlerError) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := p.fenced(wctx, func(tx pgx.Tx) error {
		if s == StateFailed {
			return p.writeStatus(wctx, tx, s, he)
		}
		return p.writeStoppedStatus(wctx, tx)
	})
	if err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_status_write_failed",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.String("state", string(s)), slog.String("error", err.Error()))
	}
}
