package projection_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/store"
)

type typedOpened struct {
	Account string `json:"account"`
	Owner   string `json:"owner"`
}

type typedDeposited struct {
	Account string `json:"account"`
	Amount  int    `json:"amount"`
}

type typedNeverRegistered struct{}

func typedCodec() *store.JSONCodec {
	return store.NewJSONCodec().
		MustRegister("AccountOpened", typedOpened{}).
		MustRegister("MoneyDeposited", typedDeposited{})
}

// TestTypedHandlersReceiveDecodedEvents runs a continuous projection whose
// handlers name Go types: each receives its events decoded, the registry's
// keys are the codec's names, and an event of another type reaches none.
func TestTypedHandlersReceiveDecodedEvents(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	codec := typedCodec()
	var mu sync.Mutex
	var opened []typedOpened
	var deposits []typedDeposited
	var positions []store.Version
	reg, err := projection.NewRegistry(codec,
		projection.On(func(ctx context.Context, tx pgx.Tx, e typedOpened, ev store.Event) error {
			mu.Lock()
			defer mu.Unlock()
			opened = append(opened, e)
			positions = append(positions, ev.StreamPosition)
			return nil
		}),
		projection.On(func(ctx context.Context, tx pgx.Tx, e typedDeposited, ev store.Event) error {
			mu.Lock()
			defer mu.Unlock()
			deposits = append(deposits, e)
			positions = append(positions, ev.StreamPosition)
			return nil
		}),
	)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"AccountOpened", "MoneyDeposited"}, keys(reg))

	events, err := store.Encode(codec, typedOpened{Account: "a-1", Owner: "ann"}, typedDeposited{Account: "a-1", Amount: 7})
	require.NoError(t, err)
	events = append(events, store.EventData{Type: "SomethingElse", Data: []byte(`{}`)})
	more, err := store.Encode(codec, typedDeposited{Account: "a-1", Amount: 5})
	require.NoError(t, err)
	events = append(events, more...)
	res, err := es.AppendToStream(projtest.Ctx(t), "a-1", events, store.AppendOptions{})
	require.NoError(t, err)

	cfg := projtest.FastConfig("typed")
	cfg.Handlers = reg
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)
	projtest.WaitFor(t, p, res.LastPosition())

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []typedOpened{{Account: "a-1", Owner: "ann"}}, opened)
	require.Equal(t, []typedDeposited{{Account: "a-1", Amount: 7}, {Account: "a-1", Amount: 5}}, deposits)
	require.Equal(t, []store.Version{1, 2, 4}, positions)
}

func keys(r projection.Registry) []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	return out
}

// TestTypedRegistryConfigErrors: a Go type the codec does not know, a nil
// codec and a nil function are configuration errors naming what is wrong.
func TestTypedRegistryConfigErrors(t *testing.T) {
	t.Parallel()
	codec := typedCodec()
	_, err := projection.NewRegistry(codec,
		projection.On(func(context.Context, pgx.Tx, typedOpened, store.Event) error { return nil }),
		projection.On(func(context.Context, pgx.Tx, typedNeverRegistered, store.Event) error { return nil }))
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorIs(t, err, store.ErrUnknownEventType)
	require.ErrorContains(t, err, "handler 1 (projection.On[projection_test.typedNeverRegistered])")
	require.ErrorContains(t, err, "Go type projection_test.typedNeverRegistered is not registered in the codec")

	_, err = projection.NewRegistry(nil, projection.On(func(context.Context, pgx.Tx, typedOpened, store.Event) error { return nil }))
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, "codec is nil")

	_, err = projection.NewRegistry(codec, projection.On[typedOpened](nil))
	require.ErrorIs(t, err, projection.ErrInvalidConfig)
	require.ErrorContains(t, err, "nil function")

	require.Panics(t, func() {
		projection.MustRegistry(codec, projection.On(func(context.Context, pgx.Tx, *typedOpened, store.Event) error { return nil }))
	})
}

// TestTypedHandlerUndecodableEventFails: an event stored under a handled
// type whose body does not decode fails the handler with an error naming
// the event, and the projection stops there (nothing is applied past it).
func TestTypedHandlerUndecodableEventFails(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	codec := typedCodec()
	called := 0
	reg := projection.MustRegistry(codec, projection.On(func(ctx context.Context, tx pgx.Tx, e typedDeposited, ev store.Event) error {
		called++
		return nil
	}))
	_, err := es.AppendToStream(projtest.Ctx(t), "a-2",
		[]store.EventData{{Type: "MoneyDeposited", Data: []byte(`{"amount":"not a number"}`)}}, store.AppendOptions{})
	require.NoError(t, err)
	cfg := projtest.FastConfig("typed-bad")
	cfg.Handlers = reg
	p := projtest.NewProjection(t, pool, cfg)
	err = p.Run(projtest.Ctx(t))
	require.ErrorIs(t, err, projection.ErrHandlerFailed)
	require.ErrorContains(t, err, "MoneyDeposited")
	require.ErrorContains(t, err, `stream "a-2"`)
	require.Zero(t, called)
}
