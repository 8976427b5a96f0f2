package actor_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

// The counter aggregate used by the tests: a stream holds a count.

type counterCmd struct {
	Tenant string
	Stream string
	Op     string // "inc" (default), "inc2", "noop", "reject", "panic", "poison", "note"
	By     int
	Text   string // the text of a "note"
}

type counterEvent interface{ isCounterEvent() }

type Incremented struct {
	By int `json:"by"`
}

type Poisoned struct{}

// Noted carries free text: a string with \x00 in it is valid JSON that
// PostgreSQL's jsonb refuses.
type Noted struct {
	Text string `json:"text"`
}

func (Incremented) isCounterEvent() {}
func (Poisoned) isCounterEvent()    {}
func (Noted) isCounterEvent()       {}

type counterState struct {
	Count  int `json:"count"`
	Events int `json:"events"`
}

var errTooMany = errors.New("too many at once")

var counterDecider = decider.Decider[counterCmd, counterEvent, counterState]{
	Decide: func(c counterCmd, s counterState) ([]counterEvent, error) {
		switch c.Op {
		case "", "inc":
			by := c.By
			if by == 0 {
				by = 1
			}
			return []counterEvent{Incremented{By: by}}, nil
		case "inc2":
			return []counterEvent{Incremented{By: 1}, Incremented{By: 1}}, nil
		case "noop":
			return nil, nil
		case "reject":
			return nil, errTooMany
		case "panic":
			panic("decide exploded")
		case "poison":
			return []counterEvent{Poisoned{}}, nil
		case "note":
			return []counterEvent{Noted{Text: c.Text}}, nil
		}
		return nil, errors.New("unknown op " + c.Op)
	},
	Evolve: func(s counterState, e counterEvent) counterState {
		switch e := e.(type) {
		case Incremented:
			s.Count += e.By
		case Poisoned:
			panic("evolve exploded")
		}
		s.Events++
		return s
	},
	InitialState: func() counterState { return counterState{} },
}

func newCodec() *store.JSONCodec {
	return store.NewJSONCodec().MustRegister("Incremented", Incremented{}).MustRegister("Poisoned", Poisoned{}).MustRegister("Noted", Noted{})
}

func counterKind() actor.Kind[counterCmd, counterEvent, counterState] {
	return actor.Kind[counterCmd, counterEvent, counterState]{
		Name:    "counter",
		Decider: counterDecider,
		Route: func(c counterCmd) (string, store.StreamID) {
			return c.Tenant, store.StreamID(c.Stream)
		},
		Codec: newCodec(),
	}
}

type counterAgg = actor.Aggregate[counterCmd, counterEvent, counterState]

// startHost creates, registers and starts a host on st; Stop runs at
// cleanup and must succeed.
func startHost(t testing.TB, st store.EventStore, cfg actor.Config, kind ...actor.Kind[counterCmd, counterEvent, counterState]) (*actor.Host, *counterAgg) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	h, err := actor.New(st, &cfg)
	require.NoError(t, err)
	k := counterKind()
	if len(kind) > 0 {
		k = kind[0]
	}
	agg, err := actor.Register(h, k)
	require.NoError(t, err)
	require.NoError(t, h.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Stop(ctx); err != nil {
			t.Errorf("stop host: %v", err)
		}
	})
	return h, agg
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelError + 1}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitGroup waits for wg or fails the test after d (a hang).
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

// readAll reads a whole stream from st.
func readAll(t testing.TB, st store.EventStore, tenant, stream string) []store.Event {
	t.Helper()
	res, err := st.ReadStream(context.Background(), store.StreamID(stream), store.ReadOptions{Partition: tenant})
	require.NoError(t, err)
	return res.Events
}

// wrapStore wraps a memory store to count appends and inject behaviour.
type wrapStore struct {
	*memory.Store
	appends atomic.Int64 // calls to AppendToStream
	reads   atomic.Int64 // calls to ReadStream

	mu       sync.Mutex
	onAppend func(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error, bool)
	log      []appendCall
}

type appendCall struct {
	stream   store.StreamID
	events   int
	expected store.ExpectedVersion
	err      error
}

func newWrapStore() *wrapStore { return &wrapStore{Store: memory.New()} }

// setOnAppend installs a hook; when it returns handled=true its result is
// the append's, otherwise the inner store is called.
func (w *wrapStore) setOnAppend(f func(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error, bool)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onAppend = f
}

func (w *wrapStore) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	w.appends.Add(1)
	w.mu.Lock()
	hook := w.onAppend
	w.mu.Unlock()
	var (
		res     store.AppendResult
		err     error
		handled bool
	)
	if hook != nil {
		res, err, handled = hook(ctx, stream, events, opts)
	}
	if !handled {
		res, err = w.Store.AppendToStream(ctx, stream, events, opts)
	}
	w.mu.Lock()
	w.log = append(w.log, appendCall{stream: stream, events: len(events), expected: opts.ExpectedVersion, err: err})
	w.mu.Unlock()
	return res, err
}

// AppendBatch sends each part through AppendToStream, so hooks and the
// log see every stream's append.
func (w *wrapStore) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	out := make([]store.StreamAppendResult, len(appends))
	for i, a := range appends {
		out[i].Result, out[i].Err = w.AppendToStream(ctx, a.Stream, a.Events, a.Options)
	}
	return out, nil
}

func (w *wrapStore) ReadStream(ctx context.Context, stream store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	w.reads.Add(1)
	return w.Store.ReadStream(ctx, stream, opts)
}

func (w *wrapStore) calls() []appendCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]appendCall(nil), w.log...)
}

// delayAppends makes every append take d (simulated network latency),
// honouring ctx.
func delayAppends(d time.Duration) func(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error, bool) {
	return func(ctx context.Context, _ store.StreamID, _ []store.EventData, _ store.AppendOptions) (store.AppendResult, error, bool) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return store.AppendResult{}, nil, false
		case <-ctx.Done():
			return store.AppendResult{}, ctx.Err(), true
		}
	}
}
