package memory_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			s := memory.New()
			ctx := b.Context()
			batch := make([]store.EventData, n)
			for i := range batch {
				batch[i] = store.EventData{Type: "E", Data: json.RawMessage(`{"sku":"apple","quantity":1}`),
					Metadata: store.Metadata{store.MetaCorrelationID: "c"}}
			}
			var v store.Version
			b.ReportAllocs()
			for b.Loop() {
				res, err := s.AppendToStream(ctx, "bench", batch, store.AppendOptions{ExpectedVersion: store.Exact(v)})
				if err != nil {
					b.Fatal(err)
				}
				v = res.NextExpectedVersion
			}
		})
	}
}

func BenchmarkReadStream(b *testing.B) {
	s := memory.New()
	ctx := b.Context()
	batch := make([]store.EventData, 100)
	for i := range batch {
		batch[i] = store.EventData{Type: "E", Data: json.RawMessage(`{"n":1}`)}
	}
	if _, err := s.AppendToStream(ctx, "bench", batch, store.AppendOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ReadStream(ctx, "bench", store.ReadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
