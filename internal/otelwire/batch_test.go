package otelwire_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/telemetry"
)

// command runs one command span and returns the metadata of n events it
// wrote, each with its own message id.
func command(t *testing.T, r *rig, typ string, n int, firstMsg int) []map[string]any {
	t.Helper()
	ctx, cs := r.tel.StartCommand(context.Background(), cart42, typ)
	var out []map[string]any
	for i := 0; i < n; i++ {
		md := telemetry.InjectMetadata(ctx, nil)
		md["messageId"] = string(rune('a' + firstMsg + i))
		out = append(out, md)
	}
	cs.End(ctx, otelwire.OutcomeOK, n, nil)
	return out
}

func batchOf(name string, events []map[string]any) otelwire.Batch {
	return otelwire.Batch{
		Name: name, Tenant: "acme", Size: len(events), FirstPosition: 10, LastPosition: 10 + int64(len(events)) - 1,
		Metadata: func(i int) map[string]any { return events[i] },
	}
}

func TestProjectionBatchOfOneCommandIsAChildOfTheCommandSpan(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		r := newRig(t)
		events := command(t, r, "AddItem", n, 0)
		cmd := r.One(t, "cart.AddItem")

		ctx, b := r.tel.StartProjectionBatch(context.Background(), batchOf("carts", events))
		// a read-model write inside the batch hangs off it
		_, w := r.tel.Tracer().Start(ctx, "INSERT")
		w.End()
		b.End(ctx, n, nil)

		batch := r.One(t, "projection carts")
		assert.Equal(t, cmd.SpanContext.TraceID(), batch.SpanContext.TraceID(), "shares the command's trace")
		assert.Equal(t, cmd.SpanContext.SpanID(), batch.Parent.SpanID(), "child of the command span")
		assert.True(t, batch.Parent.IsRemote())
		assert.Empty(t, batch.Links)
		assert.Equal(t, trace.SpanKindConsumer, batch.SpanKind)
		assert.Equal(t, batch.SpanContext.SpanID(), r.One(t, "INSERT").Parent.SpanID())

		a := oteltest.Attrs(batch.Attributes)
		assert.Equal(t, "carts", a[otelwire.AttrProjection].AsString())
		assert.Equal(t, "acme", a[otelwire.AttrTenant].AsString())
		assert.Equal(t, int64(n), a[otelwire.AttrEvents].AsInt64())
		assert.Equal(t, int64(n), a[otelwire.AttrProcessed].AsInt64())
		assert.Equal(t, int64(1), a[otelwire.AttrLinkedCommands].AsInt64())
		assert.Equal(t, int64(10), a[otelwire.AttrFirstPosition].AsInt64())
		assert.Equal(t, int64(10+n-1), a[otelwire.AttrLastPosition].AsInt64())
		assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())
	}
}

func TestProjectionBatchLinksToEachDistinctCommandOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c1 := command(t, r, "Create", 2, 0)
	c2 := command(t, r, "AddItem", 1, 2)
	c3 := command(t, r, "Checkout", 1, 3)
	// interleaved, with repeats that are not adjacent, and events written
	// without trace context
	events := []map[string]any{c1[0], c2[0], c1[1], {"messageId": "x"}, nil, c3[0], c2[0], {"traceparent": "garbage"}}

	parent, root := r.tel.Tracer().Start(context.Background(), "runner")
	ctx, b := r.tel.StartConsumerBatch(parent, batchOf("mailer", events))
	b.End(ctx, len(events), nil)
	root.End()

	batch := r.One(t, "consumer mailer")
	assert.Equal(t, root.SpanContext().SpanID(), batch.Parent.SpanID(), "keeps the parent from ctx")
	require.Len(t, batch.Links, 3)
	for i, name := range []string{"cart.Create", "cart.AddItem", "cart.Checkout"} {
		assert.Equal(t, r.One(t, name).SpanContext.SpanID(), batch.Links[i].SpanContext.SpanID(), "link %d", i)
		assert.Equal(t, r.One(t, name).SpanContext.TraceID(), batch.Links[i].SpanContext.TraceID())
	}
	assert.Equal(t, int64(3), oteltest.Attrs(batch.Attributes)[otelwire.AttrLinkedCommands].AsInt64())
}

func TestProjectionBatchWithoutTraceContextKeepsItsParent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx, b := r.tel.StartProjectionBatch(context.Background(), batchOf("carts", []map[string]any{{}, nil}))
	b.End(ctx, 2, nil)
	_, b2 := r.tel.StartProjectionBatch(context.Background(), otelwire.Batch{Name: "empty"})
	b2.End(ctx, 0, nil)
	batch := r.One(t, "projection carts")
	assert.False(t, batch.Parent.IsValid())
	assert.Empty(t, batch.Links)
	r.One(t, "projection empty")
}

func TestProjectionMetrics(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	events := command(t, r, "AddItem", 3, 0)
	bctx, b := r.tel.StartProjectionBatch(ctx, batchOf("carts", events))
	r.tel.DeadLettered(bctx, "carts", "ItemAddedToCart", errors.New("bad row"))
	b.End(bctx, 3, nil)
	_, failed := r.tel.StartProjectionBatch(ctx, batchOf("carts", events))
	failed.End(ctx, 0, errors.New("deadlock detected"))

	proj := otelwire.AttrProjection.String("carts")
	assert.Equal(t, int64(3), sumPoint(t, r.metric(t, otelwire.MetricProjectionEvents), setOf(proj)))
	assert.Equal(t, int64(1), sumPoint(t, r.metric(t, otelwire.MetricProjectionDeadLettered),
		setOf(proj, otelwire.AttrEventType.String("ItemAddedToCart"))))
	n, _ := histCount[float64](t, r.metric(t, otelwire.MetricProjectionBatchDuration), setOf(proj, otelwire.AttrOutcome.String("ok")))
	assert.Equal(t, uint64(1), n)
	n, _ = histCount[float64](t, r.metric(t, otelwire.MetricProjectionBatchDuration), setOf(proj, otelwire.AttrOutcome.String("error")))
	assert.Equal(t, uint64(1), n)

	var sawDeadLetter, sawError bool
	for _, s := range r.Spans.GetSpans() {
		if s.Name != "projection carts" {
			continue
		}
		for _, e := range s.Events {
			if e.Name == "dead_lettered" {
				sawDeadLetter = true
				assert.Equal(t, "ItemAddedToCart", oteltest.Attrs(e.Attributes)[otelwire.AttrEventType].AsString())
			}
		}
		if s.Status.Code == codes.Error {
			sawError = true
			assert.Equal(t, "deadlock detected", s.Status.Description)
		}
	}
	assert.True(t, sawDeadLetter)
	assert.True(t, sawError)
}

func TestProjectionLagIsObservedOnCollectionUntilUnregistered(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	lag := otelwire.ProjectionLag{Projection: "carts", Events: 42, Behind: 1500 * time.Millisecond}
	reg, err := r.tel.ObserveProjectionLag(func(_ context.Context, observe func(otelwire.ProjectionLag)) {
		observe(lag)
		observe(otelwire.ProjectionLag{Projection: "mailer"})
	})
	require.NoError(t, err)

	proj := setOf(otelwire.AttrProjection.String("carts"))
	gauge := func(name string) metricdata.Metrics { return r.metric(t, name) }
	ev := gauge(otelwire.MetricProjectionLagEvents).Data.(metricdata.Gauge[int64])
	tm := gauge(otelwire.MetricProjectionLagTime).Data.(metricdata.Gauge[float64])
	require.Len(t, ev.DataPoints, 2)
	for _, dp := range ev.DataPoints {
		if dp.Attributes.Equals(&proj) {
			assert.Equal(t, int64(42), dp.Value)
		}
	}
	found := false
	for _, dp := range tm.DataPoints {
		if dp.Attributes.Equals(&proj) {
			found = true
			assert.InDelta(t, 1.5, dp.Value, 1e-9)
		}
	}
	assert.True(t, found)

	require.NoError(t, reg.Unregister())
	for _, sm := range r.Collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == otelwire.MetricProjectionLagEvents {
				assert.Empty(t, g.DataPoints, "no observations after Unregister")
			}
		}
	}
}
