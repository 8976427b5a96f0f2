package projtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exaring/otelpgx"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/telemetry"
)

// TelRig records spans in memory and metrics through a manual reader (an
// oteltest.Recorder), counting the metric callbacks registered and not yet
// unregistered. Give a projection TracerProvider: r.TP, MeterProvider: r.MP.
type TelRig struct {
	*oteltest.Recorder
	TP *sdktrace.TracerProvider
	MP metric.MeterProvider
	// Callbacks is the number of metric callbacks registered.
	Callbacks atomic.Int64
}

func NewTelRig(t testing.TB) *TelRig {
	t.Helper()
	rec := oteltest.New(t)
	r := &TelRig{Recorder: rec, TP: rec.TracerProvider}
	r.MP = countingProvider{rec.MeterProvider, &r.Callbacks}
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

// RequireBoundedAttributes checks that no metric carries an attribute
// outside the bounded set (no stream id, no tenant).
func RequireBoundedAttributes(t testing.TB, metrics map[string]metricdata.Metrics) {
	t.Helper()
	allowed := map[attribute.Key]bool{
		otelwire.AttrKind: true, otelwire.AttrCommandType: true, otelwire.AttrOutcome: true,
		otelwire.AttrProjection: true, otelwire.AttrEventType: true, otelwire.AttrReason: true,
		otelwire.AttrSnapshotUsed: true,
	}
	oteltest.ForEachAttrSet(t, metrics, func(name string, set attribute.Set) {
		for _, kv := range set.ToSlice() {
			assert.True(t, allowed[kv.Key], "metric %s has attribute %s", name, kv.Key)
		}
	})
}

// TracedPool returns a pool on a fresh migrated database whose queries are
// traced by tp, and a store on it.
func TracedPool(t testing.TB, tp trace.TracerProvider) (*pgxpool.Pool, *postgres.Store) {
	t.Helper()
	ctx := Ctx(t)
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

func Stop(t testing.TB, p interface{ Stop(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.Stop(ctx))
}
