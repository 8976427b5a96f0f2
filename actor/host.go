package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// Host runs the stream actors of the aggregate kinds registered on it. It
// is safe for concurrent use. Create it with New, register kinds with
// Register, then Start it; Stop drains it.
type Host struct {
	cfg        Config
	log        *slog.Logger
	tel        *otelwire.Telemetry
	system     *protoactor.ActorSystem
	store      store.EventStore
	snapshots  store.SnapshotStore // nil when store is not a SnapshotStore
	baseCtx    context.Context     // cancelled when Stop gives up waiting
	cancelBase context.CancelFunc

	kindsMu sync.RWMutex
	kinds   map[string]anyKind

	mu          sync.Mutex
	state       hostState
	cache       *lru.Cache[key, *activation]
	passivating map[key]*activation
	waiting     map[key]*slotWait // streams whose senders wait for their actor to be (re)activated
	needed      int               // streams in waiting without an actor yet: the slots they need
	live        int
	peakLive    int
	seq         uint64
	slotFree    chan struct{} // closed and replaced whenever an actor stops
	quit        chan struct{} // closed when Stop begins
	stopDone    chan struct{} // closed when Stop has finished
	stopErr     error
	evictReason string // why the cache is evicting right now (a otelwire.Reason*)

	// onDelivered, when set (by tests), is called after deliver has put a
	// message in a stream actor's mailbox.
	onDelivered atomic.Pointer[func()]

	jobs    sync.WaitGroup // store calls, backoffs and snapshot writes run off the actors' loops
	scanner sync.WaitGroup

	activations    atomic.Int64
	passivations   atomic.Int64
	eventsReplayed atomic.Int64
	appends        atomic.Int64
	appendCalls    atomic.Int64 // store calls made to append: lone appends and cross-stream batches
	appender       *appender    // nil: every stream appends on its own
	conflicts      atomic.Int64

	cluster     *clusterRuntime // nil: single process
	projections projectionSet   // guarded by mu (see projections.go)
}

type hostState uint8

const (
	hostNew hostState = iota
	hostRunning
	hostStopping
	hostStopped
)

// key names one stream actor.
type key struct {
	tenant string
	kind   string
	stream store.StreamID
}

// activation is one incarnation of a stream actor. Its fields are guarded
// by Host.mu, except stopped which is closed once.
type activation struct {
	key      key
	pid      *protoactor.PID
	lastUsed time.Time
	stopped  chan struct{}
}

// passivateMsg asks a stream actor to finish the commands it has and stop.
// It is always the last message the host sends to an activation.
type passivateMsg struct {
	reason string // a otelwire.Reason*
}

// New returns a Host whose stream actors read and append events in st.
// When st also implements store.SnapshotStore, kinds may take aggregate
// snapshots. A nil cfg means every default. It starts no goroutines; call
// Start.
func New(st store.EventStore, cfg *Config) (*Host, error) {
	if st == nil {
		return nil, invalidConfig("actor.New: the event store is nil")
	}
	c, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	h := &Host{
		store:       st,
		cfg:         c,
		log:         c.Logger,
		kinds:       map[string]anyKind{},
		passivating: map[key]*activation{},
		waiting:     map[key]*slotWait{},
		slotFree:    make(chan struct{}),
		quit:        make(chan struct{}),
		stopDone:    make(chan struct{}),
	}
	h.snapshots, _ = st.(store.SnapshotStore)
	h.appender = newAppender(h)
	h.tel, err = otelwire.New(&otelwire.Config{TracerProvider: c.TracerProvider, MeterProvider: c.MeterProvider})
	if err != nil {
		return nil, fmt.Errorf("actor: create telemetry: %w", err)
	}
	// The cache is bounded by MaxActors; Host.deliver keeps the total of
	// cached and passivating actors under the same cap.
	h.cache, err = lru.NewWithEvict(c.MaxActors, h.onEvict)
	if err != nil {
		return nil, fmt.Errorf("actor: create actor cache: %w", err)
	}
	h.baseCtx, h.cancelBase = context.WithCancel(context.Background())
	sysCfg := protoactor.Configure(protoactor.WithDeadLetterThrottleInterval(100 * time.Millisecond))
	logger := slog.New(minLevelHandler{inner: c.Logger.Handler(), min: slog.LevelWarn}).With("component", "protoactor")
	sysCfg.LoggerFactory = func(*protoactor.ActorSystem) *slog.Logger { return logger }
	h.system = protoactor.NewActorSystemWithConfig(sysCfg)
	if c.Cluster != nil {
		if h.cluster, err = newClusterRuntime(h, c.Cluster); err != nil {
			return nil, err
		}
		h.addProjectionKind()
	}
	return h, nil
}

// Start starts the host: from now on Send and State are served. It starts
// the idle scanner (unless idle passivation is disabled) and the
// projections registered with RunProjection. With Config.Cluster it first
// joins the cluster (binding ClusterConfig.Address). Starting a running
// host does nothing; starting a stopped one returns ErrStopped.
func (h *Host) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("actor: start host: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case hostRunning:
		return nil
	case hostStopping, hostStopped:
		return fmt.Errorf("actor: start host: %w", ErrStopped)
	}
	if h.cluster != nil {
		// Joined before serving: requests that reach this member while it
		// joins wait for h.mu.
		if err := h.cluster.start(); err != nil {
			return err
		}
	}
	h.state = hostRunning
	h.startProjections()
	if h.cfg.IdleTimeout > 0 {
		h.scanner.Add(1)
		go h.scanIdle()
	}
	return nil
}

// Stop drains the host. New commands are refused with ErrStopped at once;
// every command already accepted is answered (with its result or an error)
// before Stop returns; in-flight appends and snapshot writes are waited
// for; every projection run by the host is stopped (its batch in flight
// finished) and its actor waited for; then the actor system and the idle
// scanner are stopped.
//
// If ctx expires first, Stop cancels the store calls still running (their
// commands fail, commands not yet started fail with ErrStopped), still
// waits for every actor to finish, and returns an error wrapping ctx.Err().
// Calling Stop again waits for the first call and returns its result.
func (h *Host) Stop(ctx context.Context) error {
	h.mu.Lock()
	switch h.state {
	case hostStopping, hostStopped:
		done := h.stopDone
		h.mu.Unlock()
		select {
		case <-done:
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.stopErr
		case <-ctx.Done():
			return fmt.Errorf("actor: stop host: %w", ctx.Err())
		}
	}
	h.state = hostStopping
	close(h.quit)
	// Passivate every cached actor: each gets a passivate message after
	// the commands already in its mailbox, handles them and stops.
	h.evict(otelwire.ReasonStopped, h.cache.Purge)
	h.stopProjections(ctx)
	h.mu.Unlock()
	if h.cluster != nil {
		// The other members stop routing here while this one drains;
		// meanwhile their requests get ErrStopped and are retried.
		h.cluster.announceLeaving()
	}

	h.scanner.Wait()

	var stopErr error
	if err := h.waitDrained(ctx.Done()); err != nil {
		stopErr = fmt.Errorf("actor: stop host: %w", ctx.Err())
		h.log.Warn("actor_host_stop_timeout", slog.Any("error", ctx.Err()))
		h.cancelBase()
		_ = h.waitDrained(nil)
	}
	h.waitProjections()
	if stopErr == nil && ctx.Err() != nil {
		stopErr = fmt.Errorf("actor: stop host: %w", ctx.Err()) // a projection's batch was abandoned
	}
	h.jobs.Wait()
	if h.cluster != nil {
		// Sends and States of this host still placing their requests:
		// each ends after its current attempt (no retry once quit is
		// closed), at most RequestTimeout.
		h.cluster.callers.Wait()
	}
	if h.cluster == nil || !h.cluster.leave() {
		h.system.Shutdown()
	}
	h.cancelBase()

	h.mu.Lock()
	defer h.mu.Unlock()
	h.state = hostStopped
	h.stopErr = stopErr
	close(h.stopDone)
	return stopErr
}

var errGaveUp = errors.New("gave up")

// waitDrained waits until no stream actor is alive, or until giveUp is
// closed.
func (h *Host) waitDrained(giveUp <-chan struct{}) error {
	for {
		h.mu.Lock()
		live, ch := h.live, h.slotFree
		h.mu.Unlock()
		if live == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-giveUp:
			return errGaveUp
		}
	}
}

// aborted reports whether Stop has given up waiting: store calls are being
// cancelled and queued commands fail with ErrStopped.
func (h *Host) aborted() bool { return h.baseCtx.Err() != nil }

// deliver posts msg to the stream actor for k, activating it when needed.
// It waits while the stream's previous activation is still stopping, and
// while the host is at MaxActors live actors.
func (h *Host) deliver(ctx context.Context, k key, rt anyKind, msg any) error {
	h.mu.Lock()
	waiting := false // k's waiters count this call
	leave := func() {
		if waiting {
			h.unwait(k)
			waiting = false
		}
	}
	for {
		switch h.state {
		case hostNew:
			leave()
			h.mu.Unlock()
			return ErrNotStarted
		case hostStopping, hostStopped:
			leave()
			h.mu.Unlock()
			return ErrStopped
		}
		if act, ok := h.cache.Get(k); ok {
			leave()
			act.lastUsed = time.Now()
			h.system.Root.Send(act.pid, msg)
			h.mu.Unlock()
			h.delivered()
			return nil
		}
		var wait <-chan struct{}
		if old, ok := h.passivating[k]; ok {
			// The previous activation must finish its commands before a
			// new one loads the stream, or the new one would start stale.
			// Its slot becomes this stream's.
			h.wait(k, &waiting)
			wait = old.stopped
		} else if h.live >= h.cfg.MaxActors {
			// At the cap: wait for a slot, passivating least recently
			// used actors if the ones already stopping are too few.
			h.wait(k, &waiting)
			h.makeRoom()
			wait = h.slotFree
		} else {
			act, err := h.spawn(k, rt, msg)
			if err != nil {
				leave()
				h.mu.Unlock()
				return err
			}
			h.cache.Add(k, act)
			h.served(k)
			leave()
			h.system.Root.Send(act.pid, msg)
			h.mu.Unlock()
			h.delivered()
			return nil
		}
		h.mu.Unlock()
		select {
		case <-wait:
		case <-h.quit:
		case <-ctx.Done():
			h.mu.Lock()
			leave()
			h.mu.Unlock()
			return ctx.Err()
		}
		h.mu.Lock()
	}
}

// slotWait counts the senders waiting for one stream's actor.
type slotWait struct {
	senders int
	served  bool // an actor was started for the stream since they began
}

// wait counts a sender waiting for k's actor (once per call: *counted
// says whether it already is) and makes k need a slot again when an
// actor started for it meanwhile is gone. Called with h.mu held.
func (h *Host) wait(k key, counted *bool) {
	w := h.waiting[k]
	if w == nil {
		w = &slotWait{}
		h.waiting[k] = w
		h.needed++
	} else if w.served {
		w.served = false
		h.needed++
	}
	if !*counted {
		w.senders++
		*counted = true
	}
}

// unwait stops counting a sender waiting for k's actor. Called with h.mu
// held.
func (h *Host) unwait(k key) {
	w := h.waiting[k]
	w.senders--
	if w.senders > 0 {
		return
	}
	if !w.served {
		h.needed--
	}
	delete(h.waiting, k)
}

// served records that an actor was started for k: the senders waiting for
// it no longer need a slot. Called with h.mu held.
func (h *Host) served(k key) {
	if w := h.waiting[k]; w != nil && !w.served {
		w.served = true
		h.needed--
	}
}

// makeRoom passivates least recently used actors until the free slots and
// the slots of actors already stopping cover the streams waiting for one:
// when many senders wait at the cap, exactly as many actors are passivated
// as streams need a slot. Called with h.mu held.
func (h *Host) makeRoom() {
	for h.needed > h.cfg.MaxActors-h.live+len(h.passivating) && h.cache.Len() > 0 {
		h.evict(otelwire.ReasonEvicted, func() { h.cache.RemoveOldest() })
	}
}

func (h *Host) delivered() {
	if f := h.onDelivered.Load(); f != nil {
		(*f)()
	}
}

// spawn starts a stream actor for k. Called with h.mu held.
// The activation's span is a child of the span of first, the message that
// caused it.
func (h *Host) spawn(k key, rt anyKind, first any) (*activation, error) {
	h.seq++
	act := &activation{key: k, lastUsed: time.Now(), stopped: make(chan struct{})}
	var parent trace.SpanContext
	if t, ok := first.(traced); ok {
		parent = t.spanContext()
	}
	a := rt.newActor(h, act, parent)
	props := protoactor.PropsFromProducer(func() protoactor.Actor { return a })
	pid, err := h.system.Root.SpawnNamed(props, "stream-"+strconv.FormatUint(h.seq, 10))
	if err != nil {
		return nil, fmt.Errorf("actor: spawn stream actor for %s/%s: %w", k.tenant, k.stream, err)
	}
	act.pid = pid
	h.live++
	h.peakLive = max(h.peakLive, h.live)
	h.activations.Add(1)
	return act, nil
}

// evict runs a cache operation that may evict actors, recording why.
// Called with h.mu held.
func (h *Host) evict(reason string, op func()) {
	h.evictReason = reason
	op()
	h.evictReason = ""
}

// onEvict is the cache's eviction callback; it runs with h.mu held (every
// cache call is made under h.mu). The evicted actor gets a passivate
// message after every command already sent to it; no command is sent to it
// afterwards.
func (h *Host) onEvict(k key, act *activation) {
	h.passivating[k] = act
	h.passivations.Add(1)
	reason := h.evictReason
	if reason == "" {
		reason = otelwire.ReasonEvicted
	}
	h.system.Root.Send(act.pid, passivateMsg{reason: reason})
}

// actorStopped is called by a stream actor when it has stopped.
func (h *Host) actorStopped(act *activation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.passivating[act.key] == act {
		delete(h.passivating, act.key)
	}
	h.live--
	close(act.stopped)
	close(h.slotFree)
	h.slotFree = make(chan struct{})
}

// scanIdle passivates idle actors until Stop begins.
func (h *Host) scanIdle() {
	defer h.scanner.Done()
	t := time.NewTicker(h.cfg.IdleScanInterval)
	defer t.Stop()
	for {
		select {
		case <-h.quit:
			return
		case now := <-t.C:
			h.passivateIdle(now)
		}
	}
}

func (h *Host) passivateIdle(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != hostRunning {
		return
	}
	// The cache is in recency order and lastUsed is set on every use, so
	// the idle actors are the oldest ones.
	for {
		k, act, ok := h.cache.GetOldest()
		if !ok || now.Sub(act.lastUsed) < h.cfg.IdleTimeout {
			return
		}
		h.evict(otelwire.ReasonIdle, func() { h.cache.Remove(k) })
	}
}

// Stats is a snapshot of the host's counters.
type Stats struct {
	// LiveActors is the number of stream actors alive: cached ones plus
	// ones being passivated. It never exceeds Config.MaxActors.
	LiveActors int
	// PeakLiveActors is the highest LiveActors seen since New.
	PeakLiveActors int
	// Passivating is the number of live actors being passivated.
	Passivating int
	// Activations counts stream actors started.
	Activations int64
	// Passivations counts stream actors asked to stop (idle, evicted by
	// the cache or drained by Stop).
	Passivations int64
	// EventsReplayed counts events read and applied to rebuild state: on
	// activation (after the snapshot, if any) and after conflicts or
	// ambiguous failures.
	EventsReplayed int64
	// Appends counts successful appends (one per group commit batch).
	Appends int64
	// AppendCalls counts the store calls made to append: one per lone
	// append and one per cross-stream batch, however many streams it
	// wrote (see Config.MaxAppendBatch).
	AppendCalls int64
	// Conflicts counts appends that failed with a version conflict.
	Conflicts int64
}

// Stats returns the host's counters.
func (h *Host) Stats() Stats {
	h.mu.Lock()
	s := Stats{LiveActors: h.live, PeakLiveActors: h.peakLive, Passivating: len(h.passivating)}
	h.mu.Unlock()
	s.Activations = h.activations.Load()
	s.Passivations = h.passivations.Load()
	s.EventsReplayed = h.eventsReplayed.Load()
	s.Appends = h.appends.Load()
	s.AppendCalls = h.appendCalls.Load()
	s.Conflicts = h.conflicts.Load()
	return s
}

// storeCtx returns the context for one store call made by an actor.
func (h *Host) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.baseCtx, h.cfg.StoreTimeout)
}

// post sends msg to an actor from outside its receive loop.
func (h *Host) post(pid *protoactor.PID, msg any) { h.system.Root.Send(pid, msg) }

// minLevelHandler drops records below min; protoactor logs its life cycle
// at info level, which is noise for a library's users.
type minLevelHandler struct {
	inner slog.Handler
	min   slog.Level
}

func (m minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.inner.Enabled(ctx, l)
}

func (m minLevelHandler) Handle(ctx context.Context, r slog.Record) error {
	return m.inner.Handle(ctx, r)
}

func (m minLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevelHandler{inner: m.inner.WithAttrs(attrs), min: m.min}
}

func (m minLevelHandler) WithGroup(name string) slog.Handler {
	return minLevelHandler{inner: m.inner.WithGroup(name), min: m.min}
}
