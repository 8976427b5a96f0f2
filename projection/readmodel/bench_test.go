package readmodel_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/readmodel"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

const (
	benchCarts  = 10_000
	benchRounds = 10 // events per cart: 100,000 in all
)

// seedBenchLog writes benchRounds rounds of one event per cart straight
// into the schema-v1 tables (one transaction per round, so a cart's events
// are spread over the log as they would be in production). Going through
// the store would take minutes of setup for nothing the benchmark measures.
func seedBenchLog(b *testing.B, pool *pgxpool.Pool) store.Position {
	b.Helper()
	ctx := projtest.Ctx(b)
	_, err := pool.Exec(ctx, `INSERT INTO streams (stream_id, stream_position, partition, stream_type)
SELECT 'cart-' || c, $1, 'default_partition', 'cart' FROM generate_series(1, $2) AS c`, benchRounds, benchCarts)
	require.NoError(b, err)
	for r := 1; r <= benchRounds; r++ {
		typ := projtest.TypeAdded
		if r == 1 {
			typ = projtest.TypeOpened
		}
		_, err := pool.Exec(ctx, `INSERT INTO messages (stream_id, stream_position, partition, message_type, message_id, message_data)
SELECT 'cart-' || c, $1::int, 'default_partition', $2, gen_random_uuid()::text,
       jsonb_build_object('cart', 'cart-' || c, 'sku', 'sku-' || ($1::int % 3), 'qty', $1::int)
FROM generate_series(1, $3) AS c ORDER BY c`, r, typ, benchCarts)
		require.NoError(b, err)
	}
	var last store.Position
	require.NoError(b, pool.QueryRow(ctx, `SELECT transaction_id, global_position FROM messages
ORDER BY transaction_id DESC, global_position DESC LIMIT 1`).Scan(&last.TransactionID, &last.GlobalPosition))
	_, err = pool.Exec(ctx, `ANALYZE`)
	require.NoError(b, err)
	return last
}

// BenchmarkReadModelCold measures a continuous projection building
// a snapshot read model of 10,000 carts from 100,000 events, from an empty
// read model and no checkpoint.
//
//	go test -run '^$' -bench ReadModelCold -benchtime 1x ./projection/readmodel/
func BenchmarkReadModelCold(b *testing.B) {
	for _, storage := range projtest.Storages {
		b.Run(storage.String(), func(b *testing.B) {
			pool, _ := projtest.NewDB(b)
			projtest.CreateCartTable(b, pool, "carts", storage)
			last := seedBenchLog(b, pool)
			sp := projtest.CartProjection(b, "carts", storage, nil)
			b.ResetTimer()
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				_, err := pool.Exec(projtest.Ctx(b), `TRUNCATE carts; DELETE FROM snapshots`)
				require.NoError(b, err)
				cfg := projtest.FastConfig(fmt.Sprintf("cold-%d", i))
				cfg.PollInterval = time.Second
				cfg.BatchHandlers = []projection.BatchHandler{sp}
				p := projtest.NewProjection(b, pool, cfg)
				b.StartTimer()
				began := time.Now()
				require.NoError(b, p.Start(projtest.Ctx(b)))
				ctx, cancel := context.WithTimeout(projtest.Ctx(b), 10*time.Minute)
				require.NoError(b, p.WaitFor(ctx, last))
				cancel()
				elapsed += time.Since(began)
				b.StopTimer()
				require.NoError(b, p.Stop(projtest.Ctx(b)))
				var n int
				require.NoError(b, pool.QueryRow(projtest.Ctx(b), `SELECT count(*) FROM carts`).Scan(&n))
				require.Equal(b, benchCarts, n)
				b.StartTimer()
			}
			b.ReportMetric(float64(benchCarts*benchRounds*b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

// BenchmarkAppendToVisibleLatency measures, under a steady load of appends
// (1,000 a second, as many senders as it takes), the time from an append's
// commit to its effect being visible in a snapshot read model (WaitFor
// returns when the transaction writing the row and the checkpoint has
// committed). Each append's wait runs off its sender, so the rate does not
// fall when the lag rises. b.N is the number of appends: 10000x is 10 s.
//
//	go test -run '^$' -bench AppendToVisibleLatency -benchtime 10000x ./projection/readmodel/
func BenchmarkAppendToVisibleLatency(b *testing.B) {
	const (
		senders = 16
		carts   = 1000
		rate    = 1000 // appends a second
	)
	pool, es := projtest.NewDB(b)
	projtest.CreateCartTable(b, pool, "carts", readmodel.InTable)
	sp := projtest.CartProjection(b, "carts", readmodel.InTable, nil)
	cfg := projtest.FastConfig("latency")
	cfg.PollInterval = time.Second
	cfg.BatchHandlers = []projection.BatchHandler{sp}
	p := projtest.NewProjection(b, pool, cfg)
	require.NoError(b, p.Start(projtest.Ctx(b)))
	defer func() { require.NoError(b, p.Stop(projtest.Ctx(b))) }()
	projtest.Eventually(b, 30*time.Second, "the projection to hold its lease", func() bool { return projtest.LocalState(b, p) == projection.StateRunning })

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		wg        sync.WaitGroup
		waiters   sync.WaitGroup
	)
	ctx := projtest.Ctx(b)
	tokens := make(chan struct{}, b.N)
	b.ResetTimer()
	began := time.Now()
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range tokens {
				cart := fmt.Sprintf("cart-%d", rng.IntN(carts))
				res, err := es.AppendToStream(ctx, store.StreamID(cart),
					[]store.EventData{projtest.CartEvent(projtest.TypeAdded, cart, "sku", 1)}, store.AppendOptions{})
				if err != nil {
					b.Error(err)
					return
				}
				committed := time.Now()
				waiters.Add(1)
				go func() {
					defer waiters.Done()
					wctx, cancel := context.WithTimeout(ctx, time.Minute)
					err := p.WaitFor(wctx, res.LastPosition())
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
					d := time.Since(committed)
					mu.Lock()
					latencies = append(latencies, d)
					mu.Unlock()
				}()
			}
		}(w)
	}
	// Pace: every millisecond, release the appends due by then.
	tick := time.NewTicker(time.Millisecond)
	for issued := 0; issued < b.N; {
		now := <-tick.C
		due := min(b.N, int(now.Sub(began).Seconds()*rate)+1)
		for ; issued < due; issued++ {
			tokens <- struct{}{}
		}
	}
	tick.Stop()
	close(tokens)
	wg.Wait()
	waiters.Wait()
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(latencies))/time.Since(began).Seconds(), "appends/s")
	b.ReportMetric(0, "ns/op")
}
