package actor_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// gatedStore is a PostgreSQL store whose next append can be held at a
// gate, so that the commands sent meanwhile queue up in the stream actor
// and are decided and appended as one batch.
type gatedStore struct {
	*postgres.Store

	mu      sync.Mutex
	gate    chan struct{} // when set, the next append waits for it to close
	held    chan struct{} // closed once that append is waiting
	appends []int         // events of every append, in call order
}

func (g *gatedStore) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	g.mu.Lock()
	gate, held := g.gate, g.held
	g.gate, g.held = nil, nil
	g.appends = append(g.appends, len(events))
	g.mu.Unlock()
	if gate != nil {
		close(held)
		select {
		case <-gate:
		case <-ctx.Done():
			return store.AppendResult{}, ctx.Err()
		}
	}
	return g.Store.AppendToStream(ctx, stream, events, opts)
}

// hold makes the next append wait until release is called; held is
// closed when it waits.
func (g *gatedStore) hold() (held <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate, h := make(chan struct{}), make(chan struct{})
	g.gate, g.held = gate, h
	return h, func() { close(gate) }
}

func (g *gatedStore) appendSizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.appends...)
}

type sendReq struct {
	cmd  counterCmd
	opts actor.SendOptions
}

type sendOutcome struct {
	res actor.Result[counterEvent, counterState]
	err error
}

// sendBatch sends lead, holds its append, sends reqs concurrently and
// waits until all of them are queued in the stream actor, then lets the
// append go: reqs are decided and appended together, as one batch (up to
// MaxBatch). It returns lead's outcome and reqs' outcomes, in order.
func sendBatch(t *testing.T, h *actor.Host, agg *counterAgg, st *gatedStore, lead counterCmd, reqs []sendReq) (sendOutcome, []sendOutcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held, release := st.hold()
	var leadOut sendOutcome
	leadDone := make(chan struct{})
	go func() {
		defer close(leadDone)
		leadOut.res, leadOut.err = agg.Send(ctx, lead)
	}()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the lead command's append never started")
	}
	var delivered atomic.Int64
	actor.OnDelivered(h, func() { delivered.Add(1) })
	defer actor.OnDelivered(h, func() {})
	out := make([]sendOutcome, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].res, out[i].err = agg.Send(ctx, r.cmd, r.opts)
		}()
	}
	eventually(t, "the batch's commands to be queued", func() bool { return delivered.Load() >= int64(len(reqs)) })
	release()
	waitGroup(t, &wg, time.Minute, "the batch's commands")
	<-leadDone
	return leadOut, out
}

// pgGatedHost starts a host on a gated PostgreSQL store.
func pgGatedHost(t *testing.T, cfg actor.Config) (*actor.Host, *counterAgg, *gatedStore) {
	t.Helper()
	st := &gatedStore{Store: pgStores(t, 1)[0]}
	h, agg := startHost(t, st, cfg)
	return h, agg, st
}

// A command id applied long ago (outside the command-id window) re-sent in
// the same batch as fresh commands: the fresh ones are applied, the stale
// one is told it was already applied, and nobody else is told Duplicate.
func TestStaleCommandIDInBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, agg, st := pgGatedHost(t, actor.Config{CommandIDWindow: 2})
	cmd := counterCmd{Tenant: "acme", Stream: "stale"}
	for _, id := range []string{"old", "x", "y"} { // "old" leaves the window
		_, err := agg.Send(ctx, cmd, actor.SendOptions{CommandID: id})
		require.NoError(t, err)
	}

	lead, out := sendBatch(t, h, agg, st, cmd, []sendReq{
		{cmd: cmd, opts: actor.SendOptions{CommandID: "f1"}},
		{cmd: cmd, opts: actor.SendOptions{CommandID: "old"}},
		{cmd: counterCmd{Tenant: "acme", Stream: "stale", Op: "inc2"}, opts: actor.SendOptions{CommandID: "f2"}},
		{cmd: cmd},
	})
	require.NoError(t, lead.err)
	assert.Contains(t, st.appendSizes(), 5, "the four commands were appended as one batch")

	versions := map[store.Version]bool{}
	for i, o := range out {
		if i == 1 {
			require.Error(t, o.err, "the stale command")
			assert.ErrorIs(t, o.err, store.ErrDuplicateMessageID)
			assert.Contains(t, o.err.Error(), "already applied")
			continue
		}
		require.NoError(t, o.err, "fresh command %d", i)
		assert.False(t, o.res.Duplicate, "fresh command %d was told it was already applied", i)
		assert.False(t, versions[o.res.Version], "version %d given twice", o.res.Version)
		versions[o.res.Version] = true
	}
	evs := readAll(t, st, "acme", "stale")
	assert.Len(t, evs, 3+1+1+2+1, "the old commands, the lead and the fresh commands, once each")
	_, v, err := agg.State(ctx, "acme", "stale")
	require.NoError(t, err)
	assert.Equal(t, store.Version(len(evs)), v)
}

// An event that PostgreSQL's jsonb refuses (a string holding \u0000) in a
// batch: only its command fails, with an error saying what was refused;
// its batch mates are applied; nothing of it is written; the host keeps
// serving the stream.
func TestJSONBRejectedEventInBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, agg, st := pgGatedHost(t, actor.Config{})
	inc := counterCmd{Tenant: "acme", Stream: "nul"}
	bad := counterCmd{Tenant: "acme", Stream: "nul", Op: "note", Text: "a\x00b"}
	good := counterCmd{Tenant: "acme", Stream: "nul", Op: "note", Text: "fine"}

	lead, out := sendBatch(t, h, agg, st, inc, []sendReq{
		{cmd: inc}, {cmd: bad, opts: actor.SendOptions{CommandID: "bad"}}, {cmd: good}, {cmd: inc},
	})
	require.NoError(t, lead.err)
	assert.Contains(t, st.appendSizes(), 4, "the four commands were appended as one batch")
	for i, o := range out {
		if i == 1 {
			require.Error(t, o.err)
			assert.ErrorIs(t, o.err, store.ErrInvalidArgument)
			assert.NotErrorIs(t, o.err, actor.ErrOutcomeUnknown)
			assert.Contains(t, o.err.Error(), "Noted", "the error names the event")
			assert.Contains(t, strings.ToLower(o.err.Error()), `\u0000`, "the error names the problem")
			continue
		}
		require.NoError(t, o.err, "command %d", i)
		assert.False(t, o.res.Duplicate)
	}
	evs := readAll(t, st, "acme", "nul")
	require.Len(t, evs, 4, "the lead and the three good commands")
	for i, e := range evs {
		assert.Equal(t, store.Version(i+1), e.StreamPosition)
		assert.NotContains(t, string(e.Data), `\u0000`)
	}

	// The host keeps serving the stream, and the failed command may be
	// corrected and sent again under its id.
	r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "nul", Op: "note", Text: "ab"}, actor.SendOptions{CommandID: "bad"})
	require.NoError(t, err)
	assert.False(t, r.Duplicate)
	assert.Equal(t, store.Version(5), r.Version)
	s, v, err := agg.State(ctx, "acme", "nul")
	require.NoError(t, err)
	assert.Equal(t, store.Version(5), v)
	assert.Equal(t, 5, s.Events)
}
