package actor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

func TestIdempotentCommandID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	_, agg := startHost(t, st, actor.Config{})

	opts := actor.SendOptions{CommandID: "order-1", ReturnState: true}
	r1, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "i1", Op: "inc2"}, opts)
	require.NoError(t, err)
	assert.False(t, r1.Duplicate)
	appends := st.appends.Load()

	r2, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "i1", Op: "inc2"}, opts)
	require.NoError(t, err)
	assert.True(t, r2.Duplicate)
	assert.Equal(t, r1.Version, r2.Version)
	assert.Equal(t, r1.GlobalPosition, r2.GlobalPosition)
	assert.Equal(t, r1.Events, r2.Events)
	assert.Equal(t, r1.State, r2.State)
	assert.Equal(t, appends, st.appends.Load(), "a re-sent command id appends nothing")

	// The same id on another stream is another command.
	r3, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "i2"}, opts)
	require.NoError(t, err)
	assert.False(t, r3.Duplicate)

	// Concurrent re-sends of one id (they share a batch) apply it once.
	var wg sync.WaitGroup
	var dups atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "i3"}, actor.SendOptions{CommandID: "same"})
			if assert.NoError(t, err) {
				assert.Equal(t, store.Version(1), r.Version)
				if r.Duplicate {
					dups.Add(1)
				}
			}
		}()
	}
	waitGroup(t, &wg, time.Minute, "senders")
	assert.Equal(t, int64(15), dups.Load())
	assert.Len(t, readAll(t, st, "acme", "i3"), 1)
}

// An id older than the window is not applied again either: the store
// rejects its deterministic message ids.
func TestCommandIDOutsideWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	_, agg := startHost(t, st, actor.Config{CommandIDWindow: 2})
	for _, id := range []string{"a", "b", "c"} {
		_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "w"}, actor.SendOptions{CommandID: id})
		require.NoError(t, err)
	}
	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "w"}, actor.SendOptions{CommandID: "c"})
	require.NoError(t, err)
	assert.True(t, r.Duplicate)
	_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "w"}, actor.SendOptions{CommandID: "a"})
	assert.ErrorIs(t, err, store.ErrDuplicateMessageID)
	assert.Len(t, readAll(t, st, "acme", "w"), 3)

	// The stream is still usable.
	r, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "w"})
	require.NoError(t, err)
	assert.Equal(t, store.Version(4), r.Version)
}

// Command ids survive a restart: a new host finds them in the events it
// replays, and a stale host finds them in the tail it reads after the
// conflict their re-send causes.
func TestIdempotentAcrossHosts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	_, a1 := startHost(t, st, actor.Config{})
	r1, err := a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1", Op: "inc2"}, actor.SendOptions{CommandID: "c1"})
	require.NoError(t, err)

	// A second host (another process) activating the stream cold.
	_, a2 := startHost(t, st, actor.Config{})
	appends := st.appends.Load()
	r2, err := a2.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1", Op: "inc2"}, actor.SendOptions{CommandID: "c1", ReturnState: true})
	require.NoError(t, err)
	assert.True(t, r2.Duplicate)
	assert.Equal(t, r1.Version, r2.Version)
	assert.Equal(t, r1.GlobalPosition, r2.GlobalPosition)
	assert.Equal(t, r1.Events, r2.Events)
	assert.Equal(t, counterState{Count: 2, Events: 2}, r2.State)
	assert.Equal(t, appends, st.appends.Load())

	// Host 1 applies c2; host 2, cached at version 2, receives c2 too: its
	// append carries the same deterministic message ids at the same
	// position, which the store answers as an idempotent retry.
	r3, err := a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1"}, actor.SendOptions{CommandID: "c2"})
	require.NoError(t, err)
	r4, err := a2.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1"}, actor.SendOptions{CommandID: "c2"})
	require.NoError(t, err)
	assert.Equal(t, r3.Version, r4.Version)
	assert.Len(t, readAll(t, st, "acme", "x1"), 3, "no command was applied twice")

	// Host 1 applies c3 and c4; host 2, cached at version 3, receives c4:
	// its append conflicts, the tail it reads holds c4, and it answers
	// with c4's original result.
	_, err = a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1"}, actor.SendOptions{CommandID: "c3"})
	require.NoError(t, err)
	r5, err := a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1"}, actor.SendOptions{CommandID: "c4"})
	require.NoError(t, err)
	r6, err := a2.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1"}, actor.SendOptions{CommandID: "c4"})
	require.NoError(t, err)
	assert.True(t, r6.Duplicate)
	assert.Equal(t, r5.Version, r6.Version)
	assert.Equal(t, r5.Position, r6.Position)
	assert.Len(t, readAll(t, st, "acme", "x1"), 5, "no command was applied twice")

	r7, err := a2.Send(ctx, counterCmd{Tenant: "acme", Stream: "x1"})
	require.NoError(t, err)
	assert.Equal(t, store.Version(6), r7.Version)
}

// Must show: LRU cap 100 with 1,000 streams touched: live actors never
// exceed 100, every stream's state is right when touched again.
func TestLRUCapsLiveActors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, agg := startHost(t, memory.New(), actor.Config{MaxActors: 100})

	const streams, senders = 1000, 8
	touch := func(round int) {
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= streams {
						return
					}
					r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: fmt.Sprintf("s%d", i)})
					if assert.NoError(t, err) {
						assert.Equal(t, store.Version(round), r.Version, "stream s%d", i)
					}
					assert.LessOrEqual(t, h.Stats().LiveActors, 100)
				}
			}()
		}
		waitGroup(t, &wg, 2*time.Minute, "senders")
	}
	touch(1)
	touch(2)
	st := h.Stats()
	t.Logf("%+v", st)
	assert.LessOrEqual(t, st.PeakLiveActors, 100, "live actors never exceed MaxActors")
	assert.Equal(t, 100, st.PeakLiveActors)
	assert.Equal(t, int64(2*streams), st.Activations)
	assert.GreaterOrEqual(t, st.Passivations, int64(2*streams-100))
	assert.Equal(t, int64(streams), st.EventsReplayed, "each stream replayed its one event on its second activation")
	for i := range streams {
		s, v, err := agg.State(ctx, "acme", store.StreamID(fmt.Sprintf("s%d", i)))
		require.NoError(t, err)
		require.Equal(t, store.Version(2), v)
		require.Equal(t, 2, s.Count)
	}
	assert.LessOrEqual(t, h.Stats().PeakLiveActors, 100)
}

// A command for a stream whose activation is being passivated is not lost:
// with room for one actor, senders to two streams evict each other all the
// time.
func TestCommandsDuringPassivationAreNotLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	st.setOnAppend(delayAppends(200 * time.Microsecond))
	h, agg := startHost(t, st, actor.Config{MaxActors: 1})
	var wg sync.WaitGroup
	var counts [2]atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 25 {
				s := (i + j) % 2
				_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: fmt.Sprintf("pp%d", s)})
				if assert.NoError(t, err) {
					counts[s].Add(1)
				}
			}
		}()
	}
	waitGroup(t, &wg, 2*time.Minute, "senders")
	for s := range 2 {
		state, v, err := agg.State(ctx, "acme", store.StreamID(fmt.Sprintf("pp%d", s)))
		require.NoError(t, err)
		assert.Equal(t, int(counts[s].Load()), state.Count)
		assert.Equal(t, store.Version(counts[s].Load()), v)
	}
	stats := h.Stats()
	assert.Greater(t, stats.Activations, int64(2), "the streams evicted each other")
	assert.LessOrEqual(t, stats.PeakLiveActors, 1)
}

func TestIdlePassivation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, agg := startHost(t, memory.New(), actor.Config{IdleTimeout: 20 * time.Millisecond})
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "idle"})
	require.NoError(t, err)
	eventually(t, "the idle actor to be passivated", func() bool {
		s := h.Stats()
		return s.LiveActors == 0 && s.Passivations == 1
	})
	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "idle"})
	require.NoError(t, err)
	assert.Equal(t, store.Version(2), r.Version)
	s := h.Stats()
	assert.Equal(t, int64(2), s.Activations)
	assert.Equal(t, int64(1), s.EventsReplayed)
}

func snapshotKind(every int) actor.Kind[counterCmd, counterEvent, counterState] {
	k := counterKind()
	k.Snapshot = &actor.SnapshotConfig[counterState]{Every: every}
	return k
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	h1, a1 := startHost(t, st, actor.Config{}, snapshotKind(10))
	for range 25 {
		_, err := a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "snap"})
		require.NoError(t, err)
	}
	require.NoError(t, h1.Stop(ctx), "Stop waits for snapshot writes")
	snap, ok, err := st.LoadSnapshot(ctx, "acme", "snap", "counter")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, store.Version(20), snap.Version)
	assert.JSONEq(t, `{"count":20,"events":20}`, string(snap.State))

	// A cold start reads the snapshot and the 5 events after it.
	h2, a2 := startHost(t, st, actor.Config{}, snapshotKind(10))
	s, v, err := a2.State(ctx, "acme", "snap")
	require.NoError(t, err)
	assert.Equal(t, store.Version(25), v)
	assert.Equal(t, counterState{Count: 25, Events: 25}, s)
	assert.Equal(t, int64(5), h2.Stats().EventsReplayed)
}

func TestUndecodableSnapshotIsIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	h1, a1 := startHost(t, st, actor.Config{})
	for range 12 {
		_, err := a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "bad"})
		require.NoError(t, err)
	}
	require.NoError(t, h1.Stop(ctx))
	require.NoError(t, st.SaveSnapshot(ctx, store.Snapshot{Partition: "acme", Stream: "bad", Name: "counter", Version: 10, State: []byte(`"not a state"`)}))

	logs := &logBuffer{}
	h2, a2 := startHost(t, st, actor.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}, snapshotKind(10))
	s, v, err := a2.State(ctx, "acme", "bad")
	require.NoError(t, err)
	assert.Equal(t, store.Version(12), v)
	assert.Equal(t, counterState{Count: 12, Events: 12}, s)
	assert.Equal(t, int64(12), h2.Stats().EventsReplayed, "the whole stream was replayed")
	assert.Contains(t, logs.String(), "actor_snapshot_undecodable")
}

// Must show: Stop while 1,000 commands are in flight: each gets a result
// or an error, none hangs; every acknowledged command is in the store and
// nothing else is.
func TestStopDrainsInFlightCommands(t *testing.T) {
	t.Parallel()
	st := newWrapStore()
	st.setOnAppend(delayAppends(time.Millisecond))
	h, agg := startHost(t, st, actor.Config{})

	const commands, streams = 1000, 50
	var (
		wg       sync.WaitGroup
		ok       [streams]atomic.Int64
		stopped  atomic.Int64
		answered atomic.Int64
	)
	for i := range commands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := agg.Send(context.Background(), counterCmd{Tenant: "acme", Stream: fmt.Sprintf("d%d", i%streams)})
			answered.Add(1)
			switch {
			case err == nil:
				ok[i%streams].Add(1)
			case errors.Is(err, actor.ErrStopped):
				stopped.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	eventually(t, "some commands to be applied", func() bool { return h.Stats().Appends >= 20 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, h.Stop(ctx))
	waitGroup(t, &wg, time.Minute, "senders")
	assert.Equal(t, int64(commands), answered.Load())

	total := int64(0)
	for i := range streams {
		n := ok[i].Load()
		total += n
		assert.Len(t, readAll(t, st, "acme", fmt.Sprintf("d%d", i)), int(n), "stream d%d holds exactly the acknowledged commands", i)
	}
	t.Logf("%d applied, %d refused with ErrStopped", total, stopped.Load())
	assert.Equal(t, int64(commands), total+stopped.Load())
	assert.Positive(t, total)
	assert.Zero(t, h.Stats().LiveActors)
}

// When Stop's context expires, the store calls still running are
// cancelled and their commands fail; Stop still returns with nothing left
// running.
func TestStopTimeoutCancelsStoreCalls(t *testing.T) {
	t.Parallel()
	st := newWrapStore()
	st.setOnAppend(func(ctx context.Context, _ store.StreamID, _ []store.EventData, _ store.AppendOptions) (store.AppendResult, error, bool) {
		<-ctx.Done()
		return store.AppendResult{}, ctx.Err(), true
	})
	h, err := actor.New(st, &actor.Config{Logger: quietLogger()})
	require.NoError(t, err)
	agg, err := actor.Register(h, counterKind())
	require.NoError(t, err)
	require.NoError(t, h.Start(context.Background()))

	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := agg.Send(context.Background(), counterCmd{Tenant: "acme", Stream: "stuck"})
			errc <- err
		}()
	}
	eventually(t, "the append to start", func() bool { return st.appends.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = h.Stop(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	for range 2 {
		select {
		case err := <-errc:
			assert.True(t, errors.Is(err, actor.ErrOutcomeUnknown) || errors.Is(err, actor.ErrStopped), "got %v", err)
		case <-time.After(time.Minute):
			t.Fatal("a command was not answered")
		}
	}
	assert.ErrorIs(t, h.Stop(context.Background()), context.DeadlineExceeded, "a second Stop reports the first one's outcome")
}

// Two hosts (two processes) on one store, 16 goroutines each, incrementing
// the same streams: every command is answered, each stream's state equals
// its successful commands, positions are contiguous and no event is
// duplicated.
func runTwoHosts(t *testing.T, st1, st2 store.EventStore, streams, perSender int) {
	t.Helper()
	ctx := context.Background()
	cfg := actor.Config{Retry: retry.Policy{MaxAttempts: 50, InitialDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}}
	h1, a1 := startHost(t, st1, cfg)
	h2, a2 := startHost(t, st2, cfg)

	succeeded := make([]atomic.Int64, streams)
	var wg sync.WaitGroup
	var answered, failed atomic.Int64
	for _, agg := range []*counterAgg{a1, a2} {
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				for range perSender {
					s := rng.IntN(streams)
					_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: fmt.Sprintf("t%d", s)})
					answered.Add(1)
					if err == nil {
						succeeded[s].Add(1)
						continue
					}
					failed.Add(1)
					assert.ErrorIs(t, err, store.ErrVersionConflict, "only conflicts past the budget may fail")
				}
			}()
		}
	}
	waitGroup(t, &wg, 5*time.Minute, "senders")
	assert.Equal(t, int64(2*16*perSender), answered.Load(), "every command answered")
	s1, s2 := h1.Stats(), h2.Stats()
	t.Logf("host 1: %+v", s1)
	t.Logf("host 2: %+v", s2)
	t.Logf("%d commands failed after the retry budget", failed.Load())
	assert.Positive(t, s1.Conflicts+s2.Conflicts, "the hosts did race")

	codec := newCodec()
	for s := range streams {
		stream := fmt.Sprintf("t%d", s)
		evs := readAll(t, st1, "acme", stream)
		want := succeeded[s].Load()
		require.Len(t, evs, int(want), "stream %s holds one event per successful command", stream)
		ids := map[string]bool{}
		for i, e := range evs {
			require.Equal(t, store.Version(i+1), e.StreamPosition, "positions are contiguous")
			require.False(t, ids[e.MessageID], "duplicate event")
			ids[e.MessageID] = true
		}
		agg, err := store.AggregateStream(ctx, st1, codec, store.StreamID(stream), counterDecider.InitialState(), counterDecider.Evolve, store.AggregateOptions{Partition: "acme"})
		require.NoError(t, err)
		require.Equal(t, int(want), agg.State.Count)
	}
}

func TestTwoHostsOnOneMemoryStore(t *testing.T) {
	t.Parallel()
	st := memory.New()
	runTwoHosts(t, st, st, 20, 100)
}
