package otelwire

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/telemetry"
)

// Stream names the stream an operation is about.
type Stream struct {
	// Kind is the aggregate kind (stream type), e.g. "cart". A metric
	// attribute: keep it to a fixed set of names.
	Kind string
	// Tenant is the tenant (partition). Spans only.
	Tenant string
	// ID is the stream id. Spans only, never a metric attribute.
	ID string
}

func (s Stream) spanAttrs(kv []attribute.KeyValue) []attribute.KeyValue {
	return append(kv, AttrKind.String(s.Kind), AttrTenant.String(s.Tenant), AttrStreamID.String(s.ID))
}

// CommandSpan is a command in flight: its span and the start of its
// duration measurement. Its methods are safe for concurrent use; only the
// first End counts. A nil *CommandSpan is a no-op.
type CommandSpan struct {
	t       *Telemetry
	span    trace.Span
	kind    string
	typ     string
	start   time.Time
	retries atomic.Int64
	ended   atomic.Bool
}

// StartCommand starts the span of one command sent to stream s and returns
// the context to handle it with (activation and append spans, and the trace
// context saved in the events, hang off it).
//
// The span is named "<kind>.<commandType>" ("troupe.command" when the
// command type is empty) and carries troupe.kind, troupe.tenant,
// troupe.stream_id, troupe.command.type and the correlation and causation
// ids of ctx. Call it where the command is sent, so its duration includes
// the time spent waiting in the actor's mailbox.
func (t *Telemetry) StartCommand(ctx context.Context, s Stream, commandType string) (context.Context, *CommandSpan) {
	if t == nil {
		return ctx, nil
	}
	name := "troupe.command"
	if commandType != "" {
		name = s.Kind + "." + commandType
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		kv := s.spanAttrs(make([]attribute.KeyValue, 0, 6))
		kv = append(kv, AttrCommandType.String(commandType))
		if id := telemetry.CorrelationID(ctx); id != "" {
			kv = append(kv, AttrCorrelationID.String(id))
		}
		if id := telemetry.CausationID(ctx); id != "" {
			kv = append(kv, AttrCausationID.String(id))
		}
		span.SetAttributes(kv...)
	}
	return ctx, &CommandSpan{t: t, span: span, kind: s.Kind, typ: commandType, start: time.Now()}
}

// Retry records that the command is decided again after a version conflict
// (the conflict itself is recorded by the append's End). It adds a "retry"
// event to the span and counts troupe.command.retries.
func (c *CommandSpan) Retry(ctx context.Context) {
	if c == nil || c.ended.Load() {
		return
	}
	n := c.retries.Add(1)
	if c.span.IsRecording() {
		c.span.AddEvent("retry", trace.WithAttributes(AttrRetries.Int64(n)))
	}
	if c.t.commandRetries.Enabled(ctx) {
		c.t.commandRetries.Add(ctx, 1, c.t.opt(attrKey{k: keyKind, a: c.kind}))
	}
}

// End ends the command: it sets troupe.outcome, troupe.command.retries and
// troupe.events (the events the command produced), records err on the span
// (as an error for OutcomeConflict, OutcomeCanceled and OutcomeError; as
// troupe.command.rejection for OutcomeRejected), ends the span and records
// troupe.command.duration. Later calls do nothing.
func (c *CommandSpan) End(ctx context.Context, outcome Outcome, events int, err error) {
	if c == nil || !c.ended.CompareAndSwap(false, true) {
		return
	}
	if c.span.IsRecording() {
		c.span.SetAttributes(AttrOutcome.String(string(outcome)), AttrRetries.Int64(c.retries.Load()), AttrEvents.Int(events))
		setStatus(c.span, outcome, err)
	}
	c.span.End()
	if c.t.commandDuration.Enabled(ctx) {
		c.t.commandDuration.Record(ctx, time.Since(c.start).Seconds(),
			c.t.opt(attrKey{k: keyCommand, a: c.kind, b: c.typ, c: string(outcome)}))
	}
}

// setStatus records err on span according to outcome.
func setStatus(span trace.Span, outcome Outcome, err error) {
	switch {
	case outcome == OutcomeRejected:
		if err != nil {
			span.SetAttributes(AttrRejection.String(err.Error()))
		}
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	case outcome != OutcomeOK:
		span.SetStatus(codes.Error, string(outcome))
	}
}

// Append describes one append to the event store.
type Append struct {
	Stream Stream
	// Events is the number of events appended.
	Events int
	// ExpectedVersion is the expected version checked, as text (e.g.
	// store.ExpectedVersion's String). Empty omits the attribute.
	ExpectedVersion string
	// Links are span contexts of other commands whose events share this
	// append (commands decided together and appended as one batch). The
	// append span is a child of the command span in ctx and links to these.
	Links []trace.SpanContext
}

// AppendSpan is an append in flight. Its methods are safe for concurrent
// use; only the first End counts. A nil *AppendSpan is a no-op.
type AppendSpan struct {
	t     *Telemetry
	span  trace.Span
	kind  string
	start time.Time
	ended atomic.Bool
}

// StartAppend starts the span "append <kind>" (a child of the command span
// in ctx) with troupe.kind, troupe.tenant, troupe.stream_id, troupe.events
// and troupe.expected_version, and records troupe.append.batch_size. The
// database spans of the append hang off the returned context.
func (t *Telemetry) StartAppend(ctx context.Context, a Append) (context.Context, *AppendSpan) {
	if t == nil {
		return ctx, nil
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	for _, sc := range a.Links {
		if sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	ctx, span := t.tracer.Start(ctx, "append "+a.Stream.Kind, opts...)
	if span.IsRecording() {
		kv := a.Stream.spanAttrs(make([]attribute.KeyValue, 0, 5))
		kv = append(kv, AttrEvents.Int(a.Events))
		if a.ExpectedVersion != "" {
			kv = append(kv, AttrExpectedVersion.String(a.ExpectedVersion))
		}
		span.SetAttributes(kv...)
	}
	if t.appendBatchSize.Enabled(ctx) {
		t.appendBatchSize.Record(ctx, int64(a.Events), t.opt(attrKey{k: keyKind, a: a.Stream.Kind}))
	}
	return ctx, &AppendSpan{t: t, span: span, kind: a.Stream.Kind, start: time.Now()}
}

// End ends the append: troupe.outcome, troupe.version (the stream version
// after a successful append) and err on the span, troupe.append.duration,
// and troupe.command.conflicts when outcome is OutcomeConflict. Later calls
// do nothing.
func (a *AppendSpan) End(ctx context.Context, outcome Outcome, version int64, err error) {
	if a == nil || !a.ended.CompareAndSwap(false, true) {
		return
	}
	if a.span.IsRecording() {
		a.span.SetAttributes(AttrOutcome.String(string(outcome)))
		if outcome == OutcomeOK {
			a.span.SetAttributes(AttrVersion.Int64(version))
		}
		setStatus(a.span, outcome, err)
	}
	a.span.End()
	if outcome == OutcomeConflict && a.t.commandConflicts.Enabled(ctx) {
		a.t.commandConflicts.Add(ctx, 1, a.t.opt(attrKey{k: keyKind, a: a.kind}))
	}
	if a.t.appendDuration.Enabled(ctx) {
		a.t.appendDuration.Record(ctx, time.Since(a.start).Seconds(),
			a.t.opt(attrKey{k: keyKindOutcome, a: a.kind, b: string(outcome)}))
	}
}

// Activation is what an activation loaded.
type Activation struct {
	// Replayed is the number of events folded into the state.
	Replayed int
	// SnapshotUsed reports whether the state started from a snapshot, and
	// SnapshotVersion its version.
	SnapshotUsed    bool
	SnapshotVersion int64
	// Version is the stream version the actor starts at.
	Version int64
}

// ActivationSpan is an activation in flight. Its methods are safe for
// concurrent use; only the first End counts. A nil *ActivationSpan is a
// no-op.
type ActivationSpan struct {
	t     *Telemetry
	span  trace.Span
	kind  string
	ended atomic.Bool
}

// StartActivation starts the span "activate <kind>" for a stream actor
// loading its state (a child of the command span in ctx that caused the
// activation) with troupe.kind, troupe.tenant and troupe.stream_id.
func (t *Telemetry) StartActivation(ctx context.Context, s Stream) (context.Context, *ActivationSpan) {
	if t == nil {
		return ctx, nil
	}
	ctx, span := t.tracer.Start(ctx, "activate "+s.Kind, trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(s.spanAttrs(make([]attribute.KeyValue, 0, 3))...)
	}
	return ctx, &ActivationSpan{t: t, span: span, kind: s.Kind}
}

// End ends the activation: troupe.events_replayed, troupe.snapshot_used,
// troupe.snapshot_version, troupe.version and err on the span;
// troupe.actor.activations with its outcome; and, when err is nil,
// troupe.actor.replayed_events and +1 on troupe.actor.live (undone by
// Passivated). Later calls do nothing.
func (a *ActivationSpan) End(ctx context.Context, r Activation, err error) {
	if a == nil || !a.ended.CompareAndSwap(false, true) {
		return
	}
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeFor(err, nil, nil)
	}
	if a.span.IsRecording() {
		a.span.SetAttributes(AttrOutcome.String(string(outcome)),
			AttrEventsReplayed.Int(r.Replayed), AttrSnapshotUsed.Bool(r.SnapshotUsed))
		if r.SnapshotUsed {
			a.span.SetAttributes(AttrSnapshotVersion.Int64(r.SnapshotVersion))
		}
		if err == nil {
			a.span.SetAttributes(AttrVersion.Int64(r.Version))
		}
		setStatus(a.span, outcome, err)
	}
	a.span.End()
	t := a.t
	if t.actorActivations.Enabled(ctx) {
		t.actorActivations.Add(ctx, 1, t.opt(attrKey{k: keyKindOutcome, a: a.kind, b: string(outcome)}))
	}
	if err != nil {
		return
	}
	if t.actorReplayed.Enabled(ctx) {
		t.actorReplayed.Record(ctx, int64(r.Replayed),
			t.opt(attrKey{k: keyKindSnapshot, a: a.kind, b: strconv.FormatBool(r.SnapshotUsed)}))
	}
	if t.actorsLive.Enabled(ctx) {
		t.actorsLive.Add(ctx, 1, t.opt(attrKey{k: keyKind, a: a.kind}))
	}
}

// Passivated records that a live stream actor of the given kind stopped
// (reason: one of the Reason constants): troupe.actor.passivations and −1
// on troupe.actor.live. Call it once per successful activation.
func (t *Telemetry) Passivated(ctx context.Context, kind, reason string) {
	if t == nil {
		return
	}
	if t.actorPassivations.Enabled(ctx) {
		t.actorPassivations.Add(ctx, 1, t.opt(attrKey{k: keyKindReason, a: kind, b: reason}))
	}
	if t.actorsLive.Enabled(ctx) {
		t.actorsLive.Add(ctx, -1, t.opt(attrKey{k: keyKind, a: kind}))
	}
}
