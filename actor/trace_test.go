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
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/telemetry"
)

// newOtelRig is one process's OpenTelemetry SDK.
func newOtelRig(t *testing.T) *oteltest.Recorder { return oteltest.New(t) }

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
// into rec, until the test ends (or stop is called).
func startCounterProjection(t *testing.T, p pgProcess, rec *oteltest.Recorder, batchSize int) (proj *projection.Projection, stop func()) {
	t.Helper()
	noop := func(context.Context, pgx.Tx, store.Event) error { return nil }
	proj, err := projection.New(p.pool, &projection.Config{
		Name: "counters", Store: p.store, TracerProvider: rec.TracerProvider, MeterProvider: rec.MeterProvider,
		Logger:    quietLogger(),
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
	_, agg := startHost(t, p.store, actor.Config{TracerProvider: r.TracerProvider, MeterProvider: r.MeterProvider})
	proj, _ := startCounterProjection(t, p, r, 0)

	ctx := telemetry.WithCorrelationID(context.Background(), "corr-1")
	res, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "s1", Op: "inc2"})
	require.NoError(t, err)
	waitProjected(t, proj, res.Position)

	cmd := r.One(t, "counter.counterCmd")
	assert.False(t, cmd.Parent.IsValid(), "a command sent without a span starts a trace")
	a := oteltest.Attrs(cmd.Attributes)
	assert.Equal(t, "counter", a[otelwire.AttrKind].AsString())
	assert.Equal(t, "acme", a[otelwire.AttrTenant].AsString())
	assert.Equal(t, "s1", a[otelwire.AttrStreamID].AsString())
	assert.Equal(t, "counterCmd", a[otelwire.AttrCommandType].AsString())
	assert.Equal(t, "corr-1", a[otelwire.AttrCorrelationID].AsString())
	assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())
	assert.Equal(t, int64(0), a[otelwire.AttrRetries].AsInt64())
	assert.Equal(t, int64(2), a[otelwire.AttrEvents].AsInt64())

	act := r.ChildrenNamed(cmd.SpanContext, "activate counter")
	require.Len(t, act, 1, "the activation is a child of the command")
	a = oteltest.Attrs(act[0].Attributes)
	assert.Equal(t, "s1", a[otelwire.AttrStreamID].AsString())
	assert.Equal(t, int64(0), a[otelwire.AttrEventsReplayed].AsInt64())
	assert.False(t, a[otelwire.AttrSnapshotUsed].AsBool())
	assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())

	app := r.ChildrenNamed(cmd.SpanContext, "append counter")
	require.Len(t, app, 1, "the append is a child of the command")
	a = oteltest.Attrs(app[0].Attributes)
	assert.Equal(t, "counter", a[otelwire.AttrKind].AsString())
	assert.Equal(t, "acme", a[otelwire.AttrTenant].AsString())
	assert.Equal(t, "s1", a[otelwire.AttrStreamID].AsString())
	assert.Equal(t, int64(2), a[otelwire.AttrEvents].AsInt64())
	assert.NotEmpty(t, a[otelwire.AttrExpectedVersion].AsString())
	assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())
	assert.Equal(t, int64(2), a[otelwire.AttrVersion].AsInt64())

	for _, e := range readAll(t, p.store, "acme", "s1") {
		assert.Equal(t, cmd.SpanContext, traceParentOf(t, e))
		assert.Equal(t, "corr-1", e.Metadata[store.MetaCorrelationID])
	}

	batch := r.ChildrenNamed(cmd.SpanContext, "projection counters")
	require.Len(t, batch, 1, "the projection batch is a child of the command")
	assert.Equal(t, trace.SpanKindConsumer, batch[0].SpanKind)
	a = oteltest.Attrs(batch[0].Attributes)
	assert.Equal(t, "counters", a[otelwire.AttrProjection].AsString())
	assert.Equal(t, int64(2), a[otelwire.AttrEvents].AsInt64())
	assert.Equal(t, int64(2), a[otelwire.AttrProcessed].AsInt64())
	assert.Equal(t, int64(1), a[otelwire.AttrLinkedCommands].AsInt64())
	assert.Equal(t, int64(res.GlobalPosition), a[otelwire.AttrLastPosition].AsInt64())
	assert.Equal(t, int64(res.GlobalPosition)-1, a[otelwire.AttrFirstPosition].AsInt64())
	assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())
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
	_, a := startHost(t, pa.store, actor.Config{TracerProvider: r.TracerProvider, MeterProvider: r.MeterProvider, IdleTimeout: -1})
	_, b := startHost(t, pb.store, actor.Config{TracerProvider: r.TracerProvider, MeterProvider: r.MeterProvider, IdleTimeout: -1})
	ctx := context.Background()

	_, err := a.Send(ctx, counterCmd{Tenant: "acme", Stream: "hot"}) // A caches version 1
	require.NoError(t, err)
	_, err = b.Send(ctx, counterCmd{Tenant: "acme", Stream: "hot"}) // B writes version 2
	require.NoError(t, err)
	cctx, parent := r.TracerProvider.Tracer("test").Start(ctx, "request")
	res, err := a.Send(cctx, counterCmd{Tenant: "acme", Stream: "hot"}) // conflict, retried at 3
	parent.End()
	require.NoError(t, err)
	require.Equal(t, store.Version(3), res.Version)

	cmds := r.ChildrenNamed(parent.SpanContext(), "counter.counterCmd")
	require.Len(t, cmds, 1)
	cmd := cmds[0]
	assert.Equal(t, int64(1), oteltest.Attrs(cmd.Attributes)[otelwire.AttrRetries].AsInt64())
	assert.Equal(t, "ok", oteltest.Attrs(cmd.Attributes)[otelwire.AttrOutcome].AsString())
	var retries int
	for _, ev := range cmd.Events {
		if ev.Name == "retry" {
			retries++
		}
	}
	assert.Equal(t, 1, retries, "the retry is an event on the command span")
	apps := r.ChildrenNamed(cmd.SpanContext, "append counter")
	require.Len(t, apps, 2, "one append per attempt")
	assert.Equal(t, "conflict", oteltest.Attrs(apps[0].Attributes)[otelwire.AttrOutcome].AsString())
	assert.Equal(t, "ok", oteltest.Attrs(apps[1].Attributes)[otelwire.AttrOutcome].AsString())

	evs := readAll(t, pa.store, "acme", "hot")
	require.Len(t, evs, 3)
	assert.Equal(t, cmd.SpanContext, traceParentOf(t, evs[2]), "the retried event carries the command's trace")
	assert.NotEqual(t, cmd.SpanContext.TraceID(), traceParentOf(t, evs[1]).TraceID(), "B's event has its own trace")

	m := r.Metrics(t)
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricCommandConflicts], otelwire.AttrKind.String("counter")))
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricCommandRetries], otelwire.AttrKind.String("counter")))
}

// Must show: passivation and reactivation keep each command's trace: the
// reactivation is a child of the new command, the new event carries the
// new command's trace, and a projection batch applying events from before
// and after the passivation links to both original command spans.
func TestTraceSurvivesPassivation(t *testing.T) {
	t.Parallel()
	r := newOtelRig(t)
	p := connect(t, pgDatabase(t))
	h, agg := startHost(t, p.store, actor.Config{TracerProvider: r.TracerProvider, MeterProvider: r.MeterProvider, IdleTimeout: 10 * time.Millisecond})
	ctx := context.Background()

	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "nap"})
	require.NoError(t, err)
	eventually(t, "idle passivation", func() bool { return h.Stats().LiveActors == 0 })
	res, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "nap"})
	require.NoError(t, err)
	require.Equal(t, store.Version(2), res.Version)

	cmds := r.Named("counter.counterCmd")
	require.Len(t, cmds, 2)
	first, second := cmds[0].SpanContext, cmds[1].SpanContext
	require.NotEqual(t, first.TraceID(), second.TraceID())
	react := r.ChildrenNamed(second, "activate counter")
	require.Len(t, react, 1, "the reactivation is a child of the second command")
	assert.Equal(t, int64(1), oteltest.Attrs(react[0].Attributes)[otelwire.AttrEventsReplayed].AsInt64())

	evs := readAll(t, p.store, "acme", "nap")
	require.Len(t, evs, 2)
	assert.Equal(t, first, traceParentOf(t, evs[0]))
	assert.Equal(t, second, traceParentOf(t, evs[1]), "the reactivated actor's event carries the new command's trace")

	// The projection starts now and applies both events in one batch.
	proj, _ := startCounterProjection(t, p, r, 0)
	waitProjected(t, proj, res.Position)
	batch := r.One(t, "projection counters")
	assert.False(t, batch.Parent.IsValid(), "a batch of two commands is a root span")
	require.Len(t, batch.Links, 2)
	assert.Equal(t, first, batch.Links[0].SpanContext.WithRemote(false))
	assert.Equal(t, second, batch.Links[1].SpanContext.WithRemote(false))
	assert.Equal(t, int64(2), oteltest.Attrs(batch.Attributes)[otelwire.AttrLinkedCommands].AsInt64())
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
	h1, err := actor.New(p1.store, &actor.Config{TracerProvider: r1.TracerProvider, MeterProvider: r1.MeterProvider, Logger: quietLogger()})
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
	old := r1.Named("counter.counterCmd")
	require.Len(t, old, 2)
	require.NoError(t, r1.TracerProvider.Shutdown(sctx))
	p1.pool.Close()

	// Process 2: new pool, new SDK, new host and projection.
	r2 := newOtelRig(t)
	p2 := connect(t, conn)
	proj, _ := startCounterProjection(t, p2, r2, 0)
	_, agg2 := startHost(t, p2.store, actor.Config{TracerProvider: r2.TracerProvider, MeterProvider: r2.MeterProvider})
	res, err := agg2.Send(ctx, counterCmd{Tenant: "acme", Stream: "a"})
	require.NoError(t, err)
	require.Equal(t, store.Version(2), res.Version)
	waitProjected(t, proj, res.Position)

	linked := map[trace.TraceID]bool{}
	for _, b := range r2.Named("projection counters") {
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
	cmd := r2.One(t, "counter.counterCmd")
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
	ha, a := startHost(t, pa.store, actor.Config{TracerProvider: r.TracerProvider, MeterProvider: r.MeterProvider, IdleTimeout: -1})
	hb, b := startHost(t, pb.store, actor.Config{TracerProvider: r.TracerProvider, MeterProvider: r.MeterProvider, IdleTimeout: -1})
	hc, c := startHost(t, pc.store, actor.Config{TracerProvider: r.TracerProvider, MeterProvider: r.MeterProvider, IdleTimeout: 10 * time.Millisecond})
	proj, _ := startCounterProjection(t, pa, r, 0)
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

	m := r.Metrics(t)
	kind := otelwire.AttrKind.String("counter")
	dur, ok := m[otelwire.MetricCommandDuration].Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	counts := map[string]uint64{}
	for _, dp := range dur.DataPoints {
		require.True(t, oteltest.HasAttrs(dp.Attributes, kind, otelwire.AttrCommandType.String("counterCmd")))
		o, _ := dp.Attributes.Value(otelwire.AttrOutcome)
		counts[o.AsString()] += dp.Count
		assert.Equal(t, otelwire.DurationBuckets, dp.Bounds, "millisecond-scale buckets")
	}
	assert.Equal(t, map[string]uint64{"ok": 4, "rejected": 1}, counts)
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricCommandConflicts], kind))
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricCommandRetries], kind))
	assert.Equal(t, int64(3), oteltest.SumInt(t, m[otelwire.MetricActorActivations], kind, otelwire.AttrOutcome.String("ok")))
	assert.Equal(t, ha.Stats().Activations+hb.Stats().Activations+hc.Stats().Activations,
		oteltest.SumInt(t, m[otelwire.MetricActorActivations], kind))
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricActorPassivations], kind, otelwire.AttrReason.String(otelwire.ReasonIdle)))
	assert.Equal(t, int64(2), oteltest.SumInt(t, m[otelwire.MetricActorsLive], kind), "s1 on hosts A and B")
	assert.Equal(t, int64(4), oteltest.SumInt(t, m[otelwire.MetricProjectionEvents], otelwire.AttrProjection.String("counters")))

	lag, ok := m[otelwire.MetricProjectionLagEvents].Data.(metricdata.Gauge[int64])
	require.True(t, ok, "%s is observed", otelwire.MetricProjectionLagEvents)
	require.Len(t, lag.DataPoints, 1)
	assert.True(t, oteltest.HasAttrs(lag.DataPoints[0].Attributes, otelwire.AttrProjection.String("counters")))
	assert.Zero(t, lag.DataPoints[0].Value, "caught up")
	lagTime, ok := m[otelwire.MetricProjectionLagTime].Data.(metricdata.Gauge[float64])
	require.True(t, ok)
	require.Len(t, lagTime.DataPoints, 1)
	assert.Zero(t, lagTime.DataPoints[0].Value)

	// No stream id and no tenant in any metric attribute.
	oteltest.ForEachAttrSet(t, m, func(name string, set attribute.Set) {
		for _, kv := range set.ToSlice() {
			assert.NotContains(t, []attribute.Key{otelwire.AttrStreamID, otelwire.AttrTenant}, kv.Key, "metric %s", name)
			assert.NotContains(t, []string{"s1", "s2", "acme", "other"}, kv.Value.Emit(), "metric %s attribute %s", name, kv.Key)
		}
	})
}
