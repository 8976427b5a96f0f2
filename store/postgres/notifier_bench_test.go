package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// benchWriters is how many goroutines append at once in
// BenchmarkAppendParallel, each to a stream of its own.
const benchWriters = 64

// BenchmarkAppendParallel measures appends of one event from 64 goroutines
// to distinct streams, with the notification sent by every append
// statement (notify=in-append) and by a Notifier (notify=notifier).
func BenchmarkAppendParallel(b *testing.B) {
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(b))
	require.NoError(b, err)
	cfg.MaxConns = benchWriters
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	require.NoError(b, postgres.Migrate(context.Background(), pool))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	for _, mode := range []string{"in-append", "notifier"} {
		b.Run("notify="+mode, func(b *testing.B) {
			c := &postgres.Config{Logger: logger}
			if mode == "notifier" {
				n, err := postgres.NewNotifier(pool, &postgres.NotifierConfig{Logger: logger})
				require.NoError(b, err)
				require.NoError(b, n.Start(context.Background()))
				b.Cleanup(func() { require.NoError(b, n.Stop(context.Background())) })
				c.Notifier = n
			}
			s, err := postgres.New(pool, c)
			require.NoError(b, err)
			// Fill the pool before timing.
			conns := make([]*pgxpool.Conn, benchWriters)
			for i := range conns {
				conns[i], err = pool.Acquire(b.Context())
				require.NoError(b, err)
			}
			for _, conn := range conns {
				conn.Release()
			}
			var writer atomic.Int64
			batch := events("Benchmarked", 1)
			b.SetParallelism((benchWriters + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				stream := store.StreamID(fmt.Sprintf("%s-%d", mode, writer.Add(1)))
				for pb.Next() {
					if _, err := s.AppendToStream(context.Background(), stream, batch, store.AppendOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}
