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

// BenchmarkReadAll measures reading one page of 1000 events of the global
// log, from checkpoints spread over a log of 20000 events.
func BenchmarkReadAll(b *testing.B) {
	s, _ := newStore(b)
	const total, page = 20000, 1000
	batch := events("Seeded", 100)
	for i := range total / len(batch) {
		if _, err := s.AppendToStream(b.Context(), store.StreamID(fmt.Sprintf("s-%d", i%50)), batch, store.AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var checkpoints []store.Position
	var after store.Position
	for len(checkpoints) < total/page {
		res, err := s.ReadAll(b.Context(), store.ReadAllOptions{After: after, Limit: page})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Events) == 0 {
			continue // an append of this database is still in flight
		}
		checkpoints = append(checkpoints, after)
		after = res.Next
	}
	i := 0
	for b.Loop() {
		res, err := s.ReadAll(b.Context(), store.ReadAllOptions{After: checkpoints[i%len(checkpoints)], Limit: page})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Events) != page {
			b.Fatalf("read %d events, want %d", len(res.Events), page)
		}
		i++
	}
	b.ReportMetric(float64(page)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
