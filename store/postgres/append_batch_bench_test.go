package postgres_test

import (
	"fmt"
	"testing"

	"github.com/troupehq/troupe/store"
)

// BenchmarkAppendBatch appends one event to each of 10 streams (exact
// expected versions), from a single goroutine: as one AppendBatch, and as
// 10 AppendToStream calls.
func BenchmarkAppendBatch(b *testing.B) {
	s, _ := newStore(b)
	const streams = 10
	ev := events("Benchmarked", 1)
	run := 0
	for _, mode := range []string{"batch", "separate"} {
		b.Run(fmt.Sprintf("streams=%d/%s", streams, mode), func(b *testing.B) {
			run++
			parts := make([]store.StreamAppend, streams)
			for i := range parts {
				parts[i] = batchPart(store.StreamID(fmt.Sprintf("%s-%d-%d", mode, run, i)), store.Exact(0), ev...)
			}
			for b.Loop() {
				if mode == "batch" {
					out, err := s.AppendBatch(b.Context(), parts)
					if err != nil {
						b.Fatal(err)
					}
					for i, o := range out {
						if o.Err != nil {
							b.Fatal(o.Err)
						}
						parts[i].Options.ExpectedVersion = store.Exact(o.Result.NextExpectedVersion)
					}
					continue
				}
				for i, p := range parts {
					res, err := s.AppendToStream(b.Context(), p.Stream, p.Events, p.Options)
					if err != nil {
						b.Fatal(err)
					}
					parts[i].Options.ExpectedVersion = store.Exact(res.NextExpectedVersion)
				}
			}
			b.ReportMetric(float64(streams)*float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}
