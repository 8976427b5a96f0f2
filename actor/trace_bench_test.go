package actor_test

import (
	"context"
	"testing"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
	"github.com/troupehq/troupe/store/postgres"
)

// BenchmarkTracingOverhead runs the same command workload (one sender,
// commands to one cached stream, one event each) on two hosts side by
// side: one with telemetry off (no-op tracer and meter providers), one with
// telemetry on (the SDK sampling every span, a batching processor feeding
// an exporter that drops them, metrics aggregated for a manual reader, and
// pgx spans for every query on PostgreSQL). Each iteration sends one
// command to each host, alternating which goes first, so both sides see
// the same machine load; it reports the mean time per command of each side
// (off-ns/cmd, on-ns/cmd) and their ratio (on/off):
//
//	go test -run '^$' -bench TracingOverhead -benchtime 3000x -count 5 ./actor/
//
// On the in-memory store the command path has no I/O, so the ratio shows
// the CPU cost of telemetry against the actor's own; on PostgreSQL it is
// what a service would see.
func BenchmarkTracingOverhead(b *testing.B) {
	for _, backend := range []string{"memory", "postgres"} {
		b.Run("store="+backend, func(b *testing.B) {
			ctx := context.Background()
			cmd := counterCmd{Tenant: "bench", Stream: "s"}
			var aggs [2]*counterAgg // off, on
			for i, on := range []bool{false, true} {
				tp, mp, pgxTracer := overheadProviders(b, on)
				var st store.EventStore = memory.New()
				if backend == "postgres" {
					st = tracedPGStore(b, pgxTracer)
				}
				_, aggs[i] = startHost(b, st, actor.Config{TracerProvider: tp, MeterProvider: mp, IdleTimeout: -1})
				_, err := aggs[i].Send(ctx, cmd) // activate
				require.NoError(b, err)
			}
			var spent [2]time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				for j := range 2 {
					side := (i + j) % 2
					t0 := time.Now()
					if _, err := aggs[side].Send(ctx, cmd); err != nil {
						b.Fatal(err)
					}
					spent[side] += time.Since(t0)
				}
			}
			b.StopTimer()
			off := float64(spent[0].Nanoseconds()) / float64(b.N)
			on := float64(spent[1].Nanoseconds()) / float64(b.N)
			b.ReportMetric(off, "off-ns/cmd")
			b.ReportMetric(on, "on-ns/cmd")
			b.ReportMetric(on/off, "on/off")
		})
	}
}

// overheadProviders returns the providers (and pgx tracer, nil when off)
// of one side of the overhead benchmark.
func overheadProviders(b *testing.B, on bool) (trace.TracerProvider, metric.MeterProvider, *otelpgx.Tracer) {
	b.Helper()
	if !on {
		return tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider(), nil
	}
	tp, mp := oteltest.Discarding(b)
	return tp, mp, otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithMeterProvider(mp))
}

// tracedPGStore returns a store on a fresh migrated database whose pool
// traces its queries with tracer (none when nil).
func tracedPGStore(b *testing.B, tracer *otelpgx.Tracer) *postgres.Store {
	b.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(b))
	require.NoError(b, err)
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	require.NoError(b, postgres.Migrate(ctx, pool))
	st, err := postgres.New(pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(b, err)
	return st
}
