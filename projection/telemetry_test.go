package projection

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/telemetry"
)

// telRig records spans and metrics in memory, counting the metric
// callbacks registered.
type telRig struct {
	*oteltest.Recorder
	// mp is the Recorder's meter provider, counting callbacks.
	mp metric.MeterProvider
	// callbacks is the number of metric callbacks registered.
	callbacks atomic.Int64
}

func newTelRig(t *testing.T) *telRig {
	t.Helper()
	r := &telRig{Recorder: oteltest.New(t)}
	r.mp = countingProvider{r.MeterProvider, &r.callbacks}
	return r
}

// countingProvider counts the metric callbacks registered and not yet
// unregistered.
type countingProvider struct {
	metric.MeterProvider
	n *atomic.Int64
}

func (p countingProvider) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	return countingMeter{p.MeterProvider.Meter(name, opts...), p.n}
}

type countingMeter struct {
	metric.Meter
	n *atomic.Int64
}

func (m countingMeter) RegisterCallback(f metric.Callback, insts ...metric.Observable) (metric.Registration, error) {
	reg, err := m.Meter.RegisterCallback(f, insts...)
	if err == nil {
		m.n.Add(1)
		reg = &countingRegistration{Registration: reg, n: m.n}
	}
	return reg, err
}

type countingRegistration struct {
	metric.Registration
	n    *atomic.Int64
	done atomic.Bool
}

func (r *countingRegistration) Unregister() error {
	if r.done.CompareAndSwap(false, true) {
		r.n.Add(-1)
	}
	return r.Registration.Unregister()
}

// collect returns the metrics recorded so far by name.
func (r *telRig) collect(t *testing.T) map[string]metricdata.Metrics { return r.Metrics(t) }

// command starts and ends a span standing for a command and returns the
// metadata its events carry.
func (r *telRig) command(name string) (trace.SpanContext, store.Metadata) {
	ctx, span := r.TracerProvider.Tracer("test").Start(context.Background(), name)
	defer span.End()
	return span.SpanContext(), telemetry.InjectMetadata(ctx, nil)
}

func withMeta(md store.Metadata, events ...store.EventData) []store.EventData {
	for i := range events {
		events[i].Metadata = md
	}
	return events
}

func spanAttrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	return oteltest.Attrs(s.Attributes)
}

// requireBoundedAttributes checks that no metric carries an attribute
// outside the bounded set (no stream id, no tenant).
func requireBoundedAttributes(t *testing.T, metrics map[string]metricdata.Metrics) {
	t.Helper()
	allowed := map[attribute.Key]bool{
		otelwire.AttrKind: true, otelwire.AttrCommandType: true, otelwire.AttrOutcome: true,
		otelwire.AttrProjection: true, otelwire.AttrEventType: true, otelwire.AttrReason: true,
		otelwire.AttrSnapshotUsed: true,
	}
	check := func(name string, set attribute.Set) {
		for _, kv := range set.ToSlice() {
			assert.True(t, allowed[kv.Key], "metric %s has attribute %s", name, kv.Key)
		}
	}
	for name, m := range metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				check(name, dp.Attributes)
			}
		case metricdata.Gauge[int64]:
			for _, dp := range d.DataPoints {
				check(name, dp.Attributes)
			}
		case metricdata.Gauge[float64]:
			for _, dp := range d.DataPoints {
				check(name, dp.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				check(name, dp.Attributes)
			}
		case metricdata.Histogram[int64]:
			for _, dp := range d.DataPoints {
				check(name, dp.Attributes)
			}
		}
	}
}

// tracedPool returns a pool on a fresh migrated database whose queries are
// traced by tp, and a store on it.
func tracedPool(t *testing.T, tp trace.TracerProvider) (*pgxpool.Pool, *postgres.Store) {
	t.Helper()
	ctx := testCtx(t)
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithDisableAcquireTracer())
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool))
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return pool, es
}

func stopProjection(t *testing.T, p interface{ Stop(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.Stop(ctx))
}

// A batch of one command's events is a child span of the command; a batch
// of several commands' events is a root span linked to each of them. The
// span covers the handler writes and the checkpoint; the metrics count
// batches and events.
func TestProjectionBatchSpans(t *testing.T) {
	t.Parallel()
	r := newTelRig(t)
	pool, es := tracedPool(t, r.TracerProvider)
	createAppliedTable(t, pool)
	ctx := testCtx(t)

	cmdA, mdA := r.command("command A")
	cmdB, mdB := r.command("command B")
	appendCart(t, es, "acme", "c1", withMeta(mdA, cartEvent(typeOpened, "c1", "", 0), cartEvent(typeAdded, "c1", "x", 1))...)
	appendCart(t, es, "acme", "c2", withMeta(mdB, cartEvent(typeOpened, "c2", "", 0))...)
	last := appendCart(t, es, "acme", "c3", cartEvent(typeOpened, "c3", "", 0)) // no trace context
	readAllEvents(t, pool, es, "")

	p, err := New(Config{Name: "traced", Pool: pool, Store: es, TracerProvider: r.TracerProvider, MeterProvider: r.mp, Logger: quietLogger,
		Handlers: Registry{typeOpened: {countHandler("a")}, typeAdded: {countHandler("a")}}})
	require.NoError(t, err)
	// A span current when the projection starts is not the parent of its
	// batches.
	startCtx, startSpan := r.TracerProvider.Tracer("test").Start(ctx, "starter")
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
	a := spanAttrs(b)
	assert.Equal(t, "traced", a[otelwire.AttrProjection].AsString())
	assert.Equal(t, int64(4), a[otelwire.AttrEvents].AsInt64())
	assert.Equal(t, int64(2), a[otelwire.AttrLinkedCommands].AsInt64())
	assert.Equal(t, int64(4), a[otelwire.AttrProcessed].AsInt64())
	assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())
	assert.Equal(t, int64(last.LastGlobalPosition), a[otelwire.AttrLastPosition].AsInt64())
	assert.Positive(t, a[otelwire.AttrFirstPosition].AsInt64())
	_, hasTenant := a[otelwire.AttrTenant]
	assert.False(t, hasTenant, "a projection of every partition has no tenant")
	// The handler writes and the checkpoint run under the batch span.
	var sqls []string
	for _, c := range r.Children(b.SpanContext) {
		sqls = append(sqls, spanAttrs(c)[attribute.Key("db.query.text")].AsString())
	}
	joined := strings.Join(sqls, "\n")
	assert.Contains(t, joined, "INSERT INTO applied")
	assert.Contains(t, joined, "UPDATE subscriptions")
	for _, s := range r.Spans.GetSpans() {
		assert.NotEqual(t, startSpan.SpanContext().SpanID(), s.Parent.SpanID(), "span %s is a child of the starter", s.Name)
	}

	// One command's events alone: the batch is a child of the command.
	cmdC, mdC := r.command("command C")
	last = appendCart(t, es, "acme", "c4", withMeta(mdC, cartEvent(typeOpened, "c4", "", 0), cartEvent(typeAdded, "c4", "y", 2))...)
	require.NoError(t, p.WaitFor(ctx, last.LastPosition()))
	stopProjection(t, p)
	batches = r.Named("projection traced")
	require.Len(t, batches, 2)
	b = batches[1]
	assert.Equal(t, cmdC.TraceID(), b.SpanContext.TraceID())
	assert.Equal(t, cmdC.SpanID(), b.Parent.SpanID())
	assert.Empty(t, b.Links)
	assert.Equal(t, int64(1), spanAttrs(b)[otelwire.AttrLinkedCommands].AsInt64())

	m := r.collect(t)
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
	requireBoundedAttributes(t, m)
}

// The lag gauges report, while the projection runs, how many events it has
// not applied and how old the oldest is; they are gone once it stops.
func TestProjectionLagMetric(t *testing.T) {
	t.Parallel()
	r := newTelRig(t)
	pool, es := newDB(t)
	ctx := testCtx(t)
	var last store.AppendResult
	for i := range 5 {
		last = appendCart(t, es, "", "lag-"+string(rune('a'+i)), cartEvent(typeOpened, "x", "", 0))
	}
	readAllEvents(t, pool, es, "")
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
	p, err := New(Config{Name: "lagging", Pool: pool, Store: es, TracerProvider: r.TracerProvider, MeterProvider: r.mp, Logger: quietLogger,
		BatchSize: 2, Handlers: Registry{typeOpened: {block}}})
	require.NoError(t, err)

	lag := func() (events int64, seconds float64, found bool) {
		m := r.collect(t)
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
	assert.Equal(t, int64(1), r.callbacks.Load(), "the lag callback is registered while running")
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

	stopProjection(t, p)
	_, _, found = lag()
	assert.False(t, found, "no lag reported once stopped")
	assert.Zero(t, r.callbacks.Load(), "the lag callback is unregistered on Stop")
}

// Consumers name their spans "consumer <name>"; an event dead-lettered
// after its handler failed is counted by projection and event type and
// noted on a batch span of its own.
func TestConsumerSpansAndDeadLetters(t *testing.T) {
	t.Parallel()
	r := newTelRig(t)
	pool, es := newDB(t)
	ctx := testCtx(t)
	c, err := NewConsumer(ConsumerConfig{Name: "mailer", Pool: pool, Store: es, TracerProvider: r.TracerProvider, MeterProvider: r.mp, Logger: quietLogger,
		OnFailure: FailSkip, Retry: RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond}})
	require.NoError(t, err)
	c.Subscribe(typeAdded, func(context.Context, pgx.Tx, store.Event) error { return errors.New("smtp down") })
	cmd, md := r.command("command")
	last := appendCart(t, es, "tenant-1", "c1", withMeta(md, cartEvent(typeOpened, "c1", "", 0), cartEvent(typeAdded, "c1", "x", 1))...)
	require.NoError(t, c.Start(ctx))
	require.NoError(t, c.WaitFor(ctx, last.LastPosition()))
	stopProjection(t, c)

	spans := r.Named("consumer mailer")
	require.NotEmpty(t, spans)
	var deadLettered int
	for _, s := range spans {
		assert.Equal(t, cmd.TraceID(), s.SpanContext.TraceID(), "every batch continues the command's trace")
		for _, ev := range s.Events {
			if ev.Name == "dead_lettered" {
				deadLettered++
				assert.Contains(t, ev.Attributes, otelwire.AttrEventType.String(typeAdded))
			}
		}
	}
	assert.Equal(t, 1, deadLettered)
	assert.Empty(t, r.Named("projection mailer"))

	m := r.collect(t)
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricProjectionDeadLettered],
		otelwire.AttrProjection.String("mailer"), otelwire.AttrEventType.String(typeAdded)))
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricProjectionEvents], otelwire.AttrProjection.String("mailer")),
		"the opening was applied, the failing event was not")
	requireBoundedAttributes(t, m)
}

// The per-stream runner traces each batch it projects.
func TestRunnerBatchSpan(t *testing.T) {
	t.Parallel()
	r := newTelRig(t)
	pool, es := newDB(t)
	createAppliedTable(t, pool)
	ctx := testCtx(t)
	cmd, md := r.command("command")
	appendCart(t, es, "tenant-1", "c1", withMeta(md, cartEvent(typeOpened, "c1", "", 0))...)
	run, err := NewRunner(RunnerConfig{Pool: pool, Store: es, TracerProvider: r.TracerProvider, MeterProvider: r.mp,
		Registry: Registry{typeOpened: {countHandler("r")}}})
	require.NoError(t, err)
	res, err := run.ProjectEvents(ctx, "per-stream", "c1", ProjectOptions{Partition: "tenant-1"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Processed)
	_, err = run.ProjectEvents(ctx, "per-stream", "c1", ProjectOptions{Partition: "tenant-1"})
	require.NoError(t, err)

	spans := r.Named("projection per-stream")
	require.Len(t, spans, 1, "a call with nothing to project has no span")
	assert.Equal(t, cmd.SpanID(), spans[0].Parent.SpanID())
	a := spanAttrs(spans[0])
	assert.Equal(t, "tenant-1", a[otelwire.AttrTenant].AsString())
	assert.Equal(t, int64(1), a[otelwire.AttrProcessed].AsInt64())
	assert.Equal(t, int64(1), oteltest.SumInt(t, r.collect(t)[otelwire.MetricProjectionEvents], otelwire.AttrProjection.String("per-stream")))
}

// The lag tracker's arithmetic, step by step.
func TestLagTracker(t *testing.T) {
	t.Parallel()
	var l lagTracker
	now := time.Now()
	_, _, ok := l.lag(now)
	assert.False(t, ok, "inactive: nothing reported")

	l.start(10, 0, time.Time{}, false)
	events, behind, ok := l.lag(now)
	require.True(t, ok)
	assert.Zero(t, events)
	assert.Zero(t, behind)

	t0 := now.Add(-3 * time.Second)
	l.noteHead(15, t0) // a notification
	events, behind, _ = l.lag(now)
	assert.Equal(t, int64(5), events)
	assert.Equal(t, 3*time.Second, behind)

	t1 := now.Add(-4 * time.Second)
	l.noteRead([]store.Event{{GlobalPosition: 11, Created: t1}, {GlobalPosition: 12, Created: now}})
	_, behind, _ = l.lag(now)
	assert.Equal(t, 4*time.Second, behind, "the first event read is the oldest unapplied")

	t2 := now.Add(-time.Second)
	l.noteApplied(12, t2)
	events, behind, _ = l.lag(now)
	assert.Equal(t, int64(3), events)
	assert.Equal(t, time.Second, behind)

	l.noteApplied(15, now)
	events, behind, _ = l.lag(now)
	assert.Zero(t, events)
	assert.Zero(t, behind)

	l.stop()
	_, _, ok = l.lag(now)
	assert.False(t, ok)

	// Taking the lease with the head of the log known.
	l.start(15, 40, t1, true)
	events, behind, ok = l.lag(now)
	require.True(t, ok)
	assert.Equal(t, int64(25), events)
	assert.Equal(t, 4*time.Second, behind)
	// A reset (rebuild) puts everything behind again.
	l.noteApplied(0, time.Time{})
	events, _, _ = l.lag(now)
	assert.Equal(t, int64(40), events)
}
