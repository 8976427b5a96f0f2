package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
)

// BenchmarkAppendStatementsWithTenants compares, side by side, three ways
// of sending a single-event append on the pool, in databases with 1 and
// 1,000 tenants (each with its own partitions), with pgx's default named
// prepared statements:
//
//   - pool: what the store does (statements that only write; see append.go);
//   - guarded: the statements the store uses in transactions (they read
//     messages, and UPDATE streams, by partition), which is what every
//     append sent before;
//   - guarded_custom_plans: the same in a batch after
//     set_config('plan_cache_mode', 'force_custom_plan', true), so each
//     execution is planned for its tenant (one round trip).
//
// Each iteration appends once per variant and database, round-robin over
// the tenants and ten streams per tenant, so all are measured in the same
// time window; metrics are p50 and p99 in µs per variant and tenant count.
// Before measuring, every variant appends twice per tenant (statements
// prepared and past PostgreSQL's five custom plans).
//
//	go test ./store/postgres -run '^$' -bench AppendStatementsWithTenants -benchtime 3000x -timeout 30m
func BenchmarkAppendStatementsWithTenants(b *testing.B) {
	ctx := context.Background()
	counts := []int{1, 1000}
	pools := make([]*pgxpool.Pool, len(counts))
	tenants := make([][]string, len(counts))
	for k, n := range counts {
		cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(b))
		if err != nil {
			b.Fatal(err)
		}
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		if err := Migrate(ctx, pool); err != nil {
			b.Fatal(err)
		}
		for i := range n {
			id := fmt.Sprintf("tenant-%04d", i)
			if err := createTenant(ctx, pool, id); err != nil {
				b.Fatal(err)
			}
			tenants[k] = append(tenants[k], id)
		}
		pools[k] = pool
	}
	data := json.RawMessage(`{"sku":"abc","quantity":1}`)
	variants := []string{"pool", "guarded", "guarded_custom_plans"}
	for _, expected := range []string{"any", "exact"} {
		b.Run("expected="+expected, func(b *testing.B) {
			versions := map[string]store.Version{}
			seq := 0
			appendOne := func(variant string, k, i int) time.Duration {
				partition := tenants[k][i%len(tenants[k])]
				stream := store.StreamID(fmt.Sprintf("%s-%s-%d", expected, variant, (i/len(tenants[k]))%10))
				key := fmt.Sprintf("%d/%s/%s", k, partition, stream)
				seq++
				ev := store.EventData{Type: "ItemAdded", Data: data, MessageID: fmt.Sprintf("m-%s-%s-%d", expected, variant, seq)}
				opts := store.AppendOptions{Partition: partition, StreamType: "cart"}
				if expected == "exact" {
					opts.ExpectedVersion = store.Exact(versions[key])
				}
				es := &Store{base: pools[k], logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				t0 := time.Now()
				var next int64
				var err error
				if variant == "pool" {
					var res store.AppendResult
					res, err = es.AppendToStream(ctx, stream, []store.EventData{ev}, opts)
					next = int64(res.NextExpectedVersion)
				} else {
					sql, last := appendStatement(true, opts) // the guarded statements
					args := append([]any{string(stream), partition, int64(1), []string{ev.MessageID}, []string{ev.Type},
						[]string{string(ev.Data)}, []string{"{}"}, []string{"1"}}, last...)
					var global int64
					var tx uint64
					if variant == "guarded" {
						err = pools[k].QueryRow(ctx, sql, args...).Scan(&next, &global, &tx, nil, nil)
					} else {
						br, berr := scopedBatch(ctx, pools[k], scopeCustomPlanSQL, partition, sql, args...)
						if berr != nil {
							b.Fatal(berr)
						}
						err = br.QueryRow().Scan(&next, &global, &tx, nil, nil)
						if cerr := br.Close(); err == nil {
							err = cerr
						}
					}
				}
				d := time.Since(t0)
				if err != nil {
					b.Fatalf("%s append: %v", variant, err)
				}
				versions[key] = store.Version(next)
				return d
			}
			for _, v := range variants {
				for k := range counts {
					for i := range max(2*len(tenants[k]), 20) {
						appendOne(v, k, i)
					}
				}
			}
			lat := map[string][][]time.Duration{}
			for _, v := range variants {
				lat[v] = make([][]time.Duration, len(counts))
			}
			i := 0
			for b.Loop() {
				for _, v := range variants {
					for k := range counts {
						lat[v][k] = append(lat[v][k], appendOne(v, k, i))
					}
				}
				i++
			}
			for _, v := range variants {
				for k, l := range lat[v] {
					slices.Sort(l)
					pct := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) }
					b.ReportMetric(pct(0.50), fmt.Sprintf("%s-p50-µs-%dt", v, counts[k]))
					b.ReportMetric(pct(0.99), fmt.Sprintf("%s-p99-µs-%dt", v, counts[k]))
				}
			}
		})
	}
}
