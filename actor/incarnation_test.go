package actor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

// A stream archived and started again is a new stream: a cold activation
// does not start from the snapshot of the archived stream (at version 2,
// count 20) and fold the new stream's third event onto it.
func TestRecreatedStreamColdActivation(t *testing.T) {
	t.Parallel()
	for name, newStore := range map[string]func(t *testing.T) store.EventStore{
		"memory":   func(*testing.T) store.EventStore { return memory.New() },
		"postgres": func(t *testing.T) store.EventStore { return pgStores(t, 1)[0] },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := newStore(t)
			h1, a1 := startHost(t, st, actor.Config{}, snapshotKind(2))
			for range 2 {
				_, err := a1.Send(ctx, counterCmd{Tenant: "acme", Stream: "phoenix", By: 10})
				require.NoError(t, err)
			}
			require.NoError(t, h1.Stop(ctx), "Stop waits for the snapshot write")
			snap, ok, err := st.(store.SnapshotStore).LoadSnapshot(ctx, "acme", "phoenix", "counter")
			require.NoError(t, err)
			require.True(t, ok, "a snapshot at version 2")
			require.Equal(t, store.Version(2), snap.Version)

			require.NoError(t, st.ArchiveStream(ctx, "phoenix", store.ArchiveOptions{Partition: "acme"}))
			// The new stream is written by another host (no snapshots).
			h2, a2 := startHost(t, st, actor.Config{})
			for range 3 {
				_, err := a2.Send(ctx, counterCmd{Tenant: "acme", Stream: "phoenix", By: 1})
				require.NoError(t, err)
			}
			require.NoError(t, h2.Stop(ctx))

			_, a3 := startHost(t, st, actor.Config{}, snapshotKind(100))
			s, v, err := a3.State(ctx, "acme", "phoenix")
			require.NoError(t, err)
			require.Equal(t, store.Version(3), v)
			require.Equal(t, counterState{Count: 3, Events: 3}, s, "the state of the new stream only")
		})
	}
}

// plantedSnapshots is a memory store whose LoadSnapshot returns a fixed
// snapshot, as a store could hold from another incarnation.
type plantedSnapshots struct {
	*memory.Store
	snap store.Snapshot
}

func (p plantedSnapshots) LoadSnapshot(context.Context, string, store.StreamID, string) (store.Snapshot, bool, error) {
	return p.snap, true, nil
}

// A load ignores a snapshot whose incarnation is not the stream's, or is
// unknown, and folds the stream from its first event.
func TestSnapshotOfAnotherIncarnationIsIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	old, err := st.AppendToStream(ctx, "phoenix", []store.EventData{{Type: "Incremented", Data: json.RawMessage(`{"by":10}`)}}, store.AppendOptions{Partition: "acme"})
	require.NoError(t, err)
	require.NoError(t, st.ArchiveStream(ctx, "phoenix", store.ArchiveOptions{Partition: "acme"}))
	evs := make([]store.EventData, 3)
	for i := range evs {
		evs[i] = store.EventData{Type: "Incremented", Data: json.RawMessage(`{"by":1}`)}
	}
	recreated, err := st.AppendToStream(ctx, "phoenix", evs, store.AppendOptions{Partition: "acme"})
	require.NoError(t, err)

	for name, c := range map[string]struct {
		inc  store.Incarnation
		want counterState
	}{
		"old incarnation":     {old.Incarnation, counterState{Count: 3, Events: 3}},
		"unknown incarnation": {0, counterState{Count: 3, Events: 3}},
		"this incarnation":    {recreated.Incarnation, counterState{Count: 21, Events: 3}},
	} {
		t.Run(name, func(t *testing.T) {
			planted := plantedSnapshots{Store: st, snap: store.Snapshot{Partition: "acme", Stream: "phoenix", Name: "counter",
				Version: 2, State: json.RawMessage(`{"count":20,"events":2}`), Incarnation: c.inc}}
			_, agg := startHost(t, planted, actor.Config{}, snapshotKind(100))
			s, v, err := agg.State(ctx, "acme", "phoenix")
			require.NoError(t, err)
			require.Equal(t, store.Version(3), v)
			require.Equal(t, c.want, s)
		})
	}
}

// Must show: a cached actor whose stream was archived, and maybe started
// again shorter, as long or longer, by someone else, notices on its next
// command and starts over from the stream as it is now: it never folds the
// new stream's events onto its old state, never writes onto the new
// incarnation with its old version, and does not fail every command.
func TestCachedActorNoticesRecreatedStream(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "postgres"} {
		for _, recreated := range []int{-1, 2, 3, 5} { // -1: archived, not started again
			t.Run(fmt.Sprintf("%s/recreated=%d", backend, recreated), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				var st, other store.EventStore
				if backend == "memory" {
					st = memory.New()
					other = st
				} else {
					stores := pgStores(t, 2)
					st, other = stores[0], stores[1]
				}
				_, agg := startHost(t, st, actor.Config{IdleTimeout: -1})
				for range 3 {
					_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "phoenix", By: 100})
					require.NoError(t, err)
				}
				// Someone else archives the stream and maybe starts it again.
				require.NoError(t, other.ArchiveStream(ctx, "phoenix", store.ArchiveOptions{Partition: "acme"}))
				if recreated > 0 {
					events := make([]store.EventData, recreated)
					for i := range events {
						events[i] = store.EventData{Type: "Incremented", Data: []byte(`{"by":1}`)}
					}
					_, err := other.AppendToStream(ctx, "phoenix", events, store.AppendOptions{Partition: "acme", StreamType: "counter", ExpectedVersion: store.NoStream})
					require.NoError(t, err)
				}
				have := max(recreated, 0)
				res, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "phoenix", By: 1}, actor.SendOptions{ReturnState: true})
				require.NoError(t, err, "the cached actor serves the new stream")
				require.Equal(t, store.Version(have+1), res.Version)
				require.Equal(t, counterState{Count: have + 1, Events: have + 1}, res.State, "the state of the new stream only")
				events := readAll(t, st, "acme", "phoenix")
				require.Len(t, events, have+1)
				for i, e := range events {
					require.Equal(t, store.Version(i+1), e.StreamPosition)
					require.JSONEq(t, `{"by":1}`, string(e.Data))
				}
			})
		}
	}
}
