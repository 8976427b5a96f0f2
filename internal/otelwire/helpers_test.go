package otelwire_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/telemetry"
)

// rig is a Telemetry wired to an oteltest.Recorder.
type rig struct {
	*oteltest.Recorder
	tel *otelwire.Telemetry
}

func newRig(t *testing.T) *rig {
	t.Helper()
	rec := oteltest.New(t)
	tel, err := otelwire.New(&otelwire.Config{TracerProvider: rec.TracerProvider, MeterProvider: rec.MeterProvider})
	require.NoError(t, err)
	return &rig{Recorder: rec, tel: tel}
}

// metric returns the collected metric named name.
func (r *rig) metric(t *testing.T, name string) metricdata.Metrics {
	t.Helper()
	for _, sm := range r.Collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				require.Equal(t, telemetry.ScopeName, sm.Scope.Name)
				return m
			}
		}
	}
	t.Fatalf("metric %q not recorded", name)
	return metricdata.Metrics{}
}

func setOf(kv ...attribute.KeyValue) attribute.Set { return attribute.NewSet(kv...) }

// sumPoint returns the value of the data point of an int64 sum with exactly
// the given attributes.
func sumPoint(t *testing.T, m metricdata.Metrics, want attribute.Set) int64 {
	t.Helper()
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a %T, not an int64 sum", m.Name, m.Data)
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value
		}
	}
	t.Fatalf("%s has no data point with %v; has %v", m.Name, want.ToSlice(), sum.DataPoints)
	return 0
}

// histCount returns the count of the data point of a histogram with the
// given attributes.
func histCount[N int64 | float64](t *testing.T, m metricdata.Metrics, want attribute.Set) (count uint64, sum N) {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[N])
	require.True(t, ok, "%s is a %T", m.Name, m.Data)
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Count, dp.Sum
		}
	}
	t.Fatalf("%s has no data point with %v", m.Name, want.ToSlice())
	return 0, 0
}

// allMetricAttrs returns every attribute of every collected data point.
func allMetricAttrs(t *testing.T, rm metricdata.ResourceMetrics) []attribute.KeyValue {
	t.Helper()
	var out []attribute.KeyValue
	oteltest.ForEachAttrSet(t, oteltest.ByName(rm), func(_ string, s attribute.Set) { out = append(out, s.ToSlice()...) })
	return out
}
