package actor

import (
	"context"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/store"
)

const instrumentationName = "github.com/troupehq/troupe/actor"

// Span attribute keys. Stream ids go on spans only, never on metrics.
const (
	attrKind     = "troupe.aggregate.kind"
	attrTenant   = "troupe.tenant_id"
	attrStreamID = "troupe.stream_id"
	attrCommands = "troupe.batch.commands"
	attrEvents   = "troupe.batch.events"
)

var traceContext = propagation.TraceContext{}

// traceCarrier is the W3C trace context of a command, carried in the
// command message (contexts never cross into the actor) and stored in the
// metadata of the events the command produces.
type traceCarrier map[string]string

func (c traceCarrier) Get(k string) string { return c[k] }
func (c traceCarrier) Set(k, v string)     { c[k] = v }
func (c traceCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// injectTrace returns the trace context of ctx, or nil when ctx carries no
// valid span.
func injectTrace(ctx context.Context) traceCarrier {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := traceCarrier{}
	traceContext.Inject(ctx, c)
	return c
}

// spanContext returns the span context carried by c.
func (c traceCarrier) spanContext() trace.SpanContext {
	if c == nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(traceContext.Extract(context.Background(), c))
}

// addToMetadata stores the trace context under the store's Meta* keys.
func (c traceCarrier) addToMetadata(md store.Metadata) {
	if v := c["traceparent"]; v != "" {
		md[store.MetaTraceParent] = v
	}
	if v := c["tracestate"]; v != "" {
		md[store.MetaTraceState] = v
	}
}

// registerMetrics creates the host's observable instruments; they read the
// same counters as Stats.
func (h *Host) registerMetrics() (metric.Registration, error) {
	live, err := h.meter.Int64ObservableGauge("troupe.actor.live",
		metric.WithDescription("Stream actors alive (cached and passivating)."), metric.WithUnit("{actor}"))
	if err != nil {
		return nil, err
	}
	activations, err := h.meter.Int64ObservableCounter("troupe.actor.activations",
		metric.WithDescription("Stream actors started."), metric.WithUnit("{actor}"))
	if err != nil {
		return nil, err
	}
	passivations, err := h.meter.Int64ObservableCounter("troupe.actor.passivations",
		metric.WithDescription("Stream actors asked to stop (idle, evicted or drained)."), metric.WithUnit("{actor}"))
	if err != nil {
		return nil, err
	}
	replayed, err := h.meter.Int64ObservableCounter("troupe.actor.events_replayed",
		metric.WithDescription("Events applied to rebuild actor state."), metric.WithUnit("{event}"))
	if err != nil {
		return nil, err
	}
	appends, err := h.meter.Int64ObservableCounter("troupe.actor.appends",
		metric.WithDescription("Successful appends (one per group-commit batch)."), metric.WithUnit("{append}"))
	if err != nil {
		return nil, err
	}
	conflicts, err := h.meter.Int64ObservableCounter("troupe.actor.conflicts",
		metric.WithDescription("Appends that failed with a version conflict."), metric.WithUnit("{append}"))
	if err != nil {
		return nil, err
	}
	return h.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := h.Stats()
		o.ObserveInt64(live, int64(s.LiveActors))
		o.ObserveInt64(activations, s.Activations)
		o.ObserveInt64(passivations, s.Passivations)
		o.ObserveInt64(replayed, s.EventsReplayed)
		o.ObserveInt64(appends, s.Appends)
		o.ObserveInt64(conflicts, s.Conflicts)
		return nil
	}, live, activations, passivations, replayed, appends, conflicts)
}
