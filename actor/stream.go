package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// streamActor owns one stream's state. Everything but the store calls runs
// on its receive loop, one message at a time; store calls run in job
// goroutines that report back with a message, so commands keep queueing
// (and are batched) while an append is in flight.
//
// State machine: a job (load or append) is in flight or not. Commands and
// state reads that cannot be handled at once wait in pending, in arrival
// order. When no job is in flight, pending is handled: a full load if the
// state was never loaded, a tail load if it may be stale (after a conflict
// or an ambiguous failure), otherwise the next batch is decided and
// appended.
type streamActor[C, E, S any] struct {
	h    *Host
	k    *kindRuntime[C, E, S]
	act  *activation
	key  key
	self *protoactor.PID

	state   S
	version store.Version
	exists  bool
	// incarnation is the incarnation of the stream the state was folded
	// from (0 while the stream does not exist): appends require it, so an
	// actor never writes onto a newer incarnation of its stream.
	incarnation store.Incarnation
	loaded      bool // state was loaded (snapshot + events) at least once
	dirty       bool // state may be behind the store: reload the tail first

	job          jobKind
	retryAttempt int   // attempts of the batch that conflicted: the next tail load waits a backoff
	solo         int   // the next solo batches take one command each (after a batch the store refused)
	pending      []any // *commandMsg and *queryMsg, in arrival order
	building     []*commandMsg[C, E, S]
	passivating  bool
	passivation  string // why (a otelwire.Reason*)
	stopping     bool
	activated    bool              // a full load succeeded: counted live in telemetry
	parent       trace.SpanContext // the command that caused the activation
	ids          *commandWindow[E, S]
}

type jobKind uint8

const (
	jobNone jobKind = iota
	jobLoad
	jobAppend
)

// batch is a group of commands decided together and written by one
// append.
type batch[C, E, S any] struct {
	entries     []*entry[C, E, S]
	data        []store.EventData
	spec        S // state after every entry
	specVersion store.Version
}

// entry is one command of a batch. A command whose decision depended on
// earlier commands of the batch (a rejection or a command without events
// after another command's events) is answered only once the batch's
// append has succeeded.
type entry[C, E, S any] struct {
	msg       *commandMsg[C, E, S]
	events    []E
	err       error // a deferred rejection
	version   store.Version
	state     S
	followers []*commandMsg[C, E, S] // same command id later in the batch
}

type appendDone[C, E, S any] struct {
	batch *batch[C, E, S]
	res   store.AppendResult
	err   error
}

type loadDone[E, S any] struct {
	r loadResult[E, S]
}

func newStreamActor[C, E, S any](h *Host, k *kindRuntime[C, E, S], act *activation, parent trace.SpanContext) *streamActor[C, E, S] {
	return &streamActor[C, E, S]{h: h, k: k, act: act, key: act.key, parent: parent, ids: newCommandWindow[E, S](h.cfg.CommandIDWindow)}
}

// Receive implements protoactor's Actor.
func (a *streamActor[C, E, S]) Receive(c protoactor.Context) {
	if _, ok := c.Message().(*protoactor.Stopped); ok {
		a.failPending(fmt.Errorf("actor: %s stream %q: %w", a.key.kind, a.key.stream, ErrStopped))
		if a.activated {
			a.h.tel.Passivated(context.Background(), a.key.kind, a.passivation)
		}
		a.h.actorStopped(a.act)
		return
	}
	a.handle(c)
	if a.passivating && !a.stopping && a.job == jobNone && len(a.pending) == 0 {
		a.stopping = true
		c.Stop(a.self)
	}
}

func (a *streamActor[C, E, S]) handle(c protoactor.Context) {
	defer func() {
		if r := recover(); r != nil {
			a.internalPanic(r)
		}
	}()
	switch m := c.Message().(type) {
	case *protoactor.Started:
		a.self = c.Self()
		a.startLoad(true)
	case *commandMsg[C, E, S]:
		a.pending = append(a.pending, m)
	case *queryMsg[S]:
		if a.job != jobLoad && a.loaded && !a.dirty {
			a.answerQuery(m)
		} else {
			a.pending = append(a.pending, m)
		}
	case *appendDone[C, E, S]:
		a.onAppended(m)
	case *loadDone[E, S]:
		a.onLoaded(m)
	case passivateMsg:
		a.passivating = true
		a.passivation = m.reason
	default:
		return
	}
	a.pump()
}

// pump handles pending work while no job is in flight.
func (a *streamActor[C, E, S]) pump() {
	for a.job == jobNone && len(a.pending) > 0 {
		switch {
		case a.h.aborted():
			a.failPending(fmt.Errorf("actor: %s stream %q: %w", a.key.kind, a.key.stream, ErrStopped))
			return
		case !a.loaded:
			a.startLoad(true)
			return
		case a.dirty:
			a.startLoad(false)
			return
		}
		a.runBatch()
	}
}

// runBatch decides up to MaxBatch pending commands against the
// speculative state and starts one append for all their events. Commands
// that can be answered without the append are answered at once.
func (a *streamActor[C, E, S]) runBatch() {
	var (
		b      = &batch[C, E, S]{spec: a.state, specVersion: a.version}
		byID   map[string]*entry[C, E, S]
		events int
		taken  int
	)
	a.building = a.building[:0]
	limit := a.h.cfg.MaxBatch
	if a.solo > 0 {
		limit = 1
		a.solo--
	}
	for len(a.pending) > 0 && taken < limit {
		item := a.pending[0]
		a.pending[0] = nil
		a.pending = a.pending[1:]
		m, ok := item.(*commandMsg[C, E, S])
		if !ok {
			if q, ok := item.(*queryMsg[S]); ok {
				a.answerQuery(q)
			}
			continue
		}
		taken++
		a.building = append(a.building, m)
		if m.gone() {
			m.answer(a.h.log, Result[E, S]{}, fmt.Errorf("actor: %s command for stream %q: %w", a.key.kind, a.key.stream, context.Canceled))
			continue
		}
		id := m.opts.CommandID
		if id != "" {
			if r, ok := a.ids.get(id); ok {
				r.Duplicate = true
				m.answer(a.h.log, r, nil)
				continue
			}
			if e := byID[id]; e != nil {
				e.followers = append(e.followers, m)
				continue
			}
		}
		evs, err := a.decide(m.cmd, b.spec)
		if err != nil {
			if events == 0 {
				m.answer(a.h.log, Result[E, S]{}, err)
			} else {
				b.entries = append(b.entries, &entry[C, E, S]{msg: m, err: err})
			}
			continue
		}
		if len(evs) == 0 {
			e := &entry[C, E, S]{msg: m, version: b.specVersion, state: b.spec}
			if events == 0 {
				a.complete(e, Result[E, S]{Version: e.version, State: e.state})
				continue
			}
			b.entries = append(b.entries, e)
			if id != "" {
				byID = setEntry(byID, id, e)
			}
			continue
		}
		data, err := a.encode(m, evs)
		if err != nil {
			m.answer(a.h.log, Result[E, S]{}, err)
			continue
		}
		next, err := a.fold(b.spec, evs)
		if err != nil {
			m.answer(a.h.log, Result[E, S]{}, err)
			continue
		}
		b.spec = next
		b.specVersion += store.Version(len(evs))
		events += len(evs)
		e := &entry[C, E, S]{msg: m, events: evs, version: b.specVersion, state: next}
		b.entries = append(b.entries, e)
		b.data = append(b.data, data...)
		if id != "" {
			byID = setEntry(byID, id, e)
		}
	}
	a.building = a.building[:0]
	if events > 0 {
		a.startAppend(b)
	}
}

func setEntry[C, E, S any](m map[string]*entry[C, E, S], id string, e *entry[C, E, S]) map[string]*entry[C, E, S] {
	if m == nil {
		m = map[string]*entry[C, E, S]{}
	}
	m[id] = e
	return m
}

// decide runs the decider, turning a returned error into a rejection and
// a panic into a *PanicError.
func (a *streamActor[C, E, S]) decide(cmd C, state S) (evs []E, err error) {
	defer func() {
		if r := recover(); r != nil {
			evs, err = nil, newPanicError("decide", r)
		}
	}()
	evs, err = a.k.Decider.Decide(cmd, state)
	if err != nil {
		return nil, decider.Rejected(err)
	}
	return evs, nil
}

// fold applies evs to state, turning a panic in Evolve into a *PanicError.
func (a *streamActor[C, E, S]) fold(state S, evs []E) (out S, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError("evolve", r)
		}
	}()
	for _, e := range evs {
		state = a.k.Decider.Evolve(state, e)
	}
	return state, nil
}

// encode turns a command's events into EventData with their metadata, the
// current schema version of their types when the codec is a
// store.Upcaster, and, for a command with an id, deterministic message ids.
func (a *streamActor[C, E, S]) encode(m *commandMsg[C, E, S], evs []E) (out []store.EventData, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, newPanicError("encode", r)
		}
	}()
	out = make([]store.EventData, len(evs))
	for i, e := range evs {
		typ, data, err := a.k.codec.Encode(e)
		if err != nil {
			return nil, fmt.Errorf("actor: encode event %d of %s command for stream %q: %w", i, a.key.kind, a.key.stream, err)
		}
		out[i] = store.EventData{Type: typ, Data: data, Metadata: maps.Clone(m.meta)}
		if u, ok := a.k.codec.(store.Upcaster); ok {
			out[i].SchemaVersion = u.SchemaVersion(typ)
		}
		if m.opts.CommandID != "" {
			out[i].MessageID = messageID(a.key, m.opts.CommandID, i)
		}
	}
	return out, nil
}

// startAppend writes a batch off the receive loop; the outcome comes back
// as an appendDone message.
func (a *streamActor[C, E, S]) startAppend(b *batch[C, E, S]) {
	h, k, self := a.h, a.key, a.self
	expected := store.Exact(a.version)
	opts := store.AppendOptions{Partition: k.tenant, StreamType: a.k.StreamType, ExpectedVersion: expected}
	if a.exists && a.version > 0 {
		opts.Incarnation = a.incarnation
	}
	a.job = jobAppend
	finish := func(ctx context.Context, span *otelwire.AppendSpan, res store.AppendResult, err error) {
		span.End(ctx, otelwire.OutcomeFor(err, store.ErrVersionConflict, nil), int64(res.NextExpectedVersion), err)
		h.post(self, &appendDone[C, E, S]{batch: b, res: res, err: err})
	}
	if h.appender != nil {
		ctx, span := h.tel.StartAppend(appendSpan(context.Background(), k, expected, b))
		h.appender.submit(&appendReq{
			part:  store.StreamAppend{Stream: k.stream, Events: b.data, Options: opts},
			span:  trace.SpanFromContext(ctx),
			bytes: eventBytes(b.data),
			done:  func(res store.AppendResult, err error) { finish(ctx, span, res, err) },
		})
		return
	}
	h.jobs.Add(1)
	go func() {
		defer h.jobs.Done()
		ctx, cancel := h.storeCtx()
		defer cancel()
		ctx, span := h.tel.StartAppend(appendSpan(ctx, k, expected, b))
		h.appendCalls.Add(1)
		res, err := h.store.AppendToStream(ctx, k.stream, b.data, opts)
		finish(ctx, span, res, err)
	}()
}

// appendSpan describes a batch's append for telemetry: a child of the
// first command of the batch with a span, linked to the other commands'
// spans.
func appendSpan[C, E, S any](ctx context.Context, k key, expected store.ExpectedVersion, b *batch[C, E, S]) (context.Context, otelwire.Append) {
	ap := otelwire.Append{Stream: streamOf(k), Events: len(b.data), ExpectedVersion: expected.String()}
	parent := trace.SpanContext{}
	for _, e := range b.entries {
		sc := e.msg.sc
		if !sc.IsValid() {
			continue
		}
		if !parent.IsValid() {
			parent = sc
			continue
		}
		ap.Links = append(ap.Links, sc)
	}
	if parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, parent)
	}
	return ctx, ap
}

// onAppended settles a batch: on success the state advances and every
// command is answered; on a conflict the commands are decided again after
// the tail is read. A failure caused by one command's events fails that
// command only (a batch with several commands with events is split into
// appends of one command each); a failure that proves nothing was written
// fails every command without a reload (a dropped tenant also drops the
// state and passivates the actor); any other failure leaves the outcome
// unknown: every command fails and the state is reloaded.
func (a *streamActor[C, E, S]) onAppended(d *appendDone[C, E, S]) {
	a.job = jobNone
	b, err := d.batch, d.err
	for _, e := range b.entries {
		a.building = append(a.building, e.msg)
		a.building = append(a.building, e.followers...)
	}
	defer func() { a.building = a.building[:0] }()
	switch {
	case err == nil:
		a.h.appends.Add(1)
		if d.res.NextExpectedVersion != b.specVersion {
			// The store disagrees with our count: trust it, reload.
			a.h.log.Warn("actor_append_version_mismatch", slog.String("kind", a.key.kind),
				slog.String("tenant_id", a.key.tenant), slog.String("stream_id", string(a.key.stream)),
				slog.Int64("expected_version", int64(b.specVersion)), slog.Int64("store_version", int64(d.res.NextExpectedVersion)))
			a.dirty = true
		}
		prev := a.version
		a.state, a.version, a.exists = b.spec, b.specVersion, true
		if d.res.Incarnation != 0 {
			a.incarnation = d.res.Incarnation
		}
		for _, e := range b.entries {
			if e.err != nil {
				e.msg.answer(a.h.log, Result[E, S]{}, e.err)
				continue
			}
			r := Result[E, S]{Version: e.version, Events: e.events, State: e.state}
			if len(e.events) > 0 {
				r.GlobalPosition = d.res.LastGlobalPosition
				r.Position = d.res.LastPosition()
			}
			a.complete(e, r)
		}
		a.maybeSnapshot(prev)
	case errors.Is(err, store.ErrVersionConflict):
		a.h.conflicts.Add(1)
		a.dirty = true
		var retry []any
		for _, e := range b.entries {
			m := e.msg
			m.attempts++
			if m.attempts >= a.h.cfg.Retry.MaxAttempts {
				a.failEntry(e, fmt.Errorf("actor: %s command for stream %q: %d attempts: %w", a.key.kind, a.key.stream, m.attempts, err))
				continue
			}
			a.retryAttempt = max(a.retryAttempt, m.attempts)
			m.span.Retry(context.Background())
			retry = append(retry, m)
			for _, f := range e.followers {
				retry = append(retry, f)
			}
		}
		a.pending = append(retry, a.pending...)
	case errors.Is(err, store.ErrTenantDropped):
		a.onTenantDropped(b, err)
	case b.eventful() > 1 && commandFault(err):
		// The store refused the batch because of one command's events (a
		// stale command id, a value PostgreSQL can't store), without
		// writing anything. Its batch mates must not pay for it: decide
		// and append the commands again one at a time, so that each gets
		// its own outcome.
		a.h.log.Debug("actor_batch_split", slog.String("kind", a.key.kind),
			slog.String("tenant_id", a.key.tenant), slog.String("stream_id", string(a.key.stream)),
			slog.Int("commands", len(b.entries)), slog.Any("error", err))
		a.solo = a.requeue(b.entries, nil)
	case errors.Is(err, store.ErrDuplicateMessageID):
		// The batch's one command with events has an id already applied
		// at other positions: reload (its result may be in the tail) and
		// decide again; a command that hits this twice was applied outside
		// the window. The commands decided after it are decided again.
		a.dirty = true
		owner := b.owner()
		m := owner.msg
		m.attempts++
		switch {
		case m.opts.CommandID != "" && m.dupRetried:
			a.failEntry(owner, fmt.Errorf("actor: %s command %q for stream %q was already applied, outside the command-id window: %w",
				a.key.kind, m.opts.CommandID, a.key.stream, err))
			a.requeue(b.entries, owner)
		case m.attempts >= a.h.cfg.Retry.MaxAttempts:
			a.failEntry(owner, fmt.Errorf("actor: %s command for stream %q: %d attempts: %w", a.key.kind, a.key.stream, m.attempts, err))
			a.requeue(b.entries, owner)
		default:
			if m.opts.CommandID != "" {
				m.dupRetried = true
			}
			a.requeue(b.entries, nil)
		}
	case commandFault(err):
		// Rejected before anything was written, because of the events of
		// the batch's one command with events.
		owner := b.owner()
		a.failEntry(owner, fmt.Errorf("actor: append %s events to stream %q: %w", a.key.kind, a.key.stream, err))
		a.requeue(b.entries, owner)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrRefused):
		// Nothing was written (the append never reached the database, or
		// the database refused it whatever its events): the state is still
		// the store's, no reload is needed.
		for _, e := range b.entries {
			a.failEntry(e, fmt.Errorf("actor: append %s events to stream %q: %w", a.key.kind, a.key.stream, err))
		}
	default:
		// The append may or may not have committed.
		a.dirty = true
		a.h.log.Warn("actor_append_outcome_unknown", slog.String("kind", a.key.kind),
			slog.String("tenant_id", a.key.tenant), slog.String("stream_id", string(a.key.stream)), slog.Any("error", err))
		for _, e := range b.entries {
			a.failEntry(e, fmt.Errorf("%w: %s command for stream %q: %w", ErrOutcomeUnknown, a.key.kind, a.key.stream, err))
		}
	}
}

// commandFault reports whether err, an append's failure, proves that
// nothing was written and is caused by the events appended: retrying the
// same events fails again, another command's events may succeed.
func commandFault(err error) bool {
	return errors.Is(err, store.ErrInvalidArgument) || errors.Is(err, store.ErrDuplicateMessageID) ||
		errors.Is(err, store.ErrUnknownEventType)
}

// eventful counts the batch's commands with events.
func (b *batch[C, E, S]) eventful() int {
	n := 0
	for _, e := range b.entries {
		if len(e.events) > 0 {
			n++
		}
	}
	return n
}

// owner returns the batch's first command with events (a batch has at
// least one).
func (b *batch[C, E, S]) owner() *entry[C, E, S] {
	for _, e := range b.entries {
		if len(e.events) > 0 {
			return e
		}
	}
	return b.entries[0]
}

// requeue puts the commands of entries (with their followers), except
// skip's, back at the front of pending in their order, to be decided
// again; their attempts are not counted. It returns how many it put back.
func (a *streamActor[C, E, S]) requeue(entries []*entry[C, E, S], skip *entry[C, E, S]) int {
	var back []any
	for _, e := range entries {
		if e == skip {
			continue
		}
		back = append(back, e.msg)
		for _, f := range e.followers {
			back = append(back, f)
		}
	}
	a.pending = append(back, a.pending...)
	return len(back)
}

// complete answers a command (and its followers) with its result and
// remembers the result under its command id.
func (a *streamActor[C, E, S]) complete(e *entry[C, E, S], r Result[E, S]) {
	e.msg.answer(a.h.log, r, nil)
	if id := e.msg.opts.CommandID; id != "" {
		a.ids.put(id, r)
	}
	for _, f := range e.followers {
		dup := r
		dup.Duplicate = true
		f.answer(a.h.log, dup, nil)
	}
}

func (a *streamActor[C, E, S]) failEntry(e *entry[C, E, S], err error) {
	e.msg.answer(a.h.log, Result[E, S]{}, err)
	for _, f := range e.followers {
		f.answer(a.h.log, Result[E, S]{}, err)
	}
}

func (a *streamActor[C, E, S]) answerQuery(q *queryMsg[S]) {
	q.reply <- stateReply[S]{state: a.state, version: a.version}
}

// failPending answers every waiting command and state read with err.
func (a *streamActor[C, E, S]) failPending(err error) {
	for _, item := range a.pending {
		switch m := item.(type) {
		case *commandMsg[C, E, S]:
			m.answer(a.h.log, Result[E, S]{}, err)
		case *queryMsg[S]:
			m.reply <- stateReply[S]{err: err}
		}
	}
	a.pending = nil
}

// internalPanic is the last line of defence: a panic outside the guarded
// user code. Every command the loop was working on fails, and the state
// is reloaded before the next one.
func (a *streamActor[C, E, S]) internalPanic(r any) {
	perr := newPanicError("stream actor", r)
	a.h.log.Error("actor_stream_panic", slog.String("kind", a.key.kind),
		slog.String("tenant_id", a.key.tenant), slog.String("stream_id", string(a.key.stream)), slog.Any("error", perr))
	for _, m := range a.building {
		m.answer(a.h.log, Result[E, S]{}, perr)
	}
	a.building = a.building[:0]
	a.failPending(perr)
	a.dirty = true
}

// startLoad rebuilds the state off the receive loop: from the snapshot and
// the whole stream (full), or from the current state and the tail after
// the current version. The outcome comes back as a loadDone message.
func (a *streamActor[C, E, S]) startLoad(full bool) {
	attempt := a.retryAttempt // the conflicted batch's attempts: wait before reading the tail
	a.retryAttempt = 0
	h, k, self, parent := a.h, a.key, a.self, a.parent
	start := loadStart[S]{full: full, state: a.state, version: a.version, exists: a.exists, incarnation: a.incarnation}
	a.job = jobLoad
	h.jobs.Add(1)
	go func() {
		defer h.jobs.Done()
		if attempt > 0 {
			_ = h.cfg.Retry.Wait(h.baseCtx, attempt) // Stop cuts the wait short
		}
		ctx, cancel := h.storeCtx()
		defer cancel()
		var span *otelwire.ActivationSpan
		if full {
			if parent.IsValid() {
				ctx = trace.ContextWithSpanContext(ctx, parent)
			}
			ctx, span = h.tel.StartActivation(ctx, streamOf(k))
		}
		r := a.k.load(ctx, h, k, start)
		span.End(ctx, otelwire.Activation{Replayed: r.replayed, SnapshotUsed: r.snapshotVersion > 0,
			SnapshotVersion: int64(r.snapshotVersion), Version: int64(r.version)}, r.err)
		h.post(self, &loadDone[E, S]{r: r})
	}()
}

// onLoaded installs a loaded state, or fails the waiting commands.
func (a *streamActor[C, E, S]) onLoaded(d *loadDone[E, S]) {
	a.job = jobNone
	r := d.r
	a.h.eventsReplayed.Add(int64(r.replayed))
	if r.err != nil {
		a.failPending(fmt.Errorf("actor: load %s stream %q: %w", a.key.kind, a.key.stream, r.err))
		return
	}
	if !a.loaded {
		a.activated = true // counted live by the activation span's End
	}
	if a.incarnation != 0 && r.incarnation != a.incarnation {
		// The stream was archived (and maybe started again): the command
		// ids remembered from the old incarnation are not this stream's.
		a.ids = newCommandWindow[E, S](a.h.cfg.CommandIDWindow)
	}
	a.state, a.version, a.exists, a.incarnation = r.state, r.version, r.exists, r.incarnation
	a.loaded, a.dirty = true, false
	for _, c := range r.commands {
		a.ids.put(c.id, c.result)
	}
}
