package tenancy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/tenancy"
)

// store.DefaultPartition is a partition (single-tenant data, in the DEFAULT
// partitions), not a tenant: the Manager refuses to create or drop it,
// saying why and changing nothing, while the event store keeps writing and
// reading it.
func TestReservedTenantIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	e.append(t, store.DefaultPartition, "s1", event("E", 1), event("E", 2))
	e.create(t, "acme")

	_, _, err := e.mgr.Create(ctx, store.DefaultPartition, "Default")
	require.ErrorIs(t, err, tenancy.ErrReservedTenantID)
	assert.NotErrorIs(t, err, store.ErrInvalidTenantID, "it is a valid partition")
	assert.EqualError(t, err, `create tenant: reserved tenant id "default_partition": it is store.DefaultPartition, `+
		`the partition of single-tenant data (kept in the DEFAULT partitions), not a tenant`)
	err = e.mgr.Drop(ctx, store.DefaultPartition)
	require.ErrorIs(t, err, tenancy.ErrReservedTenantID)
	assert.ErrorContains(t, err, `drop tenant: reserved tenant id "default_partition"`)

	ts, err := e.mgr.List(ctx)
	require.NoError(t, err)
	require.Len(t, ts, 1)
	assert.Equal(t, store.TenantID("acme"), ts[0].ID)
	parts, err := e.mgr.Partitions(ctx, store.DefaultPartition)
	require.NoError(t, err)
	assert.Empty(t, parts, "no partitions were created for it")
	assert.Equal(t, 2, count(t, e.pool, `SELECT count(*) FROM messages_default WHERE partition = $1`, store.DefaultPartition),
		"its rows stay in the DEFAULT partition")

	// Only the exact id is reserved; ids that merely look alike are tenants
	// like any other, and their partitions never take a DEFAULT
	// partition's name.
	for _, id := range []store.TenantID{"default", "Default_Partition", "default_partition2", "_default"} {
		_, _, err := e.mgr.Create(ctx, id, "")
		require.NoError(t, err, id)
		for _, table := range []string{"messages", "streams", "projection_status"} {
			assert.NotEqual(t, table+"_default", mustName(t, table, id), id)
		}
		require.NoError(t, e.mgr.Drop(ctx, id), id)
	}
	assert.Equal(t, 2, count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = $1`, store.DefaultPartition))
}
