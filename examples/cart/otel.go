package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// serviceName is the OpenTelemetry service.name unless OTEL_SERVICE_NAME
// says otherwise.
const serviceName = "troupe-cart-example"

// observability is the OpenTelemetry SDK set-up of the program. Library
// code (Troupe, the service package) only ever sees the providers.
type observability struct {
	// tracerProvider and meterProvider are nil when nothing is exported:
	// the service then uses the (no-op) globals.
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	// spans holds every finished span, in -demo mode.
	spans    *tracetest.InMemoryExporter
	exports  []string // what is exported where, for the banner
	shutdown []func(context.Context) error
}

// setupObservability installs OTLP/gRPC exporters for traces and metrics
// when the standard OTEL_EXPORTER_OTLP_* variables ask for them (the
// exporters read the endpoint, headers, TLS and timeout settings from the
// environment themselves), and an in-memory span recorder for the demo.
func setupObservability(ctx context.Context, getenv func(string) string, demo bool, stderr io.Writer) (*observability, error) {
	o := &observability{}
	set := func(keys ...string) bool {
		for _, k := range keys {
			if getenv(k) != "" {
				return true
			}
		}
		return false
	}
	wantTraces := set("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") && getenv("OTEL_TRACES_EXPORTER") != "none"
	wantMetrics := set("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") && getenv("OTEL_METRICS_EXPORTER") != "none"
	if !wantTraces && !wantMetrics && !demo {
		return o, nil
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
		if p := getenv(k); p != "" && p != "grpc" {
			fmt.Fprintf(stderr, "warning: %s=%s: this example exports OTLP over gRPC only; using grpc\n", k, p)
		}
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && res == nil {
		return nil, fmt.Errorf("opentelemetry resource: %w", err)
	}

	if wantTraces || demo {
		opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
		if demo {
			o.spans = tracetest.NewInMemoryExporter()
			opts = append(opts, sdktrace.WithSyncer(o.spans))
		}
		if wantTraces {
			exp, err := otlptracegrpc.New(ctx)
			if err != nil {
				return nil, fmt.Errorf("OTLP trace exporter: %w", err)
			}
			opts = append(opts, sdktrace.WithBatcher(exp))
			o.exports = append(o.exports, "traces")
		}
		tp := sdktrace.NewTracerProvider(opts...)
		o.tracerProvider = tp
		o.shutdown = append(o.shutdown, tp.Shutdown)
	}
	if wantMetrics {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			_ = o.close(ctx)
			return nil, fmt.Errorf("OTLP metric exporter: %w", err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
		o.meterProvider = mp
		o.shutdown = append(o.shutdown, mp.Shutdown)
		o.exports = append(o.exports, "metrics")
	}
	return o, nil
}

// describe says what is exported, for the banner.
func (o *observability) describe() string {
	if len(o.exports) == 0 {
		return "not exported (set OTEL_EXPORTER_OTLP_ENDPOINT to export traces and metrics)"
	}
	return strings.Join(o.exports, " and ") + " exported over OTLP/gRPC"
}

// close flushes and stops the exporters.
func (o *observability) close(ctx context.Context) error {
	var errs []error
	for i := len(o.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, o.shutdown[i](ctx))
	}
	o.shutdown = nil
	return errors.Join(errs...)
}
