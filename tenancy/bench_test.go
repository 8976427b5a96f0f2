package tenancy_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// BenchmarkAppendWithTenantPartitions measures single-event appends through
// the PostgreSQL store, spread round-robin over 1, 100 and 1,000 tenants that
// each have their own partitions (created with Manager.Create), and reports
// the latency percentiles. Partition pruning should keep them flat as
// tenants are added.
//
// Each tenant count runs twice on fresh connections: with the server's
// default plan_cache_mode and with force_custom_plan. Before measuring, every
// tenant gets a few untimed appends, so the numbers are the steady state
// (partitions known to the connection, prepared statements planned), not the
// first touch.
//
//	go test ./tenancy -run '^$' -bench AppendWithTenantPartitions -benchtime 3000x -timeout 30m
func BenchmarkAppendWithTenantPartitions(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			connString := pgtest.NewDatabase(b)
			setup := benchPool(ctx, b, connString, "")
			require.NoError(b, postgres.Migrate(ctx, setup))
			mgr, err := tenancy.NewManager(&tenancy.Config{DB: setup, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(b, err)
			ids := make([]tenancy.TenantID, n)
			start := time.Now()
			for i := range ids {
				ids[i] = tenancy.TenantID(fmt.Sprintf("tenant-%04d", i))
				_, _, err := mgr.Create(ctx, ids[i], "")
				require.NoError(b, err)
			}
			tables, err := mgr.Tables(ctx)
			require.NoError(b, err)
			b.Logf("created %d tenants (%d partitions each) in %v", n, len(tables), time.Since(start))
			setup.Close()

			for _, mode := range []string{"auto", "force_custom_plan"} {
				b.Run("plan_cache_mode="+mode, func(b *testing.B) {
					pool := benchPool(ctx, b, connString, mode)
					st, err := postgres.New(pool, nil)
					require.NoError(b, err)
					data := []byte(`{"sku":"abc","quantity":1}`)
					appendOne := func(i int) time.Duration {
						t0 := time.Now()
						_, err := st.AppendToStream(ctx, store.StreamID(fmt.Sprintf("cart-%d", (i/n)%10)),
							[]store.EventData{{Type: "ItemAdded", Data: data}},
							store.AppendOptions{Partition: string(ids[i%n]), StreamType: "cart"})
						if err != nil {
							b.Fatal(err)
						}
						return time.Since(t0)
					}
					warm := max(2*n, 20)
					for i := range warm {
						appendOne(i)
					}
					var lat []time.Duration
					i := warm
					for b.Loop() {
						lat = append(lat, appendOne(i))
						i++
					}
					slices.Sort(lat)
					pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
					b.ReportMetric(pct(0.50), "p50-µs")
					b.ReportMetric(pct(0.99), "p99-µs")
				})
			}
		})
	}
}

func benchPool(ctx context.Context, b *testing.B, connString, planCacheMode string) *pgxpool.Pool {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(connString)
	require.NoError(b, err)
	cfg.MaxConns = 4
	if planCacheMode != "" {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = planCacheMode
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	return pool
}
