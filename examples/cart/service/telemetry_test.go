package service_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/internal/oteltest"
)

// One request's trace on PostgreSQL: the HTTP span, the command span under
// it with its append, and the carts projection's batch under the command;
// the projection reports its events and lag.
func TestTraceAndProjectionMetrics(t *testing.T) {
	t.Parallel()
	rec := oteltest.New(t)
	e := newPG(t, func(c *service.Config) { c.TracerProvider, c.MeterProvider = rec.TracerProvider, rec.MeterProvider })
	e.createTenant(t, "acme")
	cartID, pos := e.createCart(t, "acme")
	e.getCart(t, "acme", cartID, pos)

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range rec.Spans.GetSpans() {
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
	for _, s := range rec.Spans.GetSpans() {
		if s.SpanContext.SpanID() == cmd.Parent.SpanID() {
			underHTTP = s.Name == "POST /api/tenants/{tenantId}/carts"
		}
	}
	assert.True(t, underHTTP, "the command span is a child of the HTTP span")

	metrics := rec.Metrics(t)
	assert.Equal(t, int64(1), oteltest.SumInt(t, metrics["troupe.projection.events"]))
	var lagPoints int64
	lag, ok := metrics["troupe.projection.lag.events"].Data.(metricdata.Gauge[int64])
	require.True(t, ok, "the lag is observed")
	for _, dp := range lag.DataPoints {
		v, _ := dp.Attributes.Value("troupe.projection")
		assert.Equal(t, service.DefaultProjectionName, v.AsString())
		assert.Zero(t, dp.Value, "caught up")
		lagPoints++
	}
	assert.Equal(t, int64(1), lagPoints)
}
