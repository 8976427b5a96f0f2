package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
)

// ProjectionRunner is a projection the host runs as an actor.
// *projection.Projection and *consumer.Consumer implement it.
//
// The host owns a runner it was given: it calls Run (again after each
// failure), Stop and Status, and nothing else must start or stop it.
type ProjectionRunner interface {
	// Run runs the projection until ctx is cancelled or Stop is called
	// (then it returns nil), or until it fails (it returns why).
	Run(ctx context.Context) error
	// Stop makes a running Run return, finishing the work in flight; when
	// ctx ends first the work in flight is abandoned. It returns once Run
	// has returned, and does nothing when Run is not running.
	Stop(ctx context.Context) error
	// Status reports the projection's stored status and this runner's
	// own state.
	Status(ctx context.Context) (projection.Status, error)
}

// ProjectionOptions are the options of a projection run by the host. A
// nil *ProjectionOptions, and the zero value of every field, means the
// documented default.
type ProjectionOptions struct {
	// Restart is how a projection whose run failed is restarted: the wait
	// before the n-th restart in a row is Restart.Delay(n) (jittered,
	// doubling from InitialDelay up to MaxDelay); a run that lasted
	// longer than a minute (or MaxDelay, if longer) ends the row. MaxAttempts, when positive, is
	// how many runs in a row may fail before the actor gives up (state
	// ProjectionFailed) until the projection is activated again. Each zero
	// field takes DefaultProjectionRestart's: restart forever, waiting 1s
	// doubling up to 30s.
	Restart retry.Policy
	// EnsureInterval, in cluster mode, is how often this member asks the
	// projection's owner to run it; the owner stops running it after five
	// intervals without such a request (ownership moved). Every member
	// should use the same value. Defaults to DefaultEnsureInterval (1s).
	EnsureInterval time.Duration
}

// DefaultProjectionRestart is the restart policy of a projection whose
// ProjectionOptions.Restart leaves a field zero. MaxAttempts 0 means no
// limit.
var DefaultProjectionRestart = retry.Policy{InitialDelay: time.Second, MaxDelay: 30 * time.Second}

var (
	// ErrProjectionExists is returned by RunProjection for a name already
	// registered on the host.
	ErrProjectionExists = errors.New("actor: projection already registered")
	// ErrUnknownProjection is returned by ProjectionStatus for a name that
	// is not registered.
	ErrUnknownProjection = errors.New("actor: unknown projection")
)

// ProjectionState is what a projection actor is doing with its runner.
type ProjectionState string

const (
	// ProjectionIdle: the runner is not running here; the host is not
	// started, or another member of the cluster runs it.
	ProjectionIdle ProjectionState = "idle"
	// ProjectionRunning: the runner's Run is running. Whether it holds the
	// lease and applies events or stands by is Status.Projection.Local.
	ProjectionRunning ProjectionState = "running"
	// ProjectionRestarting: the last run failed (Status.LastError); the
	// actor waits until Status.RestartAt to run it again.
	ProjectionRestarting ProjectionState = "restarting"
	// ProjectionFailed: the actor gave up after ProjectionOptions.Restart's
	// MaxAttempts failed runs in a row, or after a failure no restart can
	// mend (the partition the projection is limited to was dropped).
	ProjectionFailed ProjectionState = "failed"
	// ProjectionStopped: the host is stopping or stopped.
	ProjectionStopped ProjectionState = "stopped"
)

// ProjectionStatus is a projection actor's answer to a status request.
type ProjectionStatus struct {
	// Name is the name the projection was registered under.
	Name string
	// State is what the actor is doing with its runner.
	State ProjectionState
	// Runs counts the runs started since the host was created; Failures
	// the runs in a row that failed (0 after a run that lasted).
	Runs     int64
	Failures int
	// LastError is why the last failed run ended; nil when none failed.
	LastError error
	// RestartAt is when a restarting projection runs again.
	RestartAt time.Time
	// Member, in cluster mode, is the member that answered this member's
	// last request to run the projection: the one running it (empty when
	// that request failed, and in single-process mode).
	Member string
	// Projection is what the runner's Status reported: the stored status
	// (the active runner's state, checkpoint and lag, across processes)
	// and, in Local, this runner's own state.
	Projection projection.Status
}

// projectionSet is the host's registry of projections, guarded by Host.mu.
type projectionSet struct {
	byName map[string]*projEntry
	// wg counts the goroutines of projection actors: runs, stops,
	// restart backoffs and status reads, and the ensure loops.
	wg sync.WaitGroup
	// topology is the subscription to membership changes (cluster mode,
	// while running).
	topology *eventstream.Subscription
	// kicks are the projEntry.kick channels, replaced (never changed) on
	// registration.
	kicks atomic.Pointer[[]chan struct{}]
}

// projEntry is one registered projection.
type projEntry struct {
	name    string
	runner  ProjectionRunner
	restart retry.Policy
	ensure  time.Duration // cluster mode: the ensure interval
	pid     *protoactor.PID
	done    chan struct{} // closed when the actor has stopped
	kick    chan struct{} // cluster mode: send the next ensure request now

	// Cluster mode, guarded by Host.mu: the member that answered the last
	// ensure request, or why it failed.
	placed   string
	placeErr error
}

// RunProjection registers a projection under name and has the host run it
// as an actor: from Start (at once on a running host) the actor runs it,
// restarts it with backoff when its run fails (ProjectionOptions.Restart)
// and answers ProjectionStatus; Stop stops it gracefully and waits for it.
// Across processes the projection's lease stays what keeps a single
// runner writing.
//
// In cluster mode (Config.Cluster) every member registers the same
// projections, and each one runs on one member at a time, placed by its
// name like a stream by its identity; when that member leaves or dies,
// another takes it over as soon as the cluster notices
// (every member asks the owner to run it as soon as it sees the membership
// change, and every ProjectionOptions.EnsureInterval). The lease still
// guarantees a
// single writer while ownership moves.
//
// name identifies the actor and, in cluster mode, the placement (a
// sharded read model registers one projection per shard, under names of
// its own). A name already registered is refused with an error matching
// ErrProjectionExists; a stopping or stopped host refuses with ErrStopped.
func (h *Host) RunProjection(name string, r ProjectionRunner, opts *ProjectionOptions) error {
	switch {
	case name == "":
		return invalidConfig("actor.RunProjection: the projection name is empty")
	case r == nil:
		return invalidConfig("actor.RunProjection: projection %q: the runner is nil", name)
	}
	var o ProjectionOptions
	if opts != nil {
		o = *opts
	}
	def := DefaultProjectionRestart
	def.MaxDelay = max(def.MaxDelay, o.Restart.InitialDelay)
	o.Restart = o.Restart.WithDefaults(def)
	if err := o.Restart.Validate("actor.ProjectionOptions.Restart"); err != nil {
		return invalidConfig("projection %q: %v", name, err)
	}
	switch {
	case o.EnsureInterval < 0:
		return invalidConfig("projection %q: actor.ProjectionOptions.EnsureInterval is %v, must not be negative", name, o.EnsureInterval)
	case o.EnsureInterval == 0:
		o.EnsureInterval = DefaultEnsureInterval
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case hostStopping, hostStopped:
		return fmt.Errorf("actor: run projection %q: %w", name, ErrStopped)
	}
	if _, ok := h.projections.byName[name]; ok {
		return fmt.Errorf("%w: %q", ErrProjectionExists, name)
	}
	e := &projEntry{name: name, runner: r, restart: o.Restart, ensure: o.EnsureInterval, done: make(chan struct{}), kick: make(chan struct{}, 1)}
	a := &projActor{h: h, e: e}
	props := protoactor.PropsFromProducer(func() protoactor.Actor { return a })
	pid, err := h.system.Root.SpawnNamed(props, "projection-"+name)
	if err != nil {
		return fmt.Errorf("actor: spawn the actor of projection %q: %w", name, err)
	}
	e.pid = pid
	if h.projections.byName == nil {
		h.projections.byName = map[string]*projEntry{}
	}
	h.projections.byName[name] = e
	kicks := []chan struct{}{e.kick}
	if old := h.projections.kicks.Load(); old != nil {
		kicks = append(kicks, *old...)
	}
	h.projections.kicks.Store(&kicks)
	if h.state == hostRunning {
		h.startProjection(e)
	}
	return nil
}

// Projections returns the names of the projections registered on the
// host, sorted.
func (h *Host) Projections() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.projections.byName))
	for n := range h.projections.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ProjectionStatus asks the actor of the projection registered under name
// for its status. In cluster mode it is this member's actor that answers:
// State is idle on the members that do not run the projection, Member
// names the one that does, and Projection's stored part (state,
// checkpoint, lag) is the same everywhere.
//
// It fails with ErrUnknownProjection for a name not registered, ErrStopped
// once the actor has stopped, ctx's error when ctx ends first, and the
// runner's error when its Status failed (the returned status then still
// holds the actor's part).
func (h *Host) ProjectionStatus(ctx context.Context, name string) (ProjectionStatus, error) {
	h.mu.Lock()
	e, ok := h.projections.byName[name]
	h.mu.Unlock()
	if !ok {
		return ProjectionStatus{}, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	req := &projStatusReq{ctx: ctx, reply: make(chan projStatusReply, 1)}
	select {
	case <-e.done:
		return ProjectionStatus{}, fmt.Errorf("actor: status of projection %q: %w", name, ErrStopped)
	default:
	}
	h.post(e.pid, req)
	answer := func(r projStatusReply) (ProjectionStatus, error) {
		h.mu.Lock()
		r.status.Member = e.placed
		h.mu.Unlock()
		return r.status, r.err
	}
	select {
	case r := <-req.reply:
		return answer(r)
	case <-e.done:
		// The actor may have answered just before it stopped.
		select {
		case r := <-req.reply:
			return answer(r)
		default:
		}
		return ProjectionStatus{}, fmt.Errorf("actor: status of projection %q: %w", name, ErrStopped)
	case <-ctx.Done():
		return ProjectionStatus{}, fmt.Errorf("actor: status of projection %q: %w", name, ctx.Err())
	}
}

// startProjections starts every registered projection. Called by Start
// with h.mu held.
func (h *Host) startProjections() {
	if h.cluster != nil {
		h.watchTopology()
	}
	for _, e := range h.projections.byName {
		h.startProjection(e)
	}
}

// startProjection has a single-process host's projection actor run its
// runner, or a cluster member ask the projection's owner to run it.
// Called with h.mu held, once the host runs.
func (h *Host) startProjection(e *projEntry) {
	if h.cluster == nil {
		h.post(e.pid, &projActivate{})
		return
	}
	h.projections.wg.Add(1)
	go h.ensureLoop(e)
}

// stopProjections asks every projection actor to stop its runner (within
// ctx) and then itself. Called by Stop with h.mu held.
func (h *Host) stopProjections(ctx context.Context) {
	if h.projections.topology != nil {
		h.system.EventStream.Unsubscribe(h.projections.topology)
		h.projections.topology = nil
	}
	for _, e := range h.projections.byName {
		h.post(e.pid, &projStop{ctx: ctx})
	}
}

// waitProjections waits until every projection actor has stopped and
// every goroutine they started has ended. Called by Stop after
// stopProjections.
func (h *Host) waitProjections() {
	h.mu.Lock()
	entries := make([]*projEntry, 0, len(h.projections.byName))
	for _, e := range h.projections.byName {
		entries = append(entries, e)
	}
	h.mu.Unlock()
	for _, e := range entries {
		<-e.done
	}
	h.projections.wg.Wait()
}

// Messages of a projection actor.
type (
	// projActivate asks the actor to run its projection, for grain in
	// cluster mode (nil in a single process).
	projActivate struct{ grain *projGrain }
	// projDeactivate asks it to stop running its projection and stay
	// idle, unless another grain activated it since.
	projDeactivate struct{ grain *projGrain }
	// projStop deactivates and then stops the actor.
	projStop struct{ ctx context.Context }
	// projRunEnded reports that run gen's Run returned err.
	projRunEnded struct {
		gen uint64
		err error
	}
	// projRestart reports that the backoff token was started for has
	// elapsed.
	projRestart   struct{ token chan struct{} }
	projStatusReq struct {
		ctx   context.Context
		reply chan projStatusReply
	}
)

type projStatusReply struct {
	status ProjectionStatus
	err    error
}

// projActor supervises one projection runner. Its fields are used on its
// receive loop only; Run, Stop, Status and restart backoffs run in
// goroutines that report back with a message.
type projActor struct {
	h    *Host
	e    *projEntry
	self *protoactor.PID

	wanted   bool       // activated: the runner should be running
	grain    *projGrain // the grain that activated it (cluster mode)
	stopping bool       // the actor stops once its run has ended
	stopped  bool       // c.Stop was called

	gen        uint64
	running    bool // Run has not returned yet
	ending     bool // the current run was asked to stop
	cancelRun  context.CancelFunc
	runStarted time.Time

	backoff   chan struct{} // closed to cancel the restart wait; nil when none
	restartAt time.Time
	failures  int  // failed runs in a row
	failed    bool // gave up
	runs      int64
	lastErr   error
}

// Receive implements protoactor's Actor.
func (a *projActor) Receive(c protoactor.Context) {
	switch m := c.Message().(type) {
	case *protoactor.Started:
		a.self = c.Self()
	case *protoactor.Stopped:
		close(a.e.done)
		return
	case *projActivate:
		a.grain = m.grain
		a.activate()
	case *projDeactivate:
		if m.grain == a.grain {
			a.deactivate(nil)
		}
	case *projStop:
		a.stopping = true
		a.deactivate(m.ctx)
	case *projRunEnded:
		a.runEnded(m)
	case *projRestart:
		if a.backoff == m.token && a.wanted && !a.running {
			a.backoff = nil
			a.startRun()
		}
	case *projStatusReq:
		a.answerStatus(m)
	}
	if a.stopping && !a.running && !a.stopped {
		a.stopped = true
		c.Stop(a.self)
	}
}

func (a *projActor) activate() {
	if a.wanted || a.stopping {
		return
	}
	a.wanted, a.failed, a.failures = true, false, 0
	if !a.running {
		a.startRun()
	}
	// A run still ending from a deactivation is restarted when it ends.
}

// deactivate stops the runner, if it runs, and cancels a pending restart.
// The runner's Stop gets ctx, or StoreTimeout when ctx is nil.
func (a *projActor) deactivate(ctx context.Context) {
	a.wanted = false
	a.cancelBackoff()
	if !a.running || a.ending {
		return
	}
	a.ending = true
	r, cancel, timeout := a.e.runner, a.cancelRun, a.h.cfg.StoreTimeout
	a.h.projections.wg.Add(1)
	go func() {
		defer a.h.projections.wg.Done()
		if ctx == nil {
			c, cancelStop := context.WithTimeout(a.h.baseCtx, timeout)
			defer cancelStop()
			ctx = c
		}
		// Stop finishes the batch in flight and returns once Run has
		// returned. A Stop that came before Run began does nothing: the
		// cancelled context then ends the run as soon as it begins.
		if err := r.Stop(ctx); err != nil {
			a.h.log.Warn("projection_actor_stop_timeout", slog.String("projection", a.e.name), slog.Any("error", err))
		}
		cancel()
	}()
}

func (a *projActor) startRun() {
	a.gen++
	gen := a.gen
	ctx, cancel := context.WithCancel(a.h.baseCtx)
	a.running, a.ending, a.cancelRun, a.runStarted = true, false, cancel, time.Now()
	a.runs++
	r, self, h := a.e.runner, a.self, a.h
	h.projections.wg.Add(1)
	go func() {
		defer h.projections.wg.Done()
		err := runProjection(ctx, r)
		cancel()
		h.post(self, &projRunEnded{gen: gen, err: err})
	}()
}

// runProjection runs r, turning a panic into a *PanicError.
func runProjection(ctx context.Context, r ProjectionRunner) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError("projection run", v)
		}
	}()
	return r.Run(ctx)
}

func (a *projActor) runEnded(m *projRunEnded) {
	if m.gen != a.gen || !a.running {
		return
	}
	a.running, a.cancelRun = false, nil
	if a.ending {
		a.ending = false
		if a.wanted && !a.stopping {
			a.startRun() // activated again while it was ending
		}
		return
	}
	err := m.err
	if err == nil {
		err = errors.New("the run returned without being stopped by the host (was the runner stopped from outside?)")
	}
	if a.lasted() {
		a.failures = 0
	}
	a.failures++
	a.lastErr = err
	attrs := []slog.Attr{slog.String("projection", a.e.name), slog.Int("failures", a.failures), slog.String("error", err.Error())}
	if errors.Is(err, store.ErrTenantDropped) || (a.e.restart.MaxAttempts > 0 && a.failures >= a.e.restart.MaxAttempts) {
		a.failed = true
		a.h.log.LogAttrs(context.Background(), slog.LevelError, "projection_actor_gave_up", attrs...)
		return
	}
	if !a.wanted || a.stopping {
		return
	}
	d := a.e.restart.Delay(a.failures)
	a.restartAt = time.Now().Add(d)
	a.h.log.LogAttrs(context.Background(), slog.LevelWarn, "projection_actor_run_failed", append(attrs, slog.Duration("restart_in", d))...)
	token := make(chan struct{})
	a.backoff = token
	self, h := a.self, a.h
	h.projections.wg.Add(1)
	go func() {
		defer h.projections.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			h.post(self, &projRestart{token: token})
		case <-token:
		}
	}()
}

// stableRun is how long a run must last for the failures before it to
// stop counting toward ProjectionOptions.Restart.MaxAttempts and the
// backoff (or Restart.MaxDelay, if longer).
const stableRun = time.Minute

// lasted reports whether the current or last run lasted long enough to
// end the row of failures.
func (a *projActor) lasted() bool {
	return time.Since(a.runStarted) > max(stableRun, a.e.restart.MaxDelay)
}

func (a *projActor) cancelBackoff() {
	if a.backoff != nil {
		close(a.backoff)
		a.backoff = nil
	}
}

func (a *projActor) state() ProjectionState {
	switch {
	case a.running && !a.ending:
		return ProjectionRunning
	case a.stopping:
		return ProjectionStopped
	case a.failed:
		return ProjectionFailed
	case a.backoff != nil:
		return ProjectionRestarting
	}
	return ProjectionIdle
}

// answerStatus answers with the actor's own state at once and the
// runner's status read off the loop.
func (a *projActor) answerStatus(m *projStatusReq) {
	if a.running && a.lasted() {
		a.failures = 0 // the run has lasted: the row of failures is over
	}
	st := ProjectionStatus{Name: a.e.name, State: a.state(), Runs: a.runs, Failures: a.failures, LastError: a.lastErr}
	if st.State == ProjectionRestarting {
		st.RestartAt = a.restartAt
	}
	r, name := a.e.runner, a.e.name
	a.h.projections.wg.Add(1)
	go func() {
		defer a.h.projections.wg.Done()
		ps, err := r.Status(m.ctx)
		if err != nil {
			err = fmt.Errorf("actor: status of projection %q: %w", name, err)
		}
		st.Projection = ps
		m.reply <- projStatusReply{status: st, err: err}
	}()
}
