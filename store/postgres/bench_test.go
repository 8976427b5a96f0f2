package postgres_test

import (
	"fmt"
	"testing"

	"github.com/troupehq/troupe/store"
)

// BenchmarkAppend measures one append with an exact expected version to one
// stream (the aggregate host's hot path), from a single goroutine.
func BenchmarkAppend(b *testing.B) {
	s, _ := newStore(b)
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			stream := store.StreamID(fmt.Sprintf("bench-%d", n))
			batch := events("Benchmarked", n)
			var version store.Version
			for b.Loop() {
				res, err := s.AppendToStream(b.Context(), stream, batch, store.AppendOptions{ExpectedVersion: store.Exact(version)})
				if err != nil {
					b.Fatal(err)
				}
				version = res.NextExpectedVersion
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
