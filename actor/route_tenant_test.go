package actor_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store"
)

// A Route that leaves the tenant empty sends the command to the tenant of
// Send's context (store.WithTenant), else to store.DefaultPartition; a
// tenant Route names wins; State resolves an empty tenant the same way.
func TestRouteTenantFromContext(t *testing.T) {
	t.Parallel()
	st := pgStores(t, 1)[0]
	_, agg := startHost(t, st, actor.Config{})
	bg := context.Background()
	acme := store.WithTenant(bg, "acme")
	globex := store.WithTenant(bg, "globex")

	res, err := agg.Send(acme, counterCmd{Stream: "a", By: 3})
	require.NoError(t, err)
	require.Equal(t, store.Version(1), res.Version)
	_, err = agg.Send(globex, counterCmd{Stream: "a", By: 5})
	require.NoError(t, err)
	_, err = agg.Send(bg, counterCmd{Stream: "a", By: 7})
	require.NoError(t, err)
	_, err = agg.Send(acme, counterCmd{Tenant: "globex", Stream: "a", By: 100})
	require.NoError(t, err, "the tenant Route names wins over the context's")

	require.Len(t, readAll(t, st, "acme", "a"), 1)
	require.Len(t, readAll(t, st, "globex", "a"), 2)
	require.Len(t, readAll(t, st, store.DefaultPartition, "a"), 1)

	for _, c := range []struct {
		ctx    context.Context
		tenant string
		want   int
	}{
		{acme, "", 3}, {globex, "", 105}, {bg, "", 7},
		{acme, "globex", 105}, {bg, "acme", 3}, {globex, store.DefaultPartition, 7},
	} {
		s, _, err := agg.State(c.ctx, c.tenant, "a")
		require.NoError(t, err)
		require.Equal(t, c.want, s.Count, "State(%v, %q)", c.ctx, c.tenant)
	}

	// An invalid tenant in the context is refused like one from Route:
	// nothing appended.
	bad := store.WithTenant(bg, "bad tenant;")
	_, err = agg.Send(bad, counterCmd{Stream: "a"})
	require.ErrorIs(t, err, store.ErrInvalidArgument)
	require.ErrorContains(t, err, `"bad tenant;"`)
	_, _, err = agg.State(bad, "", "a")
	require.ErrorIs(t, err, store.ErrInvalidArgument)
	_, err = agg.Send(bad, counterCmd{Tenant: "acme", Stream: "a"})
	require.NoError(t, err, "a tenant from Route never looks at the context's")
	require.Len(t, readAll(t, st, "acme", "a"), 2)
}

// Many goroutines, each sending with its own tenant in the context, never
// see another tenant's stream.
func TestRouteTenantFromContextConcurrent(t *testing.T) {
	t.Parallel()
	st := pgStores(t, 1)[0]
	_, agg := startHost(t, st, actor.Config{})
	const tenants, sends = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, tenants*sends)
	for i := range tenants {
		ctx := store.WithTenant(context.Background(), store.TenantID(fmt.Sprintf("t%d", i)))
		for range 2 {
			wg.Go(func() {
				for range sends / 2 {
					if _, err := agg.Send(ctx, counterCmd{Stream: "shared", By: i + 1}); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for i := range tenants {
		tenant := fmt.Sprintf("t%d", i)
		s, v, err := agg.State(store.WithTenant(context.Background(), store.TenantID(tenant)), "", "shared")
		require.NoError(t, err)
		require.Equal(t, sends*(i+1), s.Count, tenant)
		require.Equal(t, store.Version(sends), v, tenant)
		require.Len(t, readAll(t, st, tenant, "shared"), sends)
	}
	require.Empty(t, readAll(t, st, store.DefaultPartition, "shared"))
}
