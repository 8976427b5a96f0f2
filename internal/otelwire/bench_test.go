package otelwire_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/telemetry"
)

// benchTelemetry returns a Telemetry with no-op providers (off) or with SDK
// providers that do all their work and keep nothing (on).
func benchTelemetry(b *testing.B, on bool) *otelwire.Telemetry {
	b.Helper()
	if !on {
		tel, err := otelwire.New(nil)
		if err != nil {
			b.Fatal(err)
		}
		return tel
	}
	tp, mp := oteltest.Discarding(b)
	tel, err := otelwire.New(&otelwire.Config{TracerProvider: tp, MeterProvider: mp})
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
				actx, as := tel.StartAppend(ctx, otelwire.Append{Stream: cart42, Events: 2, ExpectedVersion: "7"})
				as.End(actx, otelwire.OutcomeOK, 9, nil)
				cs.End(ctx, otelwire.OutcomeOK, 2, nil)
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
				cs.End(ctx, otelwire.OutcomeOK, 10, nil)
			}
			batch := otelwire.Batch{Name: "carts", Size: len(events), Metadata: func(i int) map[string]any { return events[i] }}
			b.ReportAllocs()
			for b.Loop() {
				ctx, bs := tel.StartProjectionBatch(context.Background(), batch)
				bs.End(ctx, len(events), nil)
			}
		})
	}
}
