package otelwire

import (
	"context"

	"go.opentelemetry.io/otel/propagation"

	"github.com/troupehq/troupe/telemetry"
)

// Header keys of the correlation and causation ids (the metadata keys).
const (
	headerCorrelationID = "correlationId"
	headerCausationID   = "causationId"
)

// InjectHeaders writes the trace context of ctx, in the format of the
// configured propagator, and its correlation and causation ids into h (a
// message header map, e.g. of an actor message sent to another process) and
// returns h (a new map when h is nil).
func (t *Telemetry) InjectHeaders(ctx context.Context, h map[string]string) map[string]string {
	if h == nil {
		h = make(map[string]string, 4)
	}
	if t != nil {
		t.propagator.Inject(ctx, propagation.MapCarrier(h))
	}
	if id := telemetry.CorrelationID(ctx); id != "" {
		h[headerCorrelationID] = id
	}
	if id := telemetry.CausationID(ctx); id != "" {
		h[headerCausationID] = id
	}
	return h
}

// ExtractHeaders returns a copy of ctx carrying the trace context and the
// correlation and causation ids found in h by the configured propagator: the
// receiving side of InjectHeaders.
func (t *Telemetry) ExtractHeaders(ctx context.Context, h map[string]string) context.Context {
	if t != nil {
		ctx = t.propagator.Extract(ctx, propagation.MapCarrier(h))
	}
	ctx = telemetry.WithCorrelationID(ctx, h[headerCorrelationID])
	return telemetry.WithCausationID(ctx, h[headerCausationID])
}
