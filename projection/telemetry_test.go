package projection_test

import (
	"context"
	"strings"
	"testing"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// A batch of one command's events is a child span of the command; a batch
// of several commands' events is a root span linked to each of them. The
// span covers the handler writes and the checkpoint; the metrics count
// batches and events.
func TestProjectionBatchSpans(t *testing.T) {
	t.Parallel()
	r := projtest.NewTelRig(t)
	pool, es := projtest.TracedPool(t, r.TP)
	projtest.CreateAppliedTable(t, pool)
	ctx := projtest.Ctx(t)

	cmdA, mdA := r.Command("Command A")
	cmdB, mdB := r.Command("Command B")
	projtest.AppendCart(t, es, "acme", "c1", projtest.WithMeta(mdA, projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))...)
	projtest.AppendCart(t, es, "acme", "c2", projtest.WithMeta(mdB, projtest.CartEvent(projtest.TypeOpened, "c2", "", 0))...)
	last := projtest.AppendCart(t, es, "acme", "c3", projtest.CartEvent(projtest.TypeOpened, "c3", "", 0)) // no trace context
	projtest.ReadAllEvents(t, pool, es, "")

	p, err := projection.New(pool, &projection.Config{Name: "traced", Store: es, TracerProvider: r.TP, MeterProvider: r.MP, Logger: projtest.QuietLogger,
		Handlers: projection.Registry{projtest.TypeOpened: {projtest.CountHandler("a")}, projtest.TypeAdded: {projtest.CountHandler("a")}}})
	require.NoError(t, err)
	// A span current when the projection starts is not the parent of its
	// batches.
	startCtx, startSpan := r.TP.Tracer("test").Start(ctx, "starter")
	require.NoError(t, p.Start(startCtx))
	startSpan.End()
	require.NoError(t, p.WaitFor(ctx, last.LastPosition()))

	batches := r.Named("projection traced")
	require.Len(t, batches, 1)
	b := batches[0]
	assert.False(t, b.Parent.IsValid(), "a batch of several commands is a root span")
	assert.Equal(t, trace.SpanKindConsumer, b.SpanKind)
	require.Len(t, b.Links, 2)
	assert.Equal(t, cmdA, b.Links[0].SpanContext.WithRemote(false))
	assert.Equal(t, cmdB, b.Links[1].SpanContext.WithRemote(false))
	a := oteltest.Attrs(b.Attributes)
	assert.Equal(t, "traced", a[otelwire.AttrProjection].AsString())
	assert.Equal(t, int64(4), a[otelwire.AttrEvents].AsInt64())
	assert.Equal(t, int64(2), a[otelwire.AttrLinkedCommands].AsInt64())
	assert.Equal(t, int64(4), a[otelwire.AttrProcessed].AsInt64())
	assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())
	assert.Equal(t, int64(last.LastGlobalPosition), a[otelwire.AttrLastPosition].AsInt64())
	assert.Positive(t, a[otelwire.AttrFirstPosition].AsInt64())
	_, hasTenant := a[otelwire.AttrTenant]
	assert.False(t, hasTenant, "a projection of every partition has no tenant")
	// The handler writes and the checkpoint run under the batch span (the
	// checkpoint in a pgx batch, its statements one level further down).
	var sqls []string
	var walk func(sc trace.SpanContext)
	walk = func(sc trace.SpanContext) {
		for _, c := range r.Children(sc) {
			sqls = append(sqls, oteltest.Attrs(c.Attributes)[attribute.Key("db.query.text")].AsString())
			walk(c.SpanContext)
		}
	}
	walk(b.SpanContext)
	joined := strings.Join(sqls, "\n")
	assert.Contains(t, joined, "INSERT INTO applied")
	assert.Contains(t, joined, "UPDATE subscriptions")
	for _, s := range r.Spans.GetSpans() {
		assert.NotEqual(t, startSpan.SpanContext().SpanID(), s.Parent.SpanID(), "span %s is a child of the starter", s.Name)
	}

	// One command's events alone: the batch is a child of the command.
	cmdC, mdC := r.Command("Command C")
	last = projtest.AppendCart(t, es, "acme", "c4", projtest.WithMeta(mdC, projtest.CartEvent(projtest.TypeOpened, "c4", "", 0), projtest.CartEvent(projtest.TypeAdded, "c4", "y", 2))...)
	require.NoError(t, p.WaitFor(ctx, last.LastPosition()))
	projtest.Stop(t, p)
	batches = r.Named("projection traced")
	require.Len(t, batches, 2)
	b = batches[1]
	assert.Equal(t, cmdC.TraceID(), b.SpanContext.TraceID())
	assert.Equal(t, cmdC.SpanID(), b.Parent.SpanID())
	assert.Empty(t, b.Links)
	assert.Equal(t, int64(1), oteltest.Attrs(b.Attributes)[otelwire.AttrLinkedCommands].AsInt64())

	m := r.Metrics(t)
	assert.Equal(t, int64(6), oteltest.SumInt(t, m[otelwire.MetricProjectionEvents], otelwire.AttrProjection.String("traced")))
	h, ok := m[otelwire.MetricProjectionBatchDuration].Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	var batchCount uint64
	for _, dp := range h.DataPoints {
		if oteltest.HasAttrs(dp.Attributes, otelwire.AttrProjection.String("traced"), otelwire.AttrOutcome.String("ok")) {
			batchCount += dp.Count
		}
	}
	assert.Equal(t, uint64(2), batchCount)
	projtest.RequireBoundedAttributes(t, m)
}

// The lag gauges report, while the projection runs, how many events it has
// not applied and how old the oldest is; they are gone once it stops.
func TestProjectionLagMetric(t *testing.T) {
	t.Parallel()
	r := projtest.NewTelRig(t)
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	var last store.AppendResult
	for i := range 5 {
		last = projtest.AppendCart(t, es, "", "lag-"+string(rune('a'+i)), projtest.CartEvent(projtest.TypeOpened, "x", "", 0))
	}
	projtest.ReadAllEvents(t, pool, es, "")
	first := last.LastGlobalPosition - 4

	entered, release := make(chan struct{}), make(chan struct{})
	block := func(ctx context.Context, _ pgx.Tx, e store.Event) error {
		if e.GlobalPosition == first {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	p, err := projection.New(pool, &projection.Config{Name: "lagging", Store: es, TracerProvider: r.TP, MeterProvider: r.MP, Logger: projtest.QuietLogger,
		BatchSize: 2, Handlers: projection.Registry{projtest.TypeOpened: {block}}})
	require.NoError(t, err)

	lag := func() (events int64, seconds float64, found bool) {
		m := r.Metrics(t)
		ge, ok1 := m[otelwire.MetricProjectionLagEvents].Data.(metricdata.Gauge[int64])
		gt, ok2 := m[otelwire.MetricProjectionLagTime].Data.(metricdata.Gauge[float64])
		if !ok1 || !ok2 || len(ge.DataPoints) == 0 || len(gt.DataPoints) == 0 {
			return 0, 0, false
		}
		require.Len(t, ge.DataPoints, 1)
		v, _ := ge.DataPoints[0].Attributes.Value(otelwire.AttrProjection)
		require.Equal(t, "lagging", v.AsString())
		require.Equal(t, 1, ge.DataPoints[0].Attributes.Len(), "only the projection's name")
		return ge.DataPoints[0].Value, gt.DataPoints[0].Value, true
	}
	_, _, found := lag()
	assert.False(t, found, "no lag before the projection runs")

	require.NoError(t, p.Start(ctx))
	<-entered
	assert.Equal(t, int64(1), r.Callbacks.Load(), "the lag callback is registered while running")
	events, seconds, found := lag()
	require.True(t, found)
	assert.Equal(t, int64(5), events, "every event is still to apply")
	assert.Greater(t, seconds, 0.0)
	close(release)
	require.NoError(t, p.WaitFor(ctx, last.LastPosition()))
	events, seconds, found = lag()
	require.True(t, found)
	assert.Zero(t, events)
	assert.Zero(t, seconds)

	projtest.Stop(t, p)
	_, _, found = lag()
	assert.False(t, found, "no lag reported once stopped")
	assert.Zero(t, r.Callbacks.Load(), "the lag callback is unregistered on Stop")
}
