package projtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/telemetry"
)

// TelRig is a Telemetry recording into an in-memory span exporter and a
// manual metric reader.
type TelRig struct {
	Tel    *telemetry.Telemetry
	TP     *sdktrace.TracerProvider
	Spans  *tracetest.InMemoryExporter
	Reader *sdkmetric.ManualReader
	// callbacks is the number of metric callbacks registered.
	Callbacks atomic.Int64
}

func NewTelRig(t testing.TB) *TelRig {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	r := &TelRig{TP: tp, Spans: spans, Reader: reader}
	tel, err := telemetry.New(&telemetry.Config{TracerProvider: tp, MeterProvider: countingProvider{mp, &r.Callbacks}})
	require.NoError(t, err)
	r.Tel = tel
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

// Named returns the ended spans called name.
func (r *TelRig) Named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.Spans.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Children returns the ended spans whose parent is sc.
func (r *TelRig) Children(sc trace.SpanContext) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.Spans.GetSpans() {
		if s.Parent.SpanID() == sc.SpanID() && s.Parent.TraceID() == sc.TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// Collect returns the metrics recorded so far by name.
func (r *TelRig) Collect(t testing.TB) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// Command starts and ends a span standing for a Command and returns the
// metadata its events carry.
func (r *TelRig) Command(name string) (trace.SpanContext, store.Metadata) {
	ctx, span := r.TP.Tracer("test").Start(context.Background(), name)
	defer span.End()
	return span.SpanContext(), telemetry.InjectMetadata(ctx, nil)
}

func WithMeta(md store.Metadata, events ...store.EventData) []store.EventData {
	for i := range events {
		events[i].Metadata = md
	}
	return events
}

func SpanAttrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		out[kv.Key] = kv.Value
	}
	return out
}

// SumOf adds up the int64 sum data points of m whose attributes include
// want.
func SumOf(t testing.TB, m metricdata.Metrics, want ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is an int64 sum", m.Name)
	var n int64
	for _, dp := range s.DataPoints {
		if HasAll(dp.Attributes, want) {
			n += dp.Value
		}
	}
	return n
}

// HasAll reports whether set holds every attribute of want.
func HasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// RequireBoundedAttributes checks that no metric carries an attribute
// outside the bounded set (no stream id, no tenant).
func RequireBoundedAttributes(t testing.TB, metrics map[string]metricdata.Metrics) {
	t.Helper()
	allowed := map[attribute.Key]bool{
		telemetry.AttrKind: true, telemetry.AttrCommandType: true, telemetry.AttrOutcome: true,
		telemetry.AttrProjection: true, telemetry.AttrEventType: true, telemetry.AttrReason: true,
		telemetry.AttrSnapshotUsed: true,
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

// TracedPool returns a pool on a fresh migrated database whose queries are
// traced by tp, and a store on it.
func TracedPool(t testing.TB, tp trace.TracerProvider) (*pgxpool.Pool, *postgres.Store) {
	t.Helper()
	ctx := Ctx(t)
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = telemetry.NewPgxTracer(&telemetry.PgxConfig{TracerProvider: tp})
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool))
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return pool, es
}

func Stop(t testing.TB, p interface{ Stop(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.Stop(ctx))
}
