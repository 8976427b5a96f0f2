package actor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/telemetry"
)

// A command's trace: the command span, the activation and the append as
// its children, and its trace context in the events' metadata.
func TestCommandTrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := oteltest.New(t)

	st := newWrapStore()
	h, agg := startHost(t, st, actor.Config{TracerProvider: rec.TracerProvider, MeterProvider: rec.MeterProvider, IdleTimeout: 10 * time.Millisecond})
	ctx = telemetry.WithCorrelationID(ctx, "corr-7")
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "tr"})
	require.NoError(t, err)

	spans := map[string]tracetest.SpanStub{}
	for _, s := range rec.Spans.GetSpans() {
		spans[s.Name] = s
	}
	cmd, act, app := spans["counter.counterCmd"], spans["activate counter"], spans["append counter"]
	require.True(t, cmd.SpanContext.IsValid(), "command span")
	require.True(t, act.SpanContext.IsValid(), "activation span")
	require.True(t, app.SpanContext.IsValid(), "append span")
	assert.Equal(t, cmd.SpanContext.SpanID(), act.Parent.SpanID())
	assert.Equal(t, cmd.SpanContext.SpanID(), app.Parent.SpanID())

	evs := readAll(t, st, "acme", "tr")
	require.Len(t, evs, 1)
	assert.Equal(t, "corr-7", evs[0].Metadata[store.MetaCorrelationID])
	sc, ok := telemetry.SpanContextFromMetadata(evs[0].Metadata)
	require.True(t, ok)
	assert.Equal(t, cmd.SpanContext.TraceID(), sc.TraceID())
	assert.Equal(t, cmd.SpanContext.SpanID(), sc.SpanID())

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
	for _, s := range rec.Named("append counter") {
		links = max(links, len(s.Links))
	}
	assert.Positive(t, links, "a batched append links to the commands it carries")

	// Metrics: live actors go back to 0 after idle passivation.
	eventually(t, "idle passivation", func() bool { return h.Stats().LiveActors == 0 })
	got := map[string]int64{}
	for name, m := range rec.Metrics(t) {
		if s, ok := m.Data.(metricdata.Sum[int64]); ok {
			for _, dp := range s.DataPoints {
				got[name] += dp.Value
			}
		}
	}
	stats := h.Stats()
	assert.Positive(t, stats.Activations)
	assert.Equal(t, stats.Activations, got[otelwire.MetricActorActivations])
	assert.Equal(t, stats.Passivations, got[otelwire.MetricActorPassivations])
	live, ok := got[otelwire.MetricActorsLive]
	assert.True(t, ok, "%s is recorded", otelwire.MetricActorsLive)
	assert.Equal(t, int64(0), live)
}
