package actor_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store"
)

// Many senders waiting for a slot of a full cache, each for a stream of its
// own: the host passivates exactly one actor per new stream (no sender
// evicts on top of the evictions already under way), the cache ends full,
// and every command is answered.
func TestEvictionMakesExactlyTheRoomNeeded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const maxActors, senders = 4, 64
	st := newWrapStore()
	st.setOnAppend(delayAppends(time.Millisecond)) // passivations take a while
	h, agg := startHost(t, st, actor.Config{MaxActors: maxActors, IdleTimeout: -1})
	for i := range maxActors {
		_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: fmt.Sprintf("old%d", i)})
		require.NoError(t, err)
	}
	require.Equal(t, maxActors, h.Stats().LiveActors)

	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: fmt.Sprintf("new%d", i)})
			if assert.NoError(t, err, "sender %d", i) {
				assert.Equal(t, store.Version(1), r.Version)
			}
		}()
	}
	waitGroup(t, &wg, time.Minute, "senders")
	eventually(t, "passivations to finish", func() bool { return h.Stats().Passivating == 0 })

	s := h.Stats()
	t.Logf("%+v", s)
	assert.Equal(t, int64(maxActors+senders), s.Activations, "every stream activated once")
	assert.Equal(t, int64(senders), s.Passivations, "one passivation per new stream, no more")
	assert.Equal(t, maxActors, s.LiveActors, "the cache ends full")
	assert.LessOrEqual(t, s.PeakLiveActors, maxActors)
}
