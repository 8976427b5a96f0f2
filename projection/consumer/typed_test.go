package consumer_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/store"
)

type pinged struct {
	N int `json:"n"`
}

// TestConsumerTypedHandlers: Config.Handlers from projection.NewRegistry
// get decoded events of their Go type, before handlers subscribed later.
func TestConsumerTypedHandlers(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	codec := store.NewJSONCodec().MustRegister("Pinged", pinged{})
	var mu sync.Mutex
	var got []string
	reg := projection.MustRegistry(codec, projection.On(func(_ context.Context, _ pgx.Tx, e pinged, ev store.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, "typed:"+string(rune('0'+e.N)))
		return nil
	}))
	c := newConsumer(t, pool, &consumer.Config{Name: "typed", Handlers: reg})
	c.Subscribe("Pinged", func(_ context.Context, _ pgx.Tx, e store.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, "raw")
		return nil
	})
	events, err := store.Encode(codec, pinged{N: 1}, pinged{N: 2})
	require.NoError(t, err)
	res, err := es.AppendToStream(projtest.Ctx(t), "p-1", events, store.AppendOptions{})
	require.NoError(t, err)
	startConsumer(t, c)
	require.NoError(t, c.WaitFor(projtest.Ctx(t), res.LastPosition()))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"typed:1", "raw", "typed:2", "raw"}, got)

	_, err = consumer.New(pool, &consumer.Config{Handlers: projection.Registry{"Pinged": {nil}}})
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, `consumer.Config.Handlers["Pinged"][0] is nil`)
}
