package otelwire_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/telemetry"
)

func TestHeadersCarryTraceContextWithTheConfiguredPropagator(t *testing.T) {
	t.Parallel()
	tel, err := otelwire.New(&otelwire.Config{Propagator: propagation.TraceContext{}})
	require.NoError(t, err)
	tid, err := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	require.NoError(t, err)
	sid, err := trace.SpanIDFromHex("00f067aa0ba902b7")
	require.NoError(t, err)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := telemetry.WithCorrelationID(trace.ContextWithSpanContext(context.Background(), sc), "corr")
	h := tel.InjectHeaders(ctx, nil)
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", h["traceparent"])
	assert.Equal(t, "corr", h["correlationId"])

	got := tel.ExtractHeaders(context.Background(), h)
	assert.Equal(t, sc.SpanID(), trace.SpanContextFromContext(got).SpanID())
	assert.Equal(t, "corr", telemetry.CorrelationID(got))

	// a propagator without trace context fields writes none
	quiet, err := otelwire.New(&otelwire.Config{Propagator: propagation.Baggage{}})
	require.NoError(t, err)
	h = quiet.InjectHeaders(ctx, map[string]string{})
	assert.NotContains(t, h, "traceparent")
}
