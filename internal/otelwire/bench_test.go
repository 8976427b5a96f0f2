package telemetry_test

import (
	"context"
	"fmt"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/troupehq/troupe/telemetry"
)

// discard is a span exporter that drops everything.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// benchTelemetry returns a Telemetry with no-op providers (off) or with SDK
// providers sampling every span into a discarding exporter and aggregating
// metrics for a manual reader (on).
func benchTelemetry(b *testing.B, on bool) *telemetry.Telemetry {
	b.Helper()
	if !on {
		tel, err := telemetry.New(nil)
		if err != nil {
			b.Fatal(err)
		}
		return tel
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(discard{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tel, err := telemetry.New(&telemetry.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		b.Fatal(err)
	}
	return tel
}

// BenchmarkCommandPath measures what the actor host adds to one command on a
// cached stream: command span, append span, trace context in the metadata of
// two events, and the metrics.
func BenchmarkCommandPath(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "noop", true: "sdk-always-sampled"}[on], func(b *testing.B) {
			tel := benchTelemetry(b, on)
			base := telemetry.WithCorrelationID(context.Background(), "corr")
			b.ReportAllocs()
			for b.Loop() {
				ctx, cs := tel.StartCommand(base, cart42, "AddItem")
				md1 := telemetry.InjectMetadata(ctx, nil)
				md2 := telemetry.InjectMetadata(ctx, nil)
				actx, as := tel.StartAppend(ctx, telemetry.Append{Stream: cart42, Events: 2, ExpectedVersion: "7"})
				as.End(actx, telemetry.OutcomeOK, 9, nil)
				cs.End(ctx, telemetry.OutcomeOK, 2, nil)
				_, _ = md1, md2
			}
		})
	}
}

// BenchmarkProjectionBatch measures starting and ending the span of a batch
// of 500 events written by 50 commands (links deduplicated).
func BenchmarkProjectionBatch(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "noop", true: "sdk-always-sampled"}[on], func(b *testing.B) {
			tel := benchTelemetry(b, on)
			src := benchTelemetry(b, true)
			events := make([]map[string]any, 0, 500)
			for c := 0; c < 50; c++ {
				ctx, cs := src.StartCommand(context.Background(), cart42, fmt.Sprint("C", c))
				for i := 0; i < 10; i++ {
					events = append(events, telemetry.InjectMetadata(ctx, map[string]any{"messageId": fmt.Sprint(c, "-", i)}))
				}
				cs.End(ctx, telemetry.OutcomeOK, 10, nil)
			}
			batch := telemetry.Batch{Name: "carts", Size: len(events), Metadata: func(i int) map[string]any { return events[i] }}
			b.ReportAllocs()
			for b.Loop() {
				ctx, bs := tel.StartProjectionBatch(context.Background(), batch)
				bs.End(ctx, len(events), nil)
			}
		})
	}
}
