package tenancy_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/tenancy"
)

// TestDropUnderLoadOfAnotherTenant drops tenant A while tenant B appends,
// reads its streams and reads its part of the global log without pause: B
// sees no error and loses nothing, A's data is gone, tenant C is untouched.
func TestDropUnderLoadOfAnotherTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	for _, id := range []store.TenantID{"tenant-a", "tenant-b", "tenant-c"} {
		e.create(t, id)
	}
	for i := range 20 {
		e.append(t, "tenant-a", store.StreamID(fmt.Sprintf("a-%d", i%5)), event("E", i))
		e.append(t, "tenant-c", store.StreamID(fmt.Sprintf("c-%d", i%5)), event("E", i))
	}
	_, err := e.pool.Exec(ctx, `INSERT INTO subscriptions (subscription_id, partition) VALUES ('p', 'tenant-a'), ('p', 'tenant-c')`)
	require.NoError(t, err)
	cBefore := count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = 'tenant-c'`)

	const workers = 4
	var (
		appended atomic.Int64
		maxNanos atomic.Int64
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		errs     = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := store.StreamID(fmt.Sprintf("b-%d", w))
			var version store.Version
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				res, err := e.store.AppendToStream(ctx, stream, []store.EventData{event("E", i)},
					store.AppendOptions{Partition: "tenant-b", ExpectedVersion: store.Exact(version)})
				if err == nil && i%4 == 0 {
					var rs store.ReadResult
					rs, err = e.store.ReadStream(ctx, stream, store.ReadOptions{Partition: "tenant-b", From: version + 1})
					if err == nil && len(rs.Events) != 1 {
						err = fmt.Errorf("read %d events after version %d, want 1", len(rs.Events), version)
					}
				}
				if err == nil && i%8 == 0 {
					_, err = e.store.ReadAll(ctx, store.ReadAllOptions{Partition: "tenant-b", Limit: 10})
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d, op %d: %w", w, i, err)
					return
				}
				if d := time.Since(start).Nanoseconds(); d > maxNanos.Load() {
					maxNanos.Store(d)
				}
				version = res.NextExpectedVersion
				appended.Add(1)
			}
		}()
	}
	failed := func() bool { return len(errs) > 0 }
	waitFor(t, "tenant B under load", func() bool { return appended.Load() >= 100 || failed() })

	start := time.Now()
	dropErr := e.mgr.Drop(ctx, "tenant-a")
	dropTook := time.Since(start)
	afterDrop := appended.Load()
	waitFor(t, "tenant B to go on after the drop", func() bool { return appended.Load() >= afterDrop+100 || failed() })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "tenant B")
	}
	require.NoError(t, dropErr)
	t.Logf("drop took %v; slowest tenant B operation %v over %d appends", dropTook, time.Duration(maxNanos.Load()), appended.Load())

	// A is gone, everywhere.
	for _, table := range []string{"messages", "streams", "subscriptions"} {
		assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM `+table+` WHERE partition = 'tenant-a'`), table)
	}
	parts, err := e.mgr.Partitions(ctx, "tenant-a")
	require.NoError(t, err)
	assert.Empty(t, parts)
	_, err = e.mgr.Get(ctx, "tenant-a")
	assert.ErrorIs(t, err, tenancy.ErrTenantNotFound)

	// B has every event it appended, in its partition.
	total := appended.Load()
	assert.Equal(t, map[string]int{mustName(t, "messages", "tenant-b"): int(total)}, rowTables(t, e.pool, "messages", "tenant-b"))
	assert.Equal(t, int(total), count(t, e.pool, `SELECT coalesce(sum(stream_position), 0) FROM streams WHERE partition = 'tenant-b'`))

	// Nothing else changed.
	assert.Equal(t, cBefore, count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = 'tenant-c'`))
	assert.Equal(t, 1, count(t, e.pool, `SELECT count(*) FROM subscriptions WHERE partition = 'tenant-c'`))
	_, err = e.mgr.Get(ctx, "tenant-c")
	assert.NoError(t, err)
}
