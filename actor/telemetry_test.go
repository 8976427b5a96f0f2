package actor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/telemetry"
)

// A command's trace: the command span, the activation and the append as
// its children, and its trace context in the events' metadata.
func TestCommandTrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	st := newWrapStore()
	h, agg := startHost(t, actor.Config{Store: st, TracerProvider: tp, MeterProvider: mp, IdleTimeout: 10 * time.Millisecond})
	ctx = telemetry.WithCorrelationID(ctx, "corr-7")
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "tr"})
	require.NoError(t, err)

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	cmd, act, app := spans["counter.counterCmd"], spans["activate counter"], spans["append counter"]
	require.NotNil(t, cmd, "command span")
	require.NotNil(t, act, "activation span")
	require.NotNil(t, app, "append span")
	assert.Equal(t, cmd.SpanContext().SpanID(), act.Parent().SpanID())
	assert.Equal(t, cmd.SpanContext().SpanID(), app.Parent().SpanID())

	evs := readAll(t, st, "acme", "tr")
	require.Len(t, evs, 1)
	assert.Equal(t, "corr-7", evs[0].Metadata[store.MetaCorrelationID])
	sc, ok := telemetry.SpanContextFromMetadata(evs[0].Metadata)
	require.True(t, ok)
	assert.Equal(t, cmd.SpanContext().TraceID(), sc.TraceID())
	assert.Equal(t, cmd.SpanContext().SpanID(), sc.SpanID())

	// Group commit: one append span linked to the batch's other commands.
	st.setOnAppend(delayAppends(5 * time.Millisecond))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "tr"})
			assert.NoError(t, err)
		}()
	}
	waitGroup(t, &wg, time.Minute, "senders")
	links := 0
	for _, s := range rec.Ended() {
		if s.Name() == "append counter" {
			links = max(links, len(s.Links()))
		}
	}
	assert.Positive(t, links, "a batched append links to the commands it carries")

	// Metrics: live actors go back to 0 after idle passivation.
	eventually(t, "idle passivation", func() bool { return h.Stats().LiveActors == 0 })
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					got[m.Name] += dp.Value
				}
			}
		}
	}
	stats := h.Stats()
	assert.Positive(t, stats.Activations)
	assert.Equal(t, stats.Activations, got[telemetry.MetricActorActivations])
	assert.Equal(t, stats.Passivations, got[telemetry.MetricActorPassivations])
	live, ok := got[telemetry.MetricActorsLive]
	assert.True(t, ok, "%s is recorded", telemetry.MetricActorsLive)
	assert.Equal(t, int64(0), live)
}
