package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/store"
)

// Mode names.
const (
	ModeActor     = "actor"
	ModeStateless = "stateless"
)

// roundTrips counts the round trips of a pool: every statement (BEGIN and
// COMMIT included) and every pipelined batch counts one.
type roundTrips struct{ n atomic.Int64 }

var (
	_ pgx.QueryTracer = (*roundTrips)(nil)
	_ pgx.BatchTracer = (*roundTrips)(nil)
)

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (r *roundTrips) load() int64 { return r.n.Load() }

// outcome is what one command did.
type outcome struct {
	events    int
	conflicts int // retried version conflicts (stateless mode)
	position  store.Position
}

// commander handles cart commands in one mode.
type commander interface {
	send(ctx context.Context, cmd benchcart.Command) (outcome, error)
	// conflicts returns the version conflicts met so far (retried or not).
	conflicts() int64
	close(ctx context.Context) error
}

// actorMode sends commands through an actor host.
type actorMode struct {
	host  *actor.Host
	carts *actor.Aggregate[benchcart.Command, benchcart.Event, benchcart.State]
}

// newActorMode starts a host on es holding at most maxActors stream actors.
func newActorMode(ctx context.Context, es store.EventStore, maxActors int, logger *slog.Logger) (*actorMode, error) {
	codec, err := benchcart.NewCodec()
	if err != nil {
		return nil, err
	}
	h, err := actor.New(es, &actor.Config{Codec: codec, Logger: logger, MaxActors: maxActors, IdleTimeout: -1})
	if err != nil {
		return nil, fmt.Errorf("new actor host: %w", err)
	}
	carts, err := actor.Register(h, actor.Kind[benchcart.Command, benchcart.Event, benchcart.State]{
		Name:       "cart",
		StreamType: benchcart.StreamType,
		Decider:    benchcart.Decider(),
		Route: func(c benchcart.Command) (string, store.StreamID) {
			return c.Tenant(), store.StreamID(c.Cart())
		},
		CommandName: commandName,
	})
	if err != nil {
		return nil, fmt.Errorf("register the cart kind: %w", err)
	}
	if err := h.Start(ctx); err != nil {
		return nil, fmt.Errorf("start actor host: %w", err)
	}
	return &actorMode{host: h, carts: carts}, nil
}

func commandName(c benchcart.Command) string {
	switch c.(type) {
	case benchcart.CreateCart:
		return "CreateCart"
	case benchcart.AddItem:
		return "AddItem"
	case benchcart.CheckoutCart:
		return "CheckoutCart"
	default:
		return "Other"
	}
}

func (m *actorMode) send(ctx context.Context, cmd benchcart.Command) (outcome, error) {
	res, err := m.carts.Send(ctx, cmd)
	if err != nil {
		return outcome{}, err
	}
	return outcome{events: len(res.Events), position: res.Position}, nil
}

func (m *actorMode) conflicts() int64 { return m.host.Stats().Conflicts }

func (m *actorMode) close(ctx context.Context) error { return m.host.Stop(ctx) }

// statelessRetry is the stateless handler's conflict policy, the host's
// default: 5 attempts, jittered delay from 2ms doubling up to 100ms.
var statelessRetry = struct {
	attempts  int
	base, max time.Duration
}{5, 2 * time.Millisecond, 100 * time.Millisecond}

// statelessMode reads, decides and appends for every command.
type statelessMode struct {
	es       store.EventStore
	codec    *store.JSONCodec
	conflict atomic.Int64
}

func newStatelessMode(es store.EventStore) (*statelessMode, error) {
	codec, err := benchcart.NewCodec()
	if err != nil {
		return nil, err
	}
	return &statelessMode{es: es, codec: codec}, nil
}

func (m *statelessMode) send(ctx context.Context, cmd benchcart.Command) (outcome, error) {
	var out outcome
	stream := store.StreamID(cmd.Cart())
	for attempt := 1; ; attempt++ {
		agg, err := store.AggregateStream(ctx, m.es, m.codec, stream, benchcart.InitialState(), benchcart.Evolve,
			store.AggregateOptions{Partition: cmd.Tenant()})
		if err != nil {
			return out, err
		}
		evs, err := benchcart.Decide(cmd, agg.State)
		if err != nil {
			return out, decider.Rejected(err)
		}
		vals := make([]any, len(evs))
		for i, e := range evs {
			vals[i] = e
		}
		data, err := store.Encode(m.codec, vals...)
		if err != nil {
			return out, err
		}
		res, err := m.es.AppendToStream(ctx, stream, data, store.AppendOptions{Partition: cmd.Tenant(),
			StreamType: benchcart.StreamType, ExpectedVersion: store.Exact(agg.CurrentVersion)})
		if errors.Is(err, store.ErrVersionConflict) {
			m.conflict.Add(1)
			if attempt >= statelessRetry.attempts {
				return out, err
			}
			out.conflicts++
			if err := sleepCtx(ctx, jitter(attempt)); err != nil {
				return out, err
			}
			continue
		}
		if err != nil {
			return out, err
		}
		out.events, out.position = len(data), res.LastPosition()
		return out, nil
	}
}

// jitter returns a random delay in [0, base·2^(attempt-1)], capped.
func jitter(attempt int) time.Duration {
	d := statelessRetry.base << (attempt - 1)
	if d > statelessRetry.max || d <= 0 {
		d = statelessRetry.max
	}
	return rand.N(d + 1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *statelessMode) conflicts() int64 { return m.conflict.Load() }

func (m *statelessMode) close(context.Context) error { return nil }
