package otelwire

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/telemetry"
)

// Batch describes a batch of events a projection or consumer is about to
// apply.
type Batch struct {
	// Name is the projection's or consumer's name. A metric attribute: keep
	// it to a fixed set of names (shards may add a suffix).
	Name string
	// Tenant is the partition the batch was read from; empty when it spans
	// every partition. Spans only.
	Tenant string
	// Size is the number of events in the batch.
	Size int
	// FirstPosition and LastPosition are the global positions of the first
	// and last event; zero omits them.
	FirstPosition, LastPosition int64
	// Metadata returns the metadata of event i (0 ≤ i < Size), e.g.
	// func(i int) map[string]any { return events[i].Metadata }. The trace
	// context saved there by InjectMetadata ties the batch to the commands
	// that wrote its events. Nil means no such ties.
	Metadata func(i int) map[string]any
}

// BatchSpan is a batch in flight. Its methods are safe for concurrent use;
// only the first End counts. A nil *BatchSpan is a no-op.
type BatchSpan struct {
	t     *Telemetry
	span  trace.Span
	name  string
	start time.Time
	ended atomic.Bool
}

// StartProjectionBatch starts the span "projection <name>" for a batch a
// projection applies (read-model writes and checkpoint in one transaction).
//
// When every event of the batch that carries trace context was written by
// the same command (always the case for a batch of one event), the span is
// a child of that command's span, so the command, its append and this
// projection write form one trace. Otherwise the span keeps the parent found
// in ctx and links to each distinct command span (deduplicated). The span
// carries troupe.projection, troupe.tenant, troupe.events,
// troupe.global_position.first/.last and troupe.batch.commands.
func (t *Telemetry) StartProjectionBatch(ctx context.Context, b Batch) (context.Context, *BatchSpan) {
	return t.startBatch(ctx, "projection ", b)
}

// StartConsumerBatch is StartProjectionBatch for an event consumer: the span
// is named "consumer <name>"; metrics are recorded under the same
// instruments, told apart by troupe.projection.
func (t *Telemetry) StartConsumerBatch(ctx context.Context, b Batch) (context.Context, *BatchSpan) {
	return t.startBatch(ctx, "consumer ", b)
}

func (t *Telemetry) startBatch(ctx context.Context, prefix string, b Batch) (context.Context, *BatchSpan) {
	if t == nil {
		return ctx, nil
	}
	origins := commandSpans(b)
	opts := make([]trace.SpanStartOption, 0, 2)
	opts = append(opts, trace.WithSpanKind(trace.SpanKindConsumer))
	switch len(origins) {
	case 0:
	case 1:
		ctx = trace.ContextWithRemoteSpanContext(ctx, origins[0])
	default:
		links := make([]trace.Link, len(origins))
		for i, sc := range origins {
			links[i] = trace.Link{SpanContext: sc}
		}
		opts = append(opts, trace.WithLinks(links...))
	}
	ctx, span := t.tracer.Start(ctx, prefix+b.Name, opts...)
	if span.IsRecording() {
		kv := make([]attribute.KeyValue, 0, 6)
		kv = append(kv, AttrProjection.String(b.Name), AttrEvents.Int(b.Size), AttrLinkedCommands.Int(len(origins)))
		if b.Tenant != "" {
			kv = append(kv, AttrTenant.String(b.Tenant))
		}
		if b.FirstPosition != 0 {
			kv = append(kv, AttrFirstPosition.Int64(b.FirstPosition))
		}
		if b.LastPosition != 0 {
			kv = append(kv, AttrLastPosition.Int64(b.LastPosition))
		}
		span.SetAttributes(kv...)
	}
	return ctx, &BatchSpan{t: t, span: span, name: b.Name, start: time.Now()}
}

// traceParent returns the raw W3C trace parent saved in md, or "".
func traceParent(md map[string]any) string {
	s, _ := md["traceparent"].(string)
	return s
}

// commandSpans returns the distinct valid span contexts saved in the
// batch's event metadata, in order of first appearance.
func commandSpans(b Batch) []trace.SpanContext {
	if b.Metadata == nil || b.Size <= 0 {
		return nil
	}
	var (
		out  []trace.SpanContext
		seen map[string]struct{} // raw traceparent values already handled
		last string
	)
	for i := 0; i < b.Size; i++ {
		md := b.Metadata(i)
		raw := traceParent(md)
		// Events of one command are adjacent, so most repeats are caught
		// without the map.
		if raw == "" || raw == last {
			continue
		}
		last = raw
		if seen == nil {
			seen = make(map[string]struct{}, 4)
		}
		if _, dup := seen[raw]; dup {
			continue
		}
		seen[raw] = struct{}{}
		if sc, ok := telemetry.SpanContextFromMetadata(md); ok {
			out = append(out, sc)
		}
	}
	return out
}

// End ends the batch: troupe.outcome, troupe.batch.processed (events
// applied) and err on the span; troupe.projection.batch.duration with the
// outcome and troupe.projection.events += processed. Later calls do nothing.
func (b *BatchSpan) End(ctx context.Context, processed int, err error) {
	if b == nil || !b.ended.CompareAndSwap(false, true) {
		return
	}
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeFor(err, nil, nil)
	}
	if b.span.IsRecording() {
		b.span.SetAttributes(AttrOutcome.String(string(outcome)), AttrProcessed.Int(processed))
		setStatus(b.span, outcome, err)
	}
	b.span.End()
	t := b.t
	if t.batchDuration.Enabled(ctx) {
		t.batchDuration.Record(ctx, time.Since(b.start).Seconds(),
			t.opt(attrKey{k: keyProjectionOutcome, a: b.name, b: string(outcome)}))
	}
	if processed > 0 && t.eventsProjected.Enabled(ctx) {
		t.eventsProjected.Add(ctx, int64(processed), t.opt(attrKey{k: keyProjection, a: b.name}))
	}
}

// DeadLettered records that projection or consumer name skipped an event of
// eventType after its handler failed (troupe.projection.dead_lettered) and
// adds a "dead_lettered" event to the span in ctx.
func (t *Telemetry) DeadLettered(ctx context.Context, name, eventType string, err error) {
	if t == nil {
		return
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		kv := []attribute.KeyValue{AttrEventType.String(eventType)}
		if err != nil {
			kv = append(kv, attribute.String("exception.message", err.Error()))
		}
		span.AddEvent("dead_lettered", trace.WithAttributes(kv...))
	}
	if t.deadLettered.Enabled(ctx) {
		t.deadLettered.Add(ctx, 1, t.opt(attrKey{k: keyProjectionEventType, a: name, b: eventType}))
	}
}

// ProjectionLag is how far one projection (or consumer) is behind the log.
type ProjectionLag struct {
	// Projection is its name (troupe.projection).
	Projection string
	// Events is the number of events it has not applied yet.
	Events int64
	// Behind is the age of the oldest event it has not applied yet; zero
	// when caught up.
	Behind time.Duration
}

// ObserveProjectionLag registers fn to report projection lag on every
// metric collection (troupe.projection.lag.events and
// troupe.projection.lag.time). fn must be quick and must not do I/O: report
// what the runners already know. Unregister the returned registration when
// the runners stop.
func (t *Telemetry) ObserveProjectionLag(fn func(ctx context.Context, observe func(ProjectionLag))) (metric.Registration, error) {
	if t == nil {
		return noRegistration{}, nil
	}
	reg, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		fn(ctx, func(l ProjectionLag) {
			opt := t.opt(attrKey{k: keyProjection, a: l.Projection})
			o.ObserveInt64(t.lagEvents, l.Events, opt)
			o.ObserveFloat64(t.lagTime, l.Behind.Seconds(), opt)
		})
		return nil
	}, t.lagEvents, t.lagTime)
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering the projection lag callback: %w", err)
	}
	return reg, nil
}

type noRegistration struct{ embedded.Registration }

func (noRegistration) Unregister() error { return nil }
