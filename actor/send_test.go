package actor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

func TestSendAndState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	_, agg := startHost(t, st, actor.Config{})

	s, v, err := agg.State(ctx, "acme", "c1")
	require.NoError(t, err)
	assert.Equal(t, counterState{}, s, "a stream with no events has the initial state")
	assert.Equal(t, store.Version(0), v)

	r1, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "c1", By: 5})
	require.NoError(t, err)
	assert.Equal(t, store.Version(1), r1.Version)
	assert.Equal(t, []counterEvent{Incremented{By: 5}}, r1.Events)
	assert.Equal(t, counterState{}, r1.State, "state is only returned on request")
	assert.NotZero(t, r1.GlobalPosition)
	assert.Equal(t, r1.GlobalPosition, r1.Position.GlobalPosition)

	r2, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "c1", Op: "inc2"}, actor.SendOptions{ReturnState: true})
	require.NoError(t, err)
	assert.Equal(t, store.Version(3), r2.Version)
	assert.Equal(t, counterState{Count: 7, Events: 3}, r2.State)
	assert.Greater(t, r2.GlobalPosition, r1.GlobalPosition)
	assert.True(t, r1.Position.Less(r2.Position))

	r3, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "c1", Op: "noop"}, actor.SendOptions{ReturnState: true})
	require.NoError(t, err)
	assert.Equal(t, store.Version(3), r3.Version, "a command without events leaves the version")
	assert.Empty(t, r3.Events)
	assert.Equal(t, counterState{Count: 7, Events: 3}, r3.State)

	s, v, err = agg.State(ctx, "acme", "c1")
	require.NoError(t, err)
	assert.Equal(t, counterState{Count: 7, Events: 3}, s)
	assert.Equal(t, store.Version(3), v)

	// The events are in the store, in the tenant's partition, with the
	// kind's stream type.
	evs := readAll(t, st, "acme", "c1")
	require.Len(t, evs, 3)
	assert.Equal(t, "Incremented", evs[0].Type)
	assert.Equal(t, "counter", evs[0].StreamType)
	assert.Equal(t, "acme", evs[0].Partition)
	assert.Empty(t, readAll(t, st, store.DefaultPartition, "c1"), "another tenant's stream of the same id is untouched")

	// The empty tenant is the default partition.
	_, err = agg.Send(ctx, counterCmd{Stream: "c1"})
	require.NoError(t, err)
	assert.Len(t, readAll(t, st, store.DefaultPartition, "c1"), 1)
}

func TestSendMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	_, agg := startHost(t, st, actor.Config{})
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "m1", Op: "inc2"}, actor.SendOptions{
		CommandID: "cmd-1", CorrelationID: "corr-1", CausationID: "cause-1",
		Metadata: store.Metadata{"user": "ann", actor.MetaCommandID: "spoofed"},
	})
	require.NoError(t, err)
	evs := readAll(t, st, "acme", "m1")
	require.Len(t, evs, 2)
	for _, e := range evs {
		assert.Equal(t, "cmd-1", e.Metadata[actor.MetaCommandID])
		assert.Equal(t, "corr-1", e.Metadata[store.MetaCorrelationID])
		assert.Equal(t, "cause-1", e.Metadata[store.MetaCausationID])
		assert.Equal(t, "ann", e.Metadata["user"])
	}
	assert.NotEqual(t, evs[0].MessageID, evs[1].MessageID)
}

func TestSendRejectsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, agg := startHost(t, memory.New(), actor.Config{})
	_, err := agg.Send(ctx, counterCmd{Tenant: "bad tenant!", Stream: "x"})
	assert.ErrorIs(t, err, store.ErrInvalidArgument)
	_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: ""})
	assert.ErrorIs(t, err, store.ErrInvalidArgument)
	_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "x"}, actor.SendOptions{}, actor.SendOptions{})
	assert.ErrorIs(t, err, store.ErrInvalidArgument)
	_, _, err = agg.State(ctx, "acme", "")
	assert.ErrorIs(t, err, store.ErrInvalidArgument)
}

func TestRejectionIsReturnedAsIs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	_, agg := startHost(t, st, actor.Config{})
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "r1"})
	require.NoError(t, err)

	_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "r1", Op: "reject"})
	require.Error(t, err)
	assert.ErrorIs(t, err, errTooMany, "the domain's own error matches")
	assert.ErrorIs(t, err, decider.ErrRejected, "and so does ErrRejected")
	assert.Equal(t, errTooMany.Error(), err.Error(), "the message is the domain's")

	s, v, err := agg.State(ctx, "acme", "r1")
	require.NoError(t, err)
	assert.Equal(t, store.Version(1), v)
	assert.Equal(t, 1, s.Count)
	assert.Len(t, readAll(t, st, "acme", "r1"), 1)
}

// Must show: a command whose decide panics returns an error; the next
// command on that stream succeeds.
func TestPanicInUserCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	_, agg := startHost(t, st, actor.Config{})
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "p1"})
	require.NoError(t, err)

	for _, op := range []string{"panic", "poison"} {
		_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "p1", Op: op})
		require.Error(t, err, op)
		assert.ErrorIs(t, err, actor.ErrPanic, op)
		var pe *actor.PanicError
		require.ErrorAs(t, err, &pe, op)
		assert.Contains(t, []string{"decide", "evolve"}, pe.Where)
		assert.Contains(t, err.Error(), "exploded")
		assert.NotEmpty(t, pe.Stack)
		assert.NotErrorIs(t, err, decider.ErrRejected, "a panic is not a domain rejection")

		r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "p1"}, actor.SendOptions{ReturnState: true})
		require.NoError(t, err, "the actor survives a panic in %s", op)
		assert.Equal(t, 0, r.State.Events-int(r.Version), "the state did not advance for the panicking command")
	}
	s, v, err := agg.State(ctx, "acme", "p1")
	require.NoError(t, err)
	assert.Equal(t, store.Version(3), v)
	assert.Equal(t, counterState{Count: 3, Events: 3}, s)
	assert.Len(t, readAll(t, st, "acme", "p1"), 3, "nothing was appended for the panicking commands")
}

func TestRoutePanic(t *testing.T) {
	t.Parallel()
	k := counterKind()
	k.Route = func(c counterCmd) (string, store.StreamID) { panic("no route") }
	_, agg := startHost(t, memory.New(), actor.Config{}, k)
	_, err := agg.Send(context.Background(), counterCmd{Stream: "x"})
	assert.ErrorIs(t, err, actor.ErrPanic)
}

// Must show: group commit. 64 concurrent senders on one stream produce far
// fewer appends than commands, the right final state, and a rejected
// command does not sink its batch.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	st.setOnAppend(delayAppends(2 * time.Millisecond))
	h, agg := startHost(t, st, actor.Config{})

	const senders, each = 64, 20
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok       int
		rejected int
		versions = map[store.Version]bool{}
	)
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				op := "inc"
				if (i+j)%7 == 0 {
					op = "reject"
				}
				r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "hot", Op: op})
				mu.Lock()
				switch {
				case err == nil:
					ok++
					assert.False(t, versions[r.Version], "version %d given to two commands", r.Version)
					versions[r.Version] = true
				case errors.Is(err, errTooMany):
					rejected++
				default:
					t.Errorf("unexpected error: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	waitGroup(t, &wg, time.Minute, "senders")

	commands := senders * each
	assert.Equal(t, commands, ok+rejected)
	assert.Positive(t, rejected)
	appends := int(st.appends.Load())
	t.Logf("%d commands, %d appends", commands, appends)
	assert.Less(t, appends, commands/4, "group commit must batch commands")
	assert.Equal(t, int64(appends), h.Stats().Appends)

	s, v, err := agg.State(ctx, "acme", "hot")
	require.NoError(t, err)
	assert.Equal(t, ok, s.Count)
	assert.Equal(t, store.Version(ok), v)
	evs := readAll(t, st, "acme", "hot")
	require.Len(t, evs, ok)
	for i, e := range evs {
		assert.Equal(t, store.Version(i+1), e.StreamPosition)
	}
}

func TestMaxBatchCapsAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	st.setOnAppend(delayAppends(2 * time.Millisecond))
	_, agg := startHost(t, st, actor.Config{MaxBatch: 4})
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "cap"})
			assert.NoError(t, err)
		}()
	}
	waitGroup(t, &wg, time.Minute, "senders")
	for _, c := range st.calls() {
		assert.LessOrEqual(t, c.events, 4, "a batch holds at most MaxBatch commands")
	}
	assert.GreaterOrEqual(t, len(st.calls()), 8)
}

// A conflict (another writer) is retried against the tail; past the retry
// budget the store's typed conflict error comes back.
func TestConflictRetryBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	h, agg := startHost(t, st, actor.Config{Retry: retry.Policy{MaxAttempts: 3, InitialDelay: time.Millisecond}})
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "k1"})
	require.NoError(t, err)

	// Another process wins every race: before each of our appends it
	// appends an event of its own.
	foreign := func(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error, bool) {
		_, err := st.Store.AppendToStream(ctx, stream, []store.EventData{{Type: "Incremented", Data: []byte(`{"by":10}`)}}, store.AppendOptions{Partition: opts.Partition})
		if err != nil {
			return store.AppendResult{}, err, true
		}
		return store.AppendResult{}, nil, false
	}
	st.setOnAppend(foreign)
	before := st.appends.Load()
	_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "k1"})
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrVersionConflict)
	var vc *store.VersionConflictError
	require.ErrorAs(t, err, &vc)
	assert.Equal(t, store.StreamID("k1"), vc.Stream)
	assert.Equal(t, int64(3), st.appends.Load()-before, "MaxAttempts appends were tried")
	assert.Equal(t, int64(3), h.Stats().Conflicts)

	// The actor read the tails: with the other writer gone, the next
	// command succeeds at once on top of its 3 events.
	st.setOnAppend(nil)
	before = st.appends.Load()
	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "k1"}, actor.SendOptions{ReturnState: true})
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.appends.Load()-before, "no conflict: the actor was up to date")
	assert.Equal(t, store.Version(5), r.Version)
	assert.Equal(t, 1+30+1, r.State.Count)
}

// Ambiguous failure: the append commits but the store reports an error
// (connection lost during commit). The command fails with
// ErrOutcomeUnknown and the actor reloads before its next command, so that
// one's expected version is right the first time.
func TestAmbiguousFailureReloads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	h, agg := startHost(t, st, actor.Config{})
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "a1"})
	require.NoError(t, err)

	lost := errors.New("connection lost during commit")
	var once sync.Once
	st.setOnAppend(func(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error, bool) {
		handled := false
		var err error
		once.Do(func() {
			_, err = st.Store.AppendToStream(ctx, stream, events, opts)
			assert.NoError(t, err)
			handled, err = true, lost
		})
		return store.AppendResult{}, err, handled
	})
	_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "a1"})
	require.Error(t, err)
	assert.ErrorIs(t, err, actor.ErrOutcomeUnknown)
	assert.ErrorIs(t, err, lost)

	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "a1"}, actor.SendOptions{ReturnState: true})
	require.NoError(t, err)
	assert.Equal(t, store.Version(3), r.Version)
	assert.Equal(t, 3, r.State.Count, "the committed event was reloaded")
	assert.Zero(t, h.Stats().Conflicts, "the actor reloaded instead of hitting a conflict")
	calls := st.calls()
	last := calls[len(calls)-1]
	n, exact := last.expected.Exact()
	assert.True(t, exact)
	assert.Equal(t, store.Version(2), n)
	assert.NoError(t, last.err)
}

// A failed append that did not commit leaves the state where it was.
func TestFailedAppendDoesNotAdvanceState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	_, agg := startHost(t, st, actor.Config{})
	down := errors.New("database is down")
	st.setOnAppend(func(context.Context, store.StreamID, []store.EventData, store.AppendOptions) (store.AppendResult, error, bool) {
		return store.AppendResult{}, down, true
	})
	_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "f1"})
	assert.ErrorIs(t, err, down)
	s, v, err := agg.State(ctx, "acme", "f1")
	require.NoError(t, err)
	assert.Equal(t, store.Version(0), v)
	assert.Zero(t, s.Count)

	st.setOnAppend(nil)
	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "f1"})
	require.NoError(t, err)
	assert.Equal(t, store.Version(1), r.Version)
}

func TestContextCancellation(t *testing.T) {
	t.Parallel()
	st := newWrapStore()
	release := make(chan struct{})
	st.setOnAppend(func(ctx context.Context, _ store.StreamID, _ []store.EventData, _ store.AppendOptions) (store.AppendResult, error, bool) {
		select {
		case <-release:
			return store.AppendResult{}, nil, false
		case <-ctx.Done():
			return store.AppendResult{}, ctx.Err(), true
		}
	})
	_, agg := startHost(t, st, actor.Config{})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "slow"})
		errc <- err
	}()
	eventually(t, "the append to start", func() bool { return st.appends.Load() == 1 })
	cancel()
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(time.Minute):
		t.Fatal("Send did not return after its context was cancelled")
	}

	// A deadline works the same while the command waits behind the
	// blocked append.
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	_, err := agg.Send(dctx, counterCmd{Tenant: "acme", Stream: "slow"})
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// An already cancelled context is refused up front.
	_, err = agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "other"})
	assert.ErrorIs(t, err, context.Canceled)

	close(release)
	// The abandoned commands are dropped, not applied, once the append
	// that blocked them finishes: only the first command's event exists.
	r, err := agg.Send(context.Background(), counterCmd{Tenant: "acme", Stream: "slow"})
	require.NoError(t, err)
	assert.Equal(t, store.Version(2), r.Version)
}

func TestHostLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, err := actor.New(memory.New(), &actor.Config{Logger: quietLogger()})
	require.NoError(t, err)
	agg, err := actor.Register(h, counterKind())
	require.NoError(t, err)

	_, err = agg.Send(ctx, counterCmd{Stream: "x"})
	assert.ErrorIs(t, err, actor.ErrNotStarted)

	require.NoError(t, h.Start(ctx))
	require.NoError(t, h.Start(ctx), "starting twice is harmless")
	_, err = agg.Send(ctx, counterCmd{Stream: "x"})
	require.NoError(t, err)

	require.NoError(t, h.Stop(ctx))
	require.NoError(t, h.Stop(ctx), "stopping twice is harmless")
	_, err = agg.Send(ctx, counterCmd{Stream: "x"})
	assert.ErrorIs(t, err, actor.ErrStopped)
	_, _, err = agg.State(ctx, "", "x")
	assert.ErrorIs(t, err, actor.ErrStopped)
	assert.ErrorIs(t, h.Start(ctx), actor.ErrStopped)
	assert.Zero(t, h.Stats().LiveActors)

	// A host that never started stops cleanly too.
	h2, err := actor.New(memory.New(), &actor.Config{Logger: quietLogger()})
	require.NoError(t, err)
	require.NoError(t, h2.Stop(ctx))
}

func TestConfigAndRegistration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   actor.Config
		field string
	}{
		{actor.Config{MaxActors: -1}, "actor.Config.MaxActors"},
		{actor.Config{MaxBatch: -1}, "actor.Config.MaxBatch"},
		{actor.Config{Retry: retry.Policy{MaxAttempts: -1}}, "actor.Config.Retry.MaxAttempts"},
		{actor.Config{Retry: retry.Policy{InitialDelay: time.Second, MaxDelay: time.Millisecond}}, "actor.Config.Retry.MaxDelay"},
		{actor.Config{CommandIDWindow: -1}, "actor.Config.CommandIDWindow"},
		{actor.Config{StoreTimeout: -1}, "actor.Config.StoreTimeout"},
	} {
		_, err := actor.New(memory.New(), &tc.cfg)
		assert.ErrorIs(t, err, actor.ErrInvalidConfig, tc.field)
		assert.ErrorContains(t, err, tc.field)
	}
	_, err := actor.New(nil, nil)
	assert.ErrorIs(t, err, actor.ErrInvalidConfig)
	assert.ErrorContains(t, err, "event store is nil")
	h0, err := actor.New(memory.New(), nil)
	require.NoError(t, err, "a nil *Config means every default")
	require.NotNil(t, h0)

	h, err := actor.New(memory.New(), &actor.Config{Logger: quietLogger()})
	require.NoError(t, err)
	defer func() { require.NoError(t, h.Stop(context.Background())) }()

	bad := counterKind()
	bad.Codec = nil
	_, err = actor.Register(h, bad)
	assert.ErrorContains(t, err, "Codec")
	bad = counterKind()
	bad.Route = nil
	_, err = actor.Register(h, bad)
	assert.ErrorContains(t, err, "Route")
	bad = counterKind()
	bad.Decider.Evolve = nil
	_, err = actor.Register(h, bad)
	assert.ErrorContains(t, err, "Evolve")
	bad = counterKind()
	bad.Snapshot = &actor.SnapshotConfig[counterState]{}
	_, err = actor.Register(h, bad)
	assert.ErrorContains(t, err, "Snapshot.Every")

	agg, err := actor.Register(h, counterKind())
	require.NoError(t, err)
	_, err = actor.Register(h, counterKind())
	assert.ErrorIs(t, err, actor.ErrKindExists)

	got, err := actor.Lookup[counterCmd, counterEvent, counterState](h, "counter")
	require.NoError(t, err)
	assert.Equal(t, agg.Name(), got.Name())
	_, err = actor.Lookup[counterCmd, counterEvent, counterState](h, "nope")
	assert.ErrorIs(t, err, actor.ErrUnknownKind)
	_, err = actor.Lookup[counterCmd, counterEvent, int](h, "counter")
	assert.ErrorIs(t, err, actor.ErrUnknownKind)

	// Snapshots need a store that keeps them.
	h2, err := actor.New(noSnapshots{memory.New()}, &actor.Config{Logger: quietLogger()})
	require.NoError(t, err)
	defer func() { require.NoError(t, h2.Stop(context.Background())) }()
	k := counterKind()
	k.Snapshot = &actor.SnapshotConfig[counterState]{Every: 10}
	_, err = actor.Register(h2, k)
	assert.ErrorIs(t, err, actor.ErrInvalidConfig)
}

// noSnapshots hides the memory store's SnapshotStore methods.
type noSnapshots struct{ store.EventStore }

func ExampleRegister() {
	ctx := context.Background()
	codec := store.NewJSONCodec().MustRegister("Incremented", Incremented{}).MustRegister("Poisoned", Poisoned{})
	h, _ := actor.New(memory.New(), &actor.Config{Codec: codec, Logger: quietLogger()})
	counters, _ := actor.Register(h, actor.Kind[counterCmd, counterEvent, counterState]{
		Name:    "counter",
		Decider: counterDecider,
		Route: func(c counterCmd) (string, store.StreamID) {
			return c.Tenant, store.StreamID(c.Stream)
		},
	})
	_ = h.Start(ctx)
	defer func() { _ = h.Stop(ctx) }()

	res, err := counters.Send(ctx, counterCmd{Tenant: "acme", Stream: "c-1", By: 2}, actor.SendOptions{ReturnState: true})
	fmt.Println(res.Version, res.State.Count, err)
	_, err = counters.Send(ctx, counterCmd{Tenant: "acme", Stream: "c-1", Op: "reject"})
	fmt.Println(errors.Is(err, decider.ErrRejected), errors.Is(err, errTooMany))
	// Output:
	// 1 2 <nil>
	// true true
}
