package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

type counted interface{ isCounted() }

type tick struct{}

func (tick) isCounted() {}

type stray struct{} // registered with the codec but not a counted event

func TestAggregateStreamWrongEventType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := memory.New()
	codec := store.NewJSONCodec().MustRegister("Tick", tick{}).MustRegister("Stray", stray{})
	events, err := store.Encode(codec, tick{}, stray{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.AppendToStream(ctx, "c", events, store.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	count := func(n int, _ counted) int { return n + 1 }
	_, err = store.AggregateStream(ctx, es, codec, "c", 0, count, store.AggregateOptions{})
	if err == nil || !strings.Contains(err.Error(), "Stray") || !strings.Contains(err.Error(), "not the aggregate's event type") {
		t.Fatalf("err = %v, want an error naming the stray event", err)
	}

	got, err := store.AggregateStream(ctx, es, codec, "c", 0, count, store.AggregateOptions{From: 1, PageSize: 1, ExpectedVersion: store.Any})
	if err == nil {
		t.Fatalf("paged fold passed the stray event: %+v", got)
	}
}

func TestAggregateStreamReadError(t *testing.T) {
	t.Parallel()
	es := memory.New()
	codec := store.NewJSONCodec()
	_, err := store.AggregateStream(context.Background(), es, codec, "", 0, func(n int, _ any) int { return n }, store.AggregateOptions{})
	if err == nil || !strings.Contains(err.Error(), "aggregate stream") {
		t.Fatalf("err = %v, want the read error wrapped", err)
	}
}
