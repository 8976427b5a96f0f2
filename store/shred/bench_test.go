package shred_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
	"github.com/troupehq/troupe/store/shred"
)

// BenchmarkShred measures what the wrapper adds on the in-memory store
// (no database time): appending one event with two personal fields, and
// reading a stream of 100 such events back, wrapped and plain.
func BenchmarkShred(b *testing.B) {
	codec := newCodec()
	ctx := context.Background()
	ev := encode(b, codec, ada[0])
	for _, wrapped := range []bool{false, true} {
		mk := func() store.EventStore {
			inner := memory.New()
			if !wrapped {
				return inner
			}
			sh, err := shred.New(shred.NewMemoryKeyStore(), &shred.Config{Codec: codec, Events: []any{CustomerRegistered{}}})
			if err != nil {
				b.Fatal(err)
			}
			return sh.Wrap(inner)
		}
		name := map[bool]string{false: "plain", true: "wrapped"}[wrapped]
		b.Run("append/"+name, func(b *testing.B) {
			es := mk()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := es.AppendToStream(ctx, store.StreamID(fmt.Sprintf("s-%d", i%1000)), ev, store.AppendOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("read100/"+name, func(b *testing.B) {
			es := mk()
			evs := make([]store.EventData, 100)
			for i := range evs {
				evs[i] = ev[0]
				evs[i].MessageID = ""
			}
			if _, err := es.AppendToStream(ctx, "s", evs, store.AppendOptions{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := es.ReadStream(ctx, "s", store.ReadOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
