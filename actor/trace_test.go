package actor_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/telemetry"
)

// otelRig is one process's OpenTelemetry SDK: spans into an in-memory
// exporter, metrics into a manual reader.
type otelRig struct {
	tel    *telemetry.Telemetry
	tp     *sdktrace.TracerProvider
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
}

func newOtelRig(t *testing.T) *otelRig {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tel, err := telemetry.New(&telemetry.Config{TracerProvider: tp, MeterProvider: mp})
	require.NoError(t, err)
	return &otelRig{tel: tel, tp: tp, spans: spans, reader: reader}
}

// named returns the ended spans called name, in the order they ended.
func (r *otelRig) named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.spans.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// one returns the only ended span called name.
func (r *otelRig) one(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	s := r.named(name)
	require.Len(t, s, 1, "spans named %q", name)
	return s[0]
}

// childrenNamed returns the ended spans called name whose parent is sc.
func (r *otelRig) childrenNamed(sc trace.SpanContext, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.named(name) {
		if s.Parent.TraceID() == sc.TraceID() && s.Parent.SpanID() == sc.SpanID() {
			out = append(out, s)
		}
	}
	return out
}

// metrics collects the metrics recorded so far, by name.
func (r *otelRig) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func attrsOf(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		out[kv.Key] = kv.Value
	}
	return out
}

// pgProcess is what one process holds: a pool and a store on it.
type pgProcess struct {
	pool  *pgxpool.Pool
	store *postgres.Store
}

// pgDatabase returns a fresh migrated database's connection string.
func pgDatabase(t *testing.T) string {
	t.Helper()
	conn := pgtest.NewDatabase(t)
	p := connect(t, conn)
	require.NoError(t, postgres.Migrate(context.Background(), p.pool))
	return conn
}

// connect opens a pool and a store on conn, as a new process would.
func connect(t *testing.T, conn string) pgProcess {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), conn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	st, err := postgres.New(pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	return pgProcess{pool: pool, store: st}
}

// startCounterProjection runs a projection of the counter events, tracing
// with tel, until the test ends (or stop is called).
func startCounterProjection(t *testing.T, p pgProcess, tel *telemetry.Telemetry, batchSize int) (proj *projection.Projection, stop func()) {
	t.Helper()
	noop := func(context.Context, pgx.Tx, store.Event) error { return nil }
	proj, err := projection.New(p.pool, &projection.Config{
		Name: "counters", Store: p.store, Telemetry: tel, Logger: quietLogger(),
		BatchSize: batchSize, Handlers: projection.Registry{"Incremented": {noop}},
	})
	require.NoError(t, err)
	require.NoError(t, proj.Start(context.Background()))
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, proj.Stop(ctx))
	}
	t.Cleanup(stop)
	return proj, stop
}

func waitProjected(t *testing.T, proj *projection.Projection, pos store.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, proj.WaitFor(ctx, pos))
}

// traceParentOf returns the span context saved in an event's metadata.
func traceParentOf(t *testing.T, e store.Event) trace.SpanContext {
	t.Helper()
	sc, ok := telemetry.SpanContextFromMetadata(e.Metadata)
	require.True(t, ok, "event %s carries trace context", e)
	return sc.WithRemote(false)
}

// Must show: one command on PostgreSQL makes a command span with its
// activation and append children, its events carry its trace context, and
// the projection batch applying them is a child of the command span, all
// with the documented attributes.
func TestOneCommandTraceOnPostgres(t *testing.T) {
	t.Parallel()
	r := newOtelRig(t)
	p := connect(t, pgDatabase(t))
	_, agg := startHost(t, actor.Config{Store: p.store, Telemetry: r.tel})
	proj, _ := startCounterProjection(t, p, r.tel, 0)

	ctx := telemetry.WithCorrelationID(context.Background(), "corr-1")
	res, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "s1", Op: "inc2"})
	require.NoError(t, err)
	waitProjected(t, proj, res.Position)

	cmd := r.one(t, "counter.counterCmd")
	assert.False(t, cmd.Parent.IsValid(), "a command sent without a span starts a trace")
	a := attrsOf(cmd.Attributes)
	assert.Equal(t, "counter", a[telemetry.AttrKind].AsString())
	assert.Equal(t, "acme", a[telemetry.AttrTenant].AsString())
	assert.Equal(t, "s1", a[telemetry.AttrStreamID].AsString())
	assert.Equal(t, "counterCmd", a[telemetry.AttrCommandType].AsString())
	assert.Equal(t, "corr-1", a[telemetry.AttrCorrelationID].AsString())
	assert.Equal(t, "ok", a[telemetry.AttrOutcome].AsString())
	assert.Equal(t, int64(0), a[telemetry.AttrRetries].AsInt64())
	assert.Equal(t, int64(2), a[telemetry.AttrEvents].AsInt64())

	act := r.childrenNamed(cmd.SpanContext, "activate counter")
	require.Len(t, act, 1, "the activation is a child of the command")
	a = attrsOf(act[0].Attributes)
	assert.Equal(t, "s1", a[telemetry.AttrStreamID].AsString())
	assert.Equal(t, int64(0), a[telemetry.AttrEventsReplayed].AsInt64())
	assert.False(t, a[telemetry.AttrSnapshotUsed].AsBool())
	assert.Equal(t, "ok", a[telemetry.AttrOutcome].AsString())

	app := r.childrenNamed(cmd.SpanContext, "append counter")
	require.Len(t, app, 1, "the append is a child of the command")
	a = attrsOf(app[0].Attributes)
	assert.Equal(t, "counter", a[telemetry.AttrKind].AsString())
	assert.Equal(t, "acme", a[telemetry.AttrTenant].AsString())
	assert.Equal(t, "s1", a[telemetry.AttrStreamID].AsString())
	assert.Equal(t, int64(2), a[telemetry.AttrEvents].AsInt64())
	assert.NotEmpty(t, a[telemetry.AttrExpectedVersion].AsString())
	assert.Equal(t, "ok", a[telemetry.AttrOutcome].AsString())
	assert.Equal(t, int64(2), a[telemetry.AttrVersion].AsInt64())

	for _, e := range readAll(t, p.store, "acme", "s1") {
		assert.Equal(t, cmd.SpanContext, traceParentOf(t, e))
		assert.Equal(t, "corr-1", e.Metadata[store.MetaCorrelationID])
	}

	batch := r.childrenNamed(cmd.SpanContext, "projection counters")
	require.Len(t, batch, 1, "the projection batch is a child of the command")
	assert.Equal(t, trace.SpanKindConsumer, batch[0].SpanKind)
	a = attrsOf(batch[0].Attributes)
	assert.Equal(t, "counters", a[telemetry.AttrProjection].AsString())
	assert.Equal(t, int64(2), a[telemetry.AttrEvents].AsInt64())
	assert.Equal(t, int64(2), a[telemetry.AttrProcessed].AsInt64())
	assert.Equal(t, int64(1), a[telemetry.AttrLinkedCommands].AsInt64())
	assert.Equal(t, int64(res.GlobalPosition), a[telemetry.AttrLastPosition].AsInt64())
	assert.Equal(t, int64(res.GlobalPosition)-1, a[telemetry.AttrFirstPosition].AsInt64())
	assert.Equal(t, "ok", a[telemetry.AttrOutcome].AsString())
}

// Must show: a command that conflicts with another process and is
// retried keeps its trace: the retry is an event on its span, each
// attempt has an append child (the first one a conflict), and the events
// finally written carry the command's trace context.
func TestTraceSurvivesConflictRetry(t *testing.T) {
	t.Parallel()
	r := newOtelRig(t)
	conn := pgDatabase(t)
	pa, pb := connect(t, conn), connect(t, conn)
	_, a := startHost(t, actor.Config{Store: pa.store, Telemetry: r.tel, IdleTimeout: -1})
	_, b := startHost(t, actor.Config{Store: pb.store, Telemetry: r.tel, IdleTimeout: -1})
	ctx := context.Background()

	_, err := a.Send(ctx, counterCmd{Tenant: "acme", Stream: "hot"}) // A caches version 1
	require.NoError(t, err)
	_, err = b.Send(ctx, counterCmd{Tenant: "acme", Stream: "hot"}) // B writes version 2
	require.NoError(t, err)
	cctx, parent := r.tp.Tracer("test").Start(ctx, "request")
	res, err := a.Send(cctx, counterCmd{Tenant: "acme", Stream: "hot"}) // conflict, retried at 3
	parent.End()
	require.NoError(t, err)
	require.Equal(t, store.Version(3), res.Version)

	cmds := r.childrenNamed(parent.SpanContext(), "counter.counterCmd")
	require.Len(t, cmds, 1)
	cmd := cmds[0]
	assert.Equal(t, int64(1), attrsOf(cmd.Attributes)[telemetry.AttrRetries].AsInt64())
	assert.Equal(t, "ok", attrsOf(cmd.Attributes)[telemetry.AttrOutcome].AsString())
	var retries int
	for _, ev := range cmd.Events {
		if ev.Name == "retry" {
			retries++
		}
	}
	assert.Equal(t, 1, retries, "the retry is an event on the command span")
	apps := r.childrenNamed(cmd.SpanContext, "append counter")
	require.Len(t, apps, 2, "one append per attempt")
	assert.Equal(t, "conflict", attrsOf(apps[0].Attributes)[telemetry.AttrOutcome].AsString())
	assert.Equal(t, "ok", attrsOf(apps[1].Attributes)[telemetry.AttrOutcome].AsString())

	evs := readAll(t, pa.store, "acme", "hot")
	require.Len(t, evs, 3)
	assert.Equal(t, cmd.SpanContext, traceParentOf(t, evs[2]), "the retried event carries the command's trace")
	assert.NotEqual(t, cmd.SpanContext.TraceID(), traceParentOf(t, evs[1]).TraceID(), "B's event has its own trace")

	m := r.metrics(t)
	assert.Equal(t, int64(1), sumInt(t, m[telemetry.MetricCommandConflicts], telemetry.AttrKind.String("counter")))
	assert.Equal(t, int64(1), sumInt(t, m[telemetry.MetricCommandRetries], telemetry.AttrKind.String("counter")))
}

// Must show: passivation and reactivation keep each command's trace: the
// reactivation is a child of the new command, the new event carries the
// new command's trace, and a projection batch applying events from before
// and after the passivation links to both original command spans.
func TestTraceSurvivesPassivation(t *testing.T) {
	t.Parallel()
	r := newOtelRig(t)
	p := connect(t, pgDatabase(t))
	h, agg := startHost(t, actor.Config{Store: p.store, Telemetry: r.tel, IdleTimeout: 10 * time.Millisecond})
	ctx := context.Background()

	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "nap"})
	require.NoError(t, err)
	eventually(t, "idle passivation", func() bool { return h.Stats().LiveActors == 0 })
	res, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "nap"})
	require.NoError(t, err)
	require.Equal(t, store.Version(2), res.Version)

	cmds := r.named("counter.counterCmd")
	require.Len(t, cmds, 2)
	first, second := cmds[0].SpanContext, cmds[1].SpanContext
	require.NotEqual(t, first.TraceID(), second.TraceID())
	react := r.childrenNamed(second, "activate counter")
	require.Len(t, react, 1, "the reactivation is a child of the second command")
	assert.Equal(t, int64(1), attrsOf(react[0].Attributes)[telemetry.AttrEventsReplayed].AsInt64())

	evs := readAll(t, p.store, "acme", "nap")
	require.Len(t, evs, 2)
	assert.Equal(t, first, traceParentOf(t, evs[0]))
	assert.Equal(t, second, traceParentOf(t, evs[1]), "the reactivated actor's event carries the new command's trace")

	// The projection starts now and applies both events in one batch.
	proj, _ := startCounterProjection(t, p, r.tel, 0)
	waitProjected(t, proj, res.Position)
	batch := r.one(t, "projection counters")
	assert.False(t, batch.Parent.IsValid(), "a batch of two commands is a root span")
	require.Len(t, batch.Links, 2)
	assert.Equal(t, first, batch.Links[0].SpanContext.WithRemote(false))
	assert.Equal(t, second, batch.Links[1].SpanContext.WithRemote(false))
	assert.Equal(t, int64(2), attrsOf(batch.Attributes)[telemetry.AttrLinkedCommands].AsInt64())
}

// Must show: after a process restart (new host, new projection, new
// tracer provider on the same database) the projection's batch still
// links to the original commands' traces, read from the events' metadata,
// and a new command's event carries the new trace.
func TestTraceSurvivesProcessRestart(t *testing.T) {
	t.Parallel()
	conn := pgDatabase(t)
	ctx := context.Background()

	// Process 1 writes two commands and goes away.
	r1 := newOtelRig(t)
	p1 := connect(t, conn)
	h1, err := actor.New(actor.Config{Store: p1.store, Telemetry: r1.tel, Logger: quietLogger()})
	require.NoError(t, err)
	agg1, err := actor.Register(h1, counterKind())
	require.NoError(t, err)
	require.NoError(t, h1.Start(ctx))
	_, err = agg1.Send(ctx, counterCmd{Tenant: "acme", Stream: "a"})
	require.NoError(t, err)
	_, err = agg1.Send(ctx, counterCmd{Tenant: "acme", Stream: "b"})
	require.NoError(t, err)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, h1.Stop(sctx))
	old := r1.named("counter.counterCmd")
	require.Len(t, old, 2)
	require.NoError(t, r1.tp.Shutdown(sctx))
	p1.pool.Close()

	// Process 2: new pool, new SDK, new host and projection.
	r2 := newOtelRig(t)
	p2 := connect(t, conn)
	proj, _ := startCounterProjection(t, p2, r2.tel, 0)
	_, agg2 := startHost(t, actor.Config{Store: p2.store, Telemetry: r2.tel})
	res, err := agg2.Send(ctx, counterCmd{Tenant: "acme", Stream: "a"})
	require.NoError(t, err)
	require.Equal(t, store.Version(2), res.Version)
	waitProjected(t, proj, res.Position)

	linked := map[trace.TraceID]bool{}
	for _, b := range r2.named("projection counters") {
		for _, l := range b.Links {
			linked[l.SpanContext.TraceID()] = true
		}
		if b.Parent.IsValid() {
			linked[b.Parent.TraceID()] = true
		}
	}
	for _, c := range old {
		assert.True(t, linked[c.SpanContext.TraceID()], "a batch of process 2 links to trace %s of process 1", c.SpanContext.TraceID())
	}
	cmd := r2.one(t, "counter.counterCmd")
	evs := readAll(t, p2.store, "acme", "a")
	require.Len(t, evs, 2)
	assert.Equal(t, old[0].SpanContext, traceParentOf(t, evs[0]))
	assert.Equal(t, cmd.SpanContext, traceParentOf(t, evs[1]))
	assert.True(t, linked[cmd.SpanContext.TraceID()], "process 2's command is traced to its projection too")
}

// Must show: the metrics of commands, conflicts, retries, actors and
// projections read back through a manual reader, with bounded attributes
// only.
func TestMetricsOnPostgres(t *testing.T) {
	t.Parallel()
	r := newOtelRig(t)
	conn := pgDatabase(t)
	pa, pb, pc := connect(t, conn), connect(t, conn), connect(t, conn)
	ha, a := startHost(t, actor.Config{Store: pa.store, Telemetry: r.tel, IdleTimeout: -1})
	hb, b := startHost(t, actor.Config{Store: pb.store, Telemetry: r.tel, IdleTimeout: -1})
	hc, c := startHost(t, actor.Config{Store: pc.store, Telemetry: r.tel, IdleTimeout: 10 * time.Millisecond})
	proj, _ := startCounterProjection(t, pa, r.tel, 0)
	ctx := context.Background()

	send := func(agg *counterAgg, cmd counterCmd) actor.Result[counterEvent, counterState] {
		t.Helper()
		res, err := agg.Send(ctx, cmd)
		if cmd.Op == "reject" {
			require.Error(t, err)
		} else {
			require.NoError(t, err)
		}
		return res
	}
	send(a, counterCmd{Tenant: "acme", Stream: "s1"})
	send(b, counterCmd{Tenant: "acme", Stream: "s1"})
	send(a, counterCmd{Tenant: "acme", Stream: "s1"}) // conflict, one retry
	send(a, counterCmd{Tenant: "acme", Stream: "s1", Op: "reject"})
	last := send(c, counterCmd{Tenant: "other", Stream: "s2"})
	eventually(t, "idle passivation on host C", func() bool { return hc.Stats().LiveActors == 0 })
	waitProjected(t, proj, last.Position)

	m := r.metrics(t)
	kind := telemetry.AttrKind.String("counter")
	dur, ok := m[telemetry.MetricCommandDuration].Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	counts := map[string]uint64{}
	for _, dp := range dur.DataPoints {
		require.True(t, hasAttrs(dp.Attributes, kind, telemetry.AttrCommandType.String("counterCmd")))
		o, _ := dp.Attributes.Value(telemetry.AttrOutcome)
		counts[o.AsString()] += dp.Count
		assert.Equal(t, telemetry.DurationBuckets, dp.Bounds, "millisecond-scale buckets")
	}
	assert.Equal(t, map[string]uint64{"ok": 4, "rejected": 1}, counts)
	assert.Equal(t, int64(1), sumInt(t, m[telemetry.MetricCommandConflicts], kind))
	assert.Equal(t, int64(1), sumInt(t, m[telemetry.MetricCommandRetries], kind))
	assert.Equal(t, int64(3), sumInt(t, m[telemetry.MetricActorActivations], kind, telemetry.AttrOutcome.String("ok")))
	assert.Equal(t, ha.Stats().Activations+hb.Stats().Activations+hc.Stats().Activations,
		sumInt(t, m[telemetry.MetricActorActivations], kind))
	assert.Equal(t, int64(1), sumInt(t, m[telemetry.MetricActorPassivations], kind, telemetry.AttrReason.String(telemetry.ReasonIdle)))
	assert.Equal(t, int64(2), sumInt(t, m[telemetry.MetricActorsLive], kind), "s1 on hosts A and B")
	assert.Equal(t, int64(4), sumInt(t, m[telemetry.MetricProjectionEvents], telemetry.AttrProjection.String("counters")))

	lag, ok := m[telemetry.MetricProjectionLagEvents].Data.(metricdata.Gauge[int64])
	require.True(t, ok, "%s is observed", telemetry.MetricProjectionLagEvents)
	require.Len(t, lag.DataPoints, 1)
	assert.True(t, hasAttrs(lag.DataPoints[0].Attributes, telemetry.AttrProjection.String("counters")))
	assert.Zero(t, lag.DataPoints[0].Value, "caught up")
	lagTime, ok := m[telemetry.MetricProjectionLagTime].Data.(metricdata.Gauge[float64])
	require.True(t, ok)
	require.Len(t, lagTime.DataPoints, 1)
	assert.Zero(t, lagTime.DataPoints[0].Value)

	// No stream id and no tenant in any metric attribute.
	forEachAttrSet(m, func(name string, set attribute.Set) {
		for _, kv := range set.ToSlice() {
			assert.NotContains(t, []attribute.Key{telemetry.AttrStreamID, telemetry.AttrTenant}, kv.Key, "metric %s", name)
			assert.NotContains(t, []string{"s1", "s2", "acme", "other"}, kv.Value.Emit(), "metric %s attribute %s", name, kv.Key)
		}
	})
}

// sumInt adds up the int64 data points of m (a sum) having want.
func sumInt(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "metric %q is an int64 sum", m.Name)
	var n int64
	for _, dp := range s.DataPoints {
		if hasAttrs(dp.Attributes, want...) {
			n += dp.Value
		}
	}
	return n
}

func hasAttrs(set attribute.Set, want ...attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// forEachAttrSet calls fn with the attributes of every data point.
func forEachAttrSet(metrics map[string]metricdata.Metrics, fn func(name string, set attribute.Set)) {
	for name, m := range metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		case metricdata.Gauge[int64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		case metricdata.Gauge[float64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		case metricdata.Histogram[int64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		}
	}
}
