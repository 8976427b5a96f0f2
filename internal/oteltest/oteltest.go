// Package oteltest is the OpenTelemetry SDK set-up of Troupe's tests: a
// tracer provider keeping every ended span in memory, a meter provider read
// on demand, and helpers to find spans and add up data points.
package oteltest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Recorder is one process's OpenTelemetry SDK: every span sampled and kept
// in memory once ended, metrics collected by a manual reader.
type Recorder struct {
	Spans          *tracetest.InMemoryExporter
	TracerProvider *sdktrace.TracerProvider
	Reader         *sdkmetric.ManualReader
	MeterProvider  *sdkmetric.MeterProvider
}

// New returns a Recorder whose providers are shut down when the test ends.
func New(t testing.TB) *Recorder {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return &Recorder{Spans: spans, TracerProvider: tp, Reader: reader, MeterProvider: mp}
}

// Named returns the ended spans called name, in the order they ended.
func (r *Recorder) Named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.Spans.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// One returns the only ended span called name, failing the test when there
// is not exactly one.
func (r *Recorder) One(t testing.TB, name string) tracetest.SpanStub {
	t.Helper()
	s := r.Named(name)
	require.Len(t, s, 1, "spans named %q", name)
	return s[0]
}

// Children returns the ended spans whose parent is sc.
func (r *Recorder) Children(sc trace.SpanContext) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.Spans.GetSpans() {
		if IsChild(s, sc) {
			out = append(out, s)
		}
	}
	return out
}

// ChildrenNamed returns the ended spans called name whose parent is sc.
func (r *Recorder) ChildrenNamed(sc trace.SpanContext, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.Named(name) {
		if IsChild(s, sc) {
			out = append(out, s)
		}
	}
	return out
}

// IsChild reports whether s is a child of the span sc.
func IsChild(s tracetest.SpanStub, sc trace.SpanContext) bool {
	return s.Parent.TraceID() == sc.TraceID() && s.Parent.SpanID() == sc.SpanID()
}

// Collect returns the metrics recorded so far.
func (r *Recorder) Collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Reader.Collect(context.Background(), &rm))
	return rm
}

// Metrics returns the metrics recorded so far, by name.
func (r *Recorder) Metrics(t testing.TB) map[string]metricdata.Metrics {
	t.Helper()
	return ByName(r.Collect(t))
}

// ByName returns the metrics of rm by name.
func ByName(rm metricdata.ResourceMetrics) map[string]metricdata.Metrics {
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// Attrs returns kv as a map.
func Attrs(kv []attribute.KeyValue) map[attribute.Key]attribute.Value {
	out := make(map[attribute.Key]attribute.Value, len(kv))
	for _, a := range kv {
		out[a.Key] = a.Value
	}
	return out
}

// HasAttrs reports whether set holds every attribute of want.
func HasAttrs(set attribute.Set, want ...attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// SumInt adds up the data points of m, an int64 sum, whose attributes
// include want.
func SumInt(t testing.TB, m metricdata.Metrics, want ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "metric %q is a %T, not an int64 sum", m.Name, m.Data)
	var n int64
	for _, dp := range s.DataPoints {
		if HasAttrs(dp.Attributes, want...) {
			n += dp.Value
		}
	}
	return n
}

// ForEachAttrSet calls fn with the name and attributes of every data point
// of every metric, failing the test on a kind of data it does not know.
func ForEachAttrSet(t testing.TB, metrics map[string]metricdata.Metrics, fn func(name string, set attribute.Set)) {
	t.Helper()
	for name, m := range metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		case metricdata.Sum[float64]:
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
		case metricdata.Histogram[int64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				fn(name, dp.Attributes)
			}
		default:
			t.Fatalf("unexpected metric data %T for %s", m.Data, name)
		}
	}
}

// Discard is a span exporter that drops every span: the SDK does all its
// work, nothing is kept (for benchmarks).
type Discard struct{}

// ExportSpans implements sdktrace.SpanExporter.
func (Discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }

// Shutdown implements sdktrace.SpanExporter.
func (Discard) Shutdown(context.Context) error { return nil }

// Discarding returns SDK providers that do all their work and keep
// nothing: every span sampled and fed through a batching processor to
// Discard, metrics aggregated for a manual reader nobody reads (for
// benchmarks). They are shut down when the benchmark ends.
func Discarding(tb testing.TB) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	tb.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(Discard{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tb.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return tp, mp
}
