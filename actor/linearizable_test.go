package actor_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgserver"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// counterInput is one operation on a counter stream: an increment (Send)
// or a read (State).
type counterInput struct {
	stream string
	inc    bool
}

// counterOutput is what the operation returned: the count after the
// increment, or the count read. unknown marks an increment whose outcome
// is unknown (ErrOutcomeUnknown, or the caller's deadline passed while it
// was in flight): it may or may not have been applied.
type counterOutput struct {
	count   int
	unknown bool
}

// counterModel is the sequential specification of one counter stream per
// partition of the history.
var counterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			s := op.Input.(counterInput).stream
			if _, ok := by[s]; !ok {
				order = append(order, s)
			}
			by[s] = append(by[s], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, s := range order {
			out = append(out, by[s])
		}
		return out
	},
	Init: func() any { return 0 },
	Step: func(state, input, output any) (bool, any) {
		n, in, out := state.(int), input.(counterInput), output.(counterOutput)
		if !in.inc {
			return out.count == n, n
		}
		return out.unknown || out.count == n+1, n + 1
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(counterInput), output.(counterOutput)
		switch {
		case !in.inc:
			return fmt.Sprintf("read(%s) -> %d", in.stream, out.count)
		case out.unknown:
			return fmt.Sprintf("inc(%s) -> ?", in.stream)
		}
		return fmt.Sprintf("inc(%s) -> %d", in.stream, out.count)
	},
}

// Concurrent Send and State on a few streams from many goroutines, with
// PostgreSQL restarted twice while they run, form a linearizable history
// of one counter per stream. A command that failed with an error other
// than ErrOutcomeUnknown (or the caller's own deadline) must not have been
// applied, so it is left out of the history; one with an unknown outcome
// may have been, at any time after it was sent.
func TestLinearizableAcrossPostgresRestarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, err := pgserver.Start(ctx, pgserver.Options{MaxConnections: 50, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Stop()) })
	cfg, err := pgxpool.ParseConfig(srv.ConnString() + "&connect_timeout=2")
	require.NoError(t, err)
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool))
	st, err := postgres.New(pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	_, agg := startHost(t, st, actor.Config{StoreTimeout: 2 * time.Second, IdleTimeout: -1})

	const (
		clients   = 12
		maxOps    = 400 // at about one per 10 ms, they span the run
		runFor    = 6 * time.Second
		opTimeout = 5 * time.Second
	)
	streams := []string{"s0", "s1", "s2"}
	t0 := time.Now()
	now := func() int64 { return time.Since(t0).Nanoseconds() }
	end := t0.Add(runFor)

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		failed  atomic.Int64 // definite failures, left out
		unknown atomic.Int64
	)
	record := func(op porcupine.Operation) {
		mu.Lock()
		history = append(history, op)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 12))
			for i := 0; i < maxOps && time.Now().Before(end); i++ {
				in := counterInput{stream: streams[rng.IntN(len(streams))], inc: rng.IntN(10) < 7}
				opCtx, cancel := context.WithTimeout(ctx, opTimeout)
				call := now()
				var out counterOutput
				if in.inc {
					r, err := agg.Send(opCtx, counterCmd{Tenant: "acme", Stream: in.stream}, actor.SendOptions{ReturnState: true})
					switch {
					case err == nil:
						out.count = r.State.Count
					case errors.Is(err, actor.ErrOutcomeUnknown), errors.Is(err, context.DeadlineExceeded):
						cancel()
						unknown.Add(1)
						record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: counterOutput{unknown: true}, Return: math.MaxInt64})
						pause(ctx)
						continue
					default:
						cancel()
						failed.Add(1)
						pause(ctx)
						continue
					}
				} else {
					s, _, err := agg.State(opCtx, "acme", store.StreamID(in.stream))
					if err != nil {
						cancel()
						failed.Add(1)
						pause(ctx)
						continue
					}
					out.count = s.Count
				}
				ret := now()
				cancel()
				record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				pause(ctx)
			}
		}()
	}

	// Restart PostgreSQL twice while the clients run.
	for _, at := range []time.Duration{runFor / 4, runFor * 3 / 5} {
		timer := time.NewTimer(time.Until(t0.Add(at)))
		<-timer.C
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		require.NoError(t, srv.Restart(rctx))
		cancel()
	}
	waitGroup(t, &wg, runFor+time.Minute, "clients")

	t.Logf("%d operations recorded, %d of them with an unknown outcome; %d definite failures left out",
		len(history), unknown.Load(), failed.Load())
	require.Greater(t, len(history), 200, "enough operations to check")
	// A generous budget: the check once ran past 20 s on a loaded machine.
	res, info := porcupine.CheckOperationsVerbose(counterModel, history, 90*time.Second)
	if res != porcupine.Ok {
		t.Errorf("history is %s (not linearizable, or the check timed out)", res)
		if res == porcupine.Illegal {
			for _, p := range info.PartialLinearizationsOperations() {
				t.Logf("longest partial linearization of a partition: %d operations", len(p))
			}
		}
	}

	// The actors agree with the store once PostgreSQL is up again.
	for _, s := range streams {
		var state counterState
		var v store.Version
		require.Eventually(t, func() bool {
			var err error
			state, v, err = agg.State(ctx, "acme", store.StreamID(s))
			return err == nil
		}, 30*time.Second, 10*time.Millisecond)
		evs := readAll(t, st, "acme", s)
		assert.Equal(t, store.Version(len(evs)), v, "stream %s", s)
		assert.Equal(t, len(evs), state.Count, "stream %s", s)
	}
}

// pause waits a little between a client's operations, so that they
// span the run (and clients do not spin while PostgreSQL is down).
func pause(ctx context.Context) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
