package service_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/telemetry"
)

// One request's trace on PostgreSQL: the HTTP span, the command span under
// it with its append, and the carts projection's batch under the command;
// the projection reports its events and lag.
func TestTraceAndProjectionMetrics(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	e := newPG(t, func(c *service.Config) { c.TracerProvider, c.MeterProvider = tp, mp })
	e.createTenant(t, "acme")
	cartID, pos := e.createCart(t, "acme")
	e.getCart(t, "acme", cartID, pos)

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans.GetSpans() {
		byName[s.Name] = append(byName[s.Name], s)
	}
	require.Len(t, byName["cart.CreateCart"], 1)
	cmd := byName["cart.CreateCart"][0]
	require.Len(t, byName["append cart"], 1)
	assert.Equal(t, cmd.SpanContext.SpanID(), byName["append cart"][0].Parent.SpanID())
	require.Len(t, byName["projection carts"], 1, "one batch applied the cart's event")
	batch := byName["projection carts"][0]
	assert.Equal(t, cmd.SpanContext.TraceID(), batch.SpanContext.TraceID())
	assert.Equal(t, cmd.SpanContext.SpanID(), batch.Parent.SpanID())
	var underHTTP bool
	for _, s := range spans.GetSpans() {
		if s.SpanContext.SpanID() == cmd.Parent.SpanID() {
			underHTTP = s.Name == "POST /api/tenants/{tenantId}/carts"
		}
	}
	assert.True(t, underHTTP, "the command span is a child of the HTTP span")

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var projected, lagPoints int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case telemetry.MetricProjectionEvents:
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					projected += dp.Value
				}
			case telemetry.MetricProjectionLagEvents:
				for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
					v, _ := dp.Attributes.Value(telemetry.AttrProjection)
					assert.Equal(t, service.DefaultProjectionName, v.AsString())
					assert.Zero(t, dp.Value, "caught up")
					lagPoints++
				}
			}
		}
	}
	assert.Equal(t, int64(1), projected)
	assert.Equal(t, int64(1), lagPoints)
}
