package actor_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// EvictTenant passivates the tenant's actors only and waits for them: a
// stale cached state of the tenant is not served afterwards, and the other
// tenants' actors stay cached.
func TestEvictTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newWrapStore()
	h, agg := startHost(t, st, actor.Config{IdleTimeout: -1})
	for _, c := range []counterCmd{{Tenant: "acme", Stream: "a"}, {Tenant: "acme", Stream: "b"}, {Tenant: "globex", Stream: "a"}, {Stream: "a"}} {
		_, err := agg.Send(ctx, c)
		require.NoError(t, err)
	}
	require.Equal(t, 4, h.Stats().LiveActors)

	// Someone else writes acme/a behind the cached actor's back.
	_, err := st.Store.AppendToStream(ctx, "a", []store.EventData{{Type: "Incremented", Data: []byte(`{"by":10}`)}},
		store.AppendOptions{Partition: "acme"})
	require.NoError(t, err)
	s, _, err := agg.State(ctx, "acme", "a")
	require.NoError(t, err)
	require.Equal(t, 1, s.Count, "the cached state, before the eviction")

	require.NoError(t, h.EvictTenant(ctx, "acme"))
	stats := h.Stats()
	assert.Equal(t, 2, stats.LiveActors, "globex/a and default/a stay")
	assert.Zero(t, stats.Passivating, "EvictTenant waited for the actors to stop")
	assert.Equal(t, int64(2), stats.Passivations)

	s, v, err := agg.State(ctx, "acme", "a")
	require.NoError(t, err)
	assert.Equal(t, 11, s.Count, "loaded again from the store")
	assert.Equal(t, store.Version(2), v)
	_, err = agg.Send(ctx, counterCmd{Tenant: "globex", Stream: "a"})
	require.NoError(t, err)
	_, err = agg.Send(ctx, counterCmd{Stream: "a"})
	require.NoError(t, err)
	assert.Equal(t, int64(5), h.Stats().Activations, "only acme/a was activated again")

	require.NoError(t, h.EvictTenant(ctx, "nobody"))
	require.ErrorIs(t, h.EvictTenant(ctx, "bad tenant"), store.ErrInvalidArgument)
}

// tenantDB is a migrated database with a tenancy Manager and n event
// stores on n pools, as n processes would have.
func tenantDB(t *testing.T, n int) (*tenancy.Manager, []*postgres.Store) {
	t.Helper()
	ctx := context.Background()
	connString := pgtest.NewDatabase(t)
	stores := make([]*postgres.Store, n)
	var mgr *tenancy.Manager
	for i := range n {
		pool, err := pgxpool.New(ctx, connString)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		if i == 0 {
			require.NoError(t, postgres.Migrate(ctx, pool))
			mgr, err = tenancy.NewManager(pool, &tenancy.Config{Logger: quietLogger()})
			require.NoError(t, err)
		}
		stores[i], err = postgres.New(pool, &postgres.Config{Logger: quietLogger()})
		require.NoError(t, err)
	}
	return mgr, stores
}

// After a tenant is dropped, a cached actor of it - in this process or in
// another - can't write: its next command fails with store.ErrTenantDropped
// (not ErrOutcomeUnknown), writes nothing, and the actor's state is gone.
// Created again, the tenant starts from version 0.
func TestDroppedTenantRefusesCachedActors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mgr, st := tenantDB(t, 2)
	for _, id := range []store.TenantID{"acme", "globex"} {
		_, _, err := mgr.Create(ctx, id, "")
		require.NoError(t, err)
	}
	h1, agg1 := startHost(t, st[0], actor.Config{IdleTimeout: -1})
	h2, agg2 := startHost(t, st[1], actor.Config{IdleTimeout: -1})
	for range 3 {
		for _, agg := range []*counterAgg{agg1, agg2} {
			_, err := agg.Send(ctx, counterCmd{Tenant: "acme", Stream: "s1"})
			require.NoError(t, err)
		}
		_, err := agg1.Send(ctx, counterCmd{Tenant: "globex", Stream: "s1"})
		require.NoError(t, err)
		_, err = agg2.Send(ctx, counterCmd{Tenant: "acme", Stream: "s2"})
		require.NoError(t, err)
	}
	s, v, err := agg1.State(ctx, "acme", "s1")
	require.NoError(t, err)
	require.Positive(t, s.Count, "host 1's cached state (maybe behind host 2's last write)")
	require.Positive(t, v)

	require.NoError(t, mgr.Drop(ctx, "acme"))

	// This process: the cached actor's append is refused.
	_, err = agg1.Send(ctx, counterCmd{Tenant: "acme", Stream: "s1", Op: "inc2"})
	require.ErrorIs(t, err, store.ErrTenantDropped)
	require.NotErrorIs(t, err, actor.ErrOutcomeUnknown)
	s, v, err = agg1.State(ctx, "acme", "s1")
	require.NoError(t, err)
	assert.Equal(t, counterState{}, s, "the dropped tenant's state is not served")
	assert.Equal(t, store.Version(0), v)

	// The other process, whose actor of s1 is still cached too.
	_, err = agg2.Send(ctx, counterCmd{Tenant: "acme", Stream: "s1"})
	require.ErrorIs(t, err, store.ErrTenantDropped)
	// A cold activation of a dropped tenant's stream fails the same way.
	_, err = agg2.Send(ctx, counterCmd{Tenant: "acme", Stream: "new"})
	require.ErrorIs(t, err, store.ErrTenantDropped)

	res, err := st[0].ReadStream(ctx, "s1", store.ReadOptions{Partition: "acme"})
	require.NoError(t, err)
	assert.False(t, res.StreamExists, "nothing was written")
	all, err := st[0].ReadAll(ctx, store.ReadAllOptions{Partition: "acme", Limit: 100})
	require.NoError(t, err)
	assert.Empty(t, all.Events)

	// The other tenant is untouched.
	r, err := agg1.Send(ctx, counterCmd{Tenant: "globex", Stream: "s1"})
	require.NoError(t, err)
	assert.Equal(t, store.Version(4), r.Version)

	// Host 2 still caches acme/s2 at version 3: evicting the tenant drops it.
	before := h2.Stats().LiveActors
	require.NoError(t, h2.EvictTenant(ctx, "acme"))
	assert.Less(t, h2.Stats().LiveActors, before)

	// Created again: a new tenant whose streams start over, on both hosts.
	_, _, err = mgr.Create(ctx, "acme", "")
	require.NoError(t, err)
	for _, c := range []struct {
		agg    *counterAgg
		stream string
	}{{agg1, "s1"}, {agg2, "s2"}} {
		r, err = c.agg.Send(ctx, counterCmd{Tenant: "acme", Stream: c.stream}, actor.SendOptions{ReturnState: true})
		require.NoError(t, err, c.stream)
		assert.Equal(t, store.Version(1), r.Version, c.stream)
		assert.Equal(t, counterState{Count: 1, Events: 1}, r.State, c.stream)
	}
	assert.Zero(t, h1.Stats().Passivating)
}
