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
// the PostgreSQL store in three databases holding 1, 100 and 1,000 tenants,
// each tenant with its own partitions (created with Manager.Create), and
// reports p50 and p99 latency per database (metrics p50-µs-1t, p99-µs-1000t,
// …). Partition pruning should keep them flat as tenants are added.
//
// Every iteration appends once to each database, round-robin over its
// tenants and ten streams per tenant, so the three are measured over the
// same time window and share whatever else the machine is doing; ns/op is
// the sum of the three appends. Before measuring, every tenant gets two
// untimed appends, so the numbers are the steady state (partitions known to
// the connection, statements prepared and past PostgreSQL's first five
// custom plans), not the first touch. It runs twice on fresh pools with
// pgx's defaults: with expected version Any, and with Exact (the aggregate
// host's appends).
//
//	go test ./tenancy -run '^$' -bench AppendWithTenantPartitions -benchtime 3000x -timeout 30m
func BenchmarkAppendWithTenantPartitions(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	counts := []int{1, 100, 1000}
	type database struct {
		connString string
		ids        []store.TenantID
	}
	dbs := make([]database, len(counts))
	for k, n := range counts {
		dbs[k].connString = pgtest.NewDatabase(b)
		setup := benchPool(ctx, b, dbs[k].connString)
		require.NoError(b, postgres.Migrate(ctx, setup))
		mgr, err := tenancy.NewManager(setup, &tenancy.Config{Logger: slog.New(slog.DiscardHandler)})
		require.NoError(b, err)
		start := time.Now()
		for i := range n {
			id := store.TenantID(fmt.Sprintf("tenant-%04d", i))
			_, _, err := mgr.Create(ctx, id, "")
			require.NoError(b, err)
			dbs[k].ids = append(dbs[k].ids, id)
		}
		tables, err := mgr.Tables(ctx)
		require.NoError(b, err)
		b.Logf("created %d tenants (%d partitions each) in %v", n, len(tables), time.Since(start))
		setup.Close()
	}

	data := []byte(`{"sku":"abc","quantity":1}`)
	for _, expected := range []string{"any", "exact"} {
		b.Run("expected="+expected, func(b *testing.B) {
			stores := make([]*postgres.Store, len(dbs))
			for k := range dbs {
				st, err := postgres.New(benchPool(ctx, b, dbs[k].connString), nil)
				require.NoError(b, err)
				stores[k] = st
			}
			versions := map[string]store.Version{}
			appendOne := func(k, i int) time.Duration {
				ids := dbs[k].ids
				n := len(ids)
				partition, stream := string(ids[i%n]), store.StreamID(fmt.Sprintf("%s-cart-%d", expected, (i/n)%10))
				key := fmt.Sprintf("%d/%s/%s", k, partition, stream)
				opts := store.AppendOptions{Partition: partition, StreamType: "cart"}
				if expected == "exact" {
					opts.ExpectedVersion = store.Exact(versions[key])
				}
				t0 := time.Now()
				res, err := stores[k].AppendToStream(ctx, stream, []store.EventData{{Type: "ItemAdded", Data: data}}, opts)
				d := time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				versions[key] = res.NextExpectedVersion
				return d
			}
			for k := range dbs {
				for i := range max(2*len(dbs[k].ids), 20) {
					appendOne(k, i)
				}
			}
			lat := make([][]time.Duration, len(dbs))
			i := 0
			for b.Loop() {
				for k := range dbs {
					lat[k] = append(lat[k], appendOne(k, i))
				}
				i++
			}
			for k, l := range lat {
				slices.Sort(l)
				pct := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) }
				b.ReportMetric(pct(0.50), fmt.Sprintf("p50-µs-%dt", counts[k]))
				b.ReportMetric(pct(0.99), fmt.Sprintf("p99-µs-%dt", counts[k]))
			}
		})
	}
}

// benchPool opens a pool of two connections on connString with pgx's
// defaults (named prepared statements, cached per connection; PostgreSQL
// switches to a generic plan after five executions).
func benchPool(ctx context.Context, b *testing.B, connString string) *pgxpool.Pool {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(connString)
	require.NoError(b, err)
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	return pool
}
