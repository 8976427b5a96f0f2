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
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/otelwire"
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
	DefaultMaxAttempts        = 5
	DefaultInitialBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff         = 5 * time.Second
)

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

// RetryPolicy is how often and how fast a failing event is retried.
type RetryPolicy struct {
	// MaxAttempts is how many times an event is tried before the failure
	// action applies. Defaults to DefaultMaxAttempts.
	MaxAttempts int
	// InitialBackoff is the wait after the first failure; it doubles after
	// each further one. Defaults to DefaultInitialBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait. Defaults to DefaultMaxBackoff. It also caps
	// the wait between attempts to reach the database after infrastructure
	// errors, which are retried for as long as the projection runs.
	MaxBackoff time.Duration
}

// Config configures a continuous Projection.
type Config struct {
	// Name identifies the projection: its checkpoint (subscriptions), lease,
	// status and dead letters are kept under it. Required.
	Name string
	// Pool is the database holding the log, the checkpoint and the read
	// model. Required.
	Pool *pgxpool.Pool
	// Store is read with ReadAll. Defaults to a store/postgres store on
	// Pool.
	Store store.EventStore
	// Partition limits the projection to one partition (tenant). Defaults
	// to every partition (recorded as AllPartitions).
	Partition string
	// Handlers are run for each event of their type, in log order.
	Handlers Registry
	// BatchHandlers are run once per batch with every event of the batch,
	// after Handlers, in order.
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
	// Retry is the retry policy for failing events.
	Retry RetryPolicy
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
	// projected, dead-lettered events and the lag gauges (see
	// docs/telemetry.md). Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

func (c *Config) validate() error {
	switch {
	case c.Name == "":
		return configError("Config.Name is empty")
	case c.Pool == nil:
		return configError("Config.Pool is nil")
	case c.BatchSize < 0:
		return configError("Config.BatchSize %d is negative", c.BatchSize)
	case c.PollInterval < 0:
		return configError("Config.PollInterval %v is negative", c.PollInterval)
	case c.LeaseRetryInterval < 0:
		return configError("Config.LeaseRetryInterval %v is negative", c.LeaseRetryInterval)
	case c.Retry.MaxAttempts < 0:
		return configError("Config.Retry.MaxAttempts %d is negative", c.Retry.MaxAttempts)
	case c.Retry.InitialBackoff < 0:
		return configError("Config.Retry.InitialBackoff %v is negative", c.Retry.InitialBackoff)
	case c.Retry.MaxBackoff < 0:
		return configError("Config.Retry.MaxBackoff %v is negative", c.Retry.MaxBackoff)
	case c.OnFailure != FailStop && c.OnFailure != FailSkip:
		return configError("Config.OnFailure %d is not FailStop or FailSkip", int(c.OnFailure))
	}
	if c.Partition != "" {
		if _, err := store.ValidatePartition(c.Partition); err != nil {
			return configError("Config.Partition: %v", err)
		}
	}
	for i, h := range c.BatchHandlers {
		if h == nil {
			return configError("Config.BatchHandlers[%d] is nil", i)
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
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = DefaultMaxAttempts
	}
	if c.Retry.InitialBackoff == 0 {
		c.Retry.InitialBackoff = DefaultInitialBackoff
	}
	if c.Retry.MaxBackoff == 0 {
		c.Retry.MaxBackoff = DefaultMaxBackoff
	}
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
	scope   string // partition, or AllPartitions
	store   store.EventStore
	lockKey string
	owner   string
	tel     *otelwire.Telemetry
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
	changed    chan struct{}
}

// New checks cfg and returns a Projection, not yet running.
func New(cfg Config) (*Projection, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Projection{
		cfg:      cfg,
		scope:    scopeOf(cfg.Partition),
		store:    cfg.Store,
		owner:    ownerID(),
		rebuilds: make(chan *rebuildRequest),
		state:    StateStopped,
		changed:  make(chan struct{}),
	}
	p.lockKey = "troupe.projection/" + cfg.Name + "/" + p.scope
	tel, err := newTelemetry(cfg.TracerProvider, cfg.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("new projection %q: %w", cfg.Name, err)
	}
	p.tel = tel
	if p.store == nil {
		s, err := postgres.New(cfg.Pool, &postgres.Config{Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("new projection %q: %w", cfg.Name, err)
		}
		p.store = s
	}
	return p, nil
}

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

// Err returns the failure the projection stopped at under FailStop, or nil.
func (p *Projection) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failure == nil {
		return nil
	}
	return p.failure
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
		})
	}()
	return w.loop(ctx)
}

// persistExit records the state the runner leaves the projection in,
// while it still holds the lease.
func (p *Projection) persistExit(ctx context.Context, s State, he *HandlerError) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var err error
	if s == StateFailed {
		err = p.writeStatus(wctx, p.cfg.Pool, s, he)
	} else {
		err = p.writeStoppedStatus(wctx)
	}
	if err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_status_write_failed",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.String("state", string(s)), slog.String("error", err.Error()))
	}
}

// errStopRequested ends the worker loop when Stop is called during a
// retry wait.
var errStopRequested = errors.New("stop requested")

// worker is the state of one run of the worker loop.
type worker struct {
	p       *Projection
	l       *lease
	stop    <-chan struct{}
	gen     uint64
	active  bool
	pending *rebuildRequest // requested, not yet started
	rebuild *rebuildRun     // started
	once    bool            // exit when the rebuild is done
	backoff time.Duration
	// seen is the highest global position read so far, and recheck the
	// current delay before reading again a notified event not yet seen.
	seen    int64
	recheck time.Duration
}

func (w *worker) loop(ctx context.Context) error {
	p := w.p
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.stop:
			return nil
		default:
		}
		if !w.l.held.Load() {
			if w.active {
				w.active = false
				p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_lease_lost",
					slog.String("projection", p.cfg.Name), slog.String("partition", p.scope))
				p.publish(func() { p.state, p.active = StateStandby, false })
				p.lag.stop()
			}
			if err := w.wait(ctx); err != nil {
				return err
			}
			continue
		}
		if g := w.l.gen.Load(); g != w.gen || !w.active {
			if err := w.takeOver(ctx); err != nil {
				if werr := w.infraError(ctx, "projection_take_over_failed", err); werr != nil {
					return werr
				}
				continue
			}
			w.gen = g
		}
		if w.pending == nil && w.rebuild == nil {
			select {
			case r := <-p.rebuilds:
				w.pending = r
			default:
			}
		}
		if w.pending != nil {
			req := w.pending
			w.pending = nil
			if err := w.startRebuild(ctx, req); err != nil {
				req.reply(err)
				if w.once {
					return err
				}
				if werr := w.infraError(ctx, "projection_rebuild_reset_failed", err); werr != nil {
					return werr
				}
				continue
			}
		}
		n, err := w.step(ctx)
		if err != nil {
			var he *HandlerError
			switch {
			case errors.As(err, &he):
				p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projection_failed",
					slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
					slog.Int64("global_position", int64(he.Event.GlobalPosition)),
					slog.String("stream_id", string(he.Event.StreamID)),
					slog.String("event_type", he.Event.Type), slog.String("error", he.Err.Error()))
				return err
			case errors.Is(err, errStopRequested):
				return nil
			case ctx.Err() != nil:
				return ctx.Err()
			}
			if werr := w.infraError(ctx, "projection_batch_failed", err); werr != nil {
				return werr
			}
			continue
		}
		w.backoff = 0
		if finished, err := w.rebuildProgress(ctx, n); finished && w.once {
			return err
		}
		if n > 0 {
			w.recheck = 0
		}
		if n < p.cfg.BatchSize {
			var timeout time.Duration
			if n == 0 && w.l.notified.Load() > w.seen {
				// Notified of an event the read did not return yet: an
				// older transaction still in flight holds it back. Read
				// again soon, backing off up to the poll interval.
				w.recheck = min(max(2*w.recheck, minRecheck), p.cfg.PollInterval)
				timeout = w.recheck
			}
			if err := w.waitFor(ctx, timeout); err != nil {
				return err
			}
		}
	}
}

// minRecheck is the first delay before reading again a notified event
// that was not readable yet.
const minRecheck = 2 * time.Millisecond

// wait blocks until something may have changed: a wake-up from the lease
// (notification, poll tick, lease change), a rebuild request, Stop or ctx.
// It returns errStopRequested-free results: nil to go on, or the reason to
// exit (ctx's error; nil with stop closed is reported by the loop).
func (w *worker) wait(ctx context.Context) error { return w.waitFor(ctx, 0) }

// waitFor is wait with a timeout (none when 0).
func (w *worker) waitFor(ctx context.Context, timeout time.Duration) error {
	var rebuilds chan *rebuildRequest
	if w.pending == nil && w.rebuild == nil {
		rebuilds = w.p.rebuilds
	}
	var tick <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stop:
		return nil
	case <-w.l.wake:
	case <-tick:
	case r := <-rebuilds:
		w.pending = r
	}
	return nil
}

// infraError logs an infrastructure error and waits before the next try,
// doubling the wait up to Retry.MaxBackoff. It returns non-nil when the
// loop must exit instead.
func (w *worker) infraError(ctx context.Context, msg string, err error) error {
	p := w.p
	if w.backoff == 0 {
		w.backoff = p.cfg.Retry.InitialBackoff
	} else {
		w.backoff = min(2*w.backoff, p.cfg.Retry.MaxBackoff)
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, msg,
		slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
		slog.Duration("retry_in", w.backoff), slog.String("error", err.Error()))
	if err := sleep(ctx, w.stop, w.backoff); err != nil {
		if errors.Is(err, errStopRequested) {
			return nil // the loop sees stop closed and exits
		}
		return err
	}
	return nil
}

// sleep waits d, or until ctx is done (its error) or stop is closed
// (errStopRequested).
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errStopRequested
	}
}

// takeOver runs when the lease is (re)acquired: it creates the checkpoint
// when missing, loads it and records the projection as running.
func (w *worker) takeOver(ctx context.Context) error {
	p := w.p
	cp, err := p.ensureCheckpoint(ctx)
	if err != nil {
		return err
	}
	state := StateRunning
	if w.rebuild != nil {
		state = StateRebuilding
	}
	if err := p.writeStatus(ctx, p.cfg.Pool, state, nil); err != nil {
		return err
	}
	w.active = true
	w.seen = max(w.seen, int64(cp.GlobalPosition))
	p.publish(func() { p.checkpoint, p.active, p.state = cp, true, state })
	p.startLag(ctx, cp)
	p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "projection_lease_acquired",
		slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
		slog.Uint64("checkpoint_transaction_id", cp.TransactionID),
		slog.Int64("checkpoint_global_position", int64(cp.GlobalPosition)))
	return nil
}

// step reads one batch after the checkpoint and applies it. When a handler
// fails on the batch, the events are applied one by one with retries, so
// the failing event is known and the ones before it are kept; the failure
// action then applies to it. It returns how many events were read.
func (w *worker) step(ctx context.Context) (int, error) {
	p := w.p
	cp := p.currentCheckpoint()
	res, err := p.store.ReadAll(ctx, store.ReadAllOptions{After: cp, Partition: p.cfg.Partition, Limit: p.cfg.BatchSize})
	if err != nil {
		return 0, fmt.Errorf("read the log after %+v: %w", cp, err)
	}
	events := res.Events
	if len(events) == 0 {
		return 0, nil
	}
	for _, e := range events {
		w.seen = max(w.seen, int64(e.GlobalPosition))
	}
	p.lag.noteRead(events)
	err = p.commitBatch(ctx, cp, events)
	switch {
	case err == nil:
		return len(events), nil
	case errors.Is(err, errCheckpointMoved):
		return 0, w.reload(ctx)
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case !isHandlerFailure(err):
		return 0, err
	}
	if len(events) > 1 {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_batch_failed_isolating",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.Int("batch", len(events)), slog.String("error", err.Error()))
	}
	for i, e := range events {
		if err := w.applyOne(ctx, e, i == 0 && len(events) == 1, err); err != nil {
			if errors.Is(err, errCheckpointMoved) {
				return 0, w.reload(ctx)
			}
			return i, err
		}
	}
	return len(events), nil
}

// reload reads the checkpoint again after another runner moved it.
func (w *worker) reload(ctx context.Context) error {
	p := w.p
	cp, err := p.ensureCheckpoint(ctx)
	if err != nil {
		return err
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_checkpoint_moved",
		slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
		slog.Uint64("checkpoint_transaction_id", cp.TransactionID),
		slog.Int64("checkpoint_global_position", int64(cp.GlobalPosition)))
	p.lag.noteApplied(int64(cp.GlobalPosition), time.Time{})
	p.setCheckpoint(cp)
	return nil
}

// applyOne applies one event in a transaction of its own, retrying with
// backoff; firstFailed says the first attempt was already made (and failed
// with firstErr). When the attempts run out, FailSkip dead-letters the
// event and FailStop returns the *HandlerError.
func (w *worker) applyOne(ctx context.Context, e store.Event, firstFailed bool, firstErr error) error {
	p := w.p
	attempt, lastErr := 0, error(nil)
	if firstFailed {
		attempt, lastErr = 1, firstErr
	}
	backoff := p.cfg.Retry.InitialBackoff
	for attempt < p.cfg.Retry.MaxAttempts {
		if attempt > 0 {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_event_retry",
				slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
				slog.Int64("global_position", int64(e.GlobalPosition)), slog.Int("attempt", attempt),
				slog.Duration("retry_in", backoff), slog.String("error", lastErr.Error()))
			if err := sleep(ctx, w.stop, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, p.cfg.Retry.MaxBackoff)
		}
		attempt++
		err := p.commitBatch(ctx, p.currentCheckpoint(), []store.Event{e})
		if err == nil {
			return nil
		}
		if errors.Is(err, errCheckpointMoved) || ctx.Err() != nil || !isHandlerFailure(err) {
			return err
		}
		lastErr = err
	}
	he := &HandlerError{Projection: p.cfg.Name, Event: e, Attempts: attempt, Err: handlerCause(lastErr)}
	if p.cfg.OnFailure == FailSkip {
		if err := p.deadLetter(ctx, e, he); err != nil {
			return err
		}
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projection_event_skipped",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.Int64("global_position", int64(e.GlobalPosition)), slog.String("stream_id", string(e.StreamID)),
			slog.String("event_type", e.Type), slog.String("error", he.Err.Error()))
		return nil
	}
	return he
}

// handlerFailure is an error a handler returned for a batch, as opposed
// to an infrastructure failure around it.
type handlerFailure struct {
	event store.Event
	batch int
	err   error
}

func (f *handlerFailure) Error() string { return f.err.Error() }
func (f *handlerFailure) Unwrap() error { return f.err }

func isHandlerFailure(err error) bool {
	var f *handlerFailure
	return errors.As(err, &f)
}

// handlerCause returns the handler's own error inside err.
func handlerCause(err error) error {
	var f *handlerFailure
	if errors.As(err, &f) {
		return f.err
	}
	return err
}

// commitBatch applies events in one transaction that moves the checkpoint
// from cp to the last event, provided it is still at cp, under the batch's
// span.
func (p *Projection) commitBatch(ctx context.Context, cp store.Position, events []store.Event) error {
	ctx, span := p.startBatch(ctx, events)
	err := p.applyBatch(ctx, cp, events)
	applied := 0
	if err == nil {
		applied = len(events)
	}
	span.End(ctx, applied, err)
	if err == nil {
		// Published after the span ended and the lag noted, so a waiter
		// woken by the new checkpoint finds the batch's span complete and
		// the lag gauges at the new checkpoint.
		last := events[len(events)-1]
		p.lag.noteApplied(int64(last.GlobalPosition), last.Created)
		p.setCheckpoint(last.Position())
	}
	return err
}

// applyBatch is commitBatch without telemetry and without publishing the
// new checkpoint.
func (p *Projection) applyBatch(ctx context.Context, cp store.Position, events []store.Event) (err error) {
	tx, err := p.cfg.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin batch: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		for _, bh := range p.cfg.BatchHandlers {
			if f, ok := bh.(BatchFinisher); ok {
				f.FinishBatch(tx, committed)
			}
		}
	}()
	fail := func(e store.Event, n int, herr error) error {
		if tx.Conn().IsClosed() || ctx.Err() != nil {
			// The connection or the context is gone: not the handler's
			// fault, whatever it returned.
			return fmt.Errorf("apply batch: %w", herr)
		}
		return &handlerFailure{event: e, batch: n, err: herr}
	}
	for _, e := range events {
		for _, h := range p.cfg.Handlers.handlersFor(e.Type) {
			if herr := h(ctx, tx, e); herr != nil {
				return fail(e, 1, herr)
			}
		}
	}
	for _, bh := range p.cfg.BatchHandlers {
		if herr := bh.HandleBatch(ctx, tx, events); herr != nil {
			return fail(events[0], len(events), herr)
		}
	}
	next := events[len(events)-1].Position()
	if err := p.advanceCheckpoint(ctx, tx, cp, next); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	committed = true
	return nil
}

const (
	checkpointEnsureSQL = `INSERT INTO subscriptions (subscription_id, partition, version)
VALUES ($1, $2, 1) ON CONFLICT DO NOTHING`
	checkpointReadSQL = `SELECT last_processed_transaction_id, last_processed_position FROM subscriptions
WHERE subscription_id = $1 AND partition = $2 AND version = 1`
	checkpointAdvanceSQL = `UPDATE subscriptions
SET last_processed_transaction_id = $3::xid8, last_processed_position = $4, updated = now()
WHERE subscription_id = $1 AND partition = $2 AND version = 1
  AND last_processed_transaction_id = $5::xid8 AND last_processed_position = $6`
)

// ensureCheckpoint creates the checkpoint at the start of the log when it
// is missing (never resetting one) and returns it.
func (p *Projection) ensureCheckpoint(ctx context.Context) (store.Position, error) {
	if _, err := p.cfg.Pool.Exec(ctx, checkpointEnsureSQL, p.cfg.Name, p.scope); err != nil {
		return store.Position{}, fmt.Errorf("create checkpoint: %w", err)
	}
	return loadCheckpoint(ctx, p.cfg.Pool, p.cfg.Name, p.scope)
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// loadCheckpoint reads a checkpoint; a missing one is the start of the log.
func loadCheckpoint(ctx context.Context, q queryRower, name, scope string) (store.Position, error) {
	var tx uint64
	var gp int64
	err := q.QueryRow(ctx, checkpointReadSQL, name, scope).Scan(&tx, &gp)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Position{}, nil
	}
	if err != nil {
		return store.Position{}, fmt.Errorf("read checkpoint: %w", err)
	}
	return store.Position{TransactionID: tx, GlobalPosition: store.GlobalPosition(gp)}, nil
}

// advanceCheckpoint moves the checkpoint from cp to next in tx, or returns
// errCheckpointMoved when it is no longer at cp.
func (p *Projection) advanceCheckpoint(ctx context.Context, tx pgx.Tx, cp, next store.Position) error {
	tag, err := tx.Exec(ctx, checkpointAdvanceSQL, p.cfg.Name, p.scope,
		next.TransactionID, int64(next.GlobalPosition), cp.TransactionID, int64(cp.GlobalPosition))
	if err != nil {
		return fmt.Errorf("advance checkpoint: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return errCheckpointMoved
	}
	return nil
}

const deadLetterSQL = `INSERT INTO projection_dead_letters (projection, scope, partition, transaction_id, global_position,
    stream_id, stream_position, message_id, message_type, message_data, message_metadata, error, attempts)
VALUES ($1, $2, $3, $4::xid8, $5, $6, $7, $8, $9, $10::text::jsonb, $11::text::jsonb, $12, $13)
ON CONFLICT (projection, scope, partition, global_position)
DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, created = now()`

// deadLetter records e as skipped and moves the checkpoint past it, in one
// transaction, under a batch span of its own (no event applied).
func (p *Projection) deadLetter(ctx context.Context, e store.Event, he *HandlerError) error {
	ctx, span := p.startBatch(ctx, []store.Event{e})
	err := p.writeDeadLetter(ctx, e, he)
	if err == nil {
		p.tel.DeadLettered(ctx, p.cfg.Name, e.Type, he.Err)
	}
	span.End(ctx, 0, err)
	if err == nil {
		p.lag.noteApplied(int64(e.GlobalPosition), e.Created)
		p.setCheckpoint(e.Position())
	}
	return err
}

func (p *Projection) writeDeadLetter(ctx context.Context, e store.Event, he *HandlerError) error {
	cp := p.currentCheckpoint()
	meta, err := jsonText(e.Metadata)
	if err != nil {
		return fmt.Errorf("dead-letter %s: encode metadata: %w", e, err)
	}
	data := string(e.Data)
	if len(e.Data) == 0 {
		data = "null"
	}
	err = pgx.BeginFunc(ctx, p.cfg.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, deadLetterSQL, p.cfg.Name, p.scope, e.Partition, e.TransactionID, int64(e.GlobalPosition),
			string(e.StreamID), int64(e.StreamPosition), e.MessageID, e.Type, data, meta, he.Err.Error(), he.Attempts); err != nil {
			return fmt.Errorf("insert dead letter: %w", err)
		}
		return p.advanceCheckpoint(ctx, tx, cp, e.Position())
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", e, err)
	}
	return nil
}
