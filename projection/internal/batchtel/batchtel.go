// Package batchtel builds the telemetry the projection engines share: the
// Telemetry from a Config's providers and the description of a batch span.
package batchtel

import (
	"fmt"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// New returns the instrumentation built from the providers (nil ones are
// the OpenTelemetry globals).
func New(tp trace.TracerProvider, mp metric.MeterProvider) (*otelwire.Telemetry, error) {
	tel, err := otelwire.New(&otelwire.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		return nil, fmt.Errorf("set up telemetry: %w", err)
	}
	return tel, nil
}

// Of describes events for a batch span.
func Of(name, tenant string, events []store.Event) otelwire.Batch {
	b := otelwire.Batch{
		Name:     name,
		Tenant:   tenant,
		Size:     len(events),
		Metadata: func(i int) map[string]any { return events[i].Metadata },
	}
	if len(events) > 0 {
		b.FirstPosition = int64(events[0].GlobalPosition)
		b.LastPosition = int64(events[len(events)-1].GlobalPosition)
	}
	return b
}
