package tenancy_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/tenancy"
)

var eventTables = []string{"streams", "messages", "aggregate_snapshots", "subscriptions"}

func TestNewManagerValidatesConfig(t *testing.T) {
	t.Parallel()
	var cfgErr *tenancy.ConfigError
	_, err := tenancy.NewManager(nil, nil)
	require.ErrorContains(t, err, "db is nil")

	pool := newEnv(t, nil).pool
	m, err := tenancy.NewManager(pool, nil)
	require.NoError(t, err, "nil config means every default")
	require.NotNil(t, m)
	for field, cfg := range map[string]tenancy.Config{
		"LockTimeout":       {LockTimeout: -1},
		"Retry.MaxAttempts": {Retry: retry.Policy{MaxAttempts: -1}},
		"Tables[1]":         {Tables: []string{"carts", "a.b.c"}},
	} {
		_, err := tenancy.NewManager(pool, &cfg)
		require.ErrorAs(t, err, &cfgErr, field)
		assert.Equal(t, field, cfgErr.Field)
		assert.ErrorIs(t, err, tenancy.ErrInvalidConfig)
		assert.Contains(t, err.Error(), "tenancy.Config."+field+": ")
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)

	tables, err := e.mgr.Tables(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(tables), 4)
	assert.Equal(t, []string{"public.streams", "public.messages", "public.aggregate_snapshots", "public.subscriptions"}, tables[:4],
		"event tables first, in lock order")
	assert.Contains(t, tables, "public.projection_dead_letters", "tables partitioned by LIST (partition) are discovered")
	assert.NotContains(t, tables, "public.tenants")

	_, err = e.mgr.Get(ctx, "acme")
	assert.ErrorIs(t, err, tenancy.ErrTenantNotFound)

	acme, created, err := e.mgr.Create(ctx, "acme", "Acme Inc.")
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, store.TenantID("acme"), acme.ID)
	assert.Equal(t, "Acme Inc.", acme.Name)
	assert.False(t, acme.Created.IsZero())

	parts, err := e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	require.Len(t, parts, len(tables))
	for i, p := range parts {
		assert.Equal(t, tables[i], p.Schema+"."+p.Table)
		assert.Equal(t, mustName(t, p.Table, "acme"), p.Name)
	}

	// Idempotent: same tenant, original name and time kept, nothing new.
	again, created, err := e.mgr.Create(ctx, "acme", "Another name")
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, acme, again)
	parts2, err := e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, parts, parts2)

	_, _, err = e.mgr.Create(ctx, "globex", "")
	require.NoError(t, err)
	list, err := e.mgr.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, acme, list[0])
	assert.Equal(t, store.TenantID("globex"), list[1].ID)
	got, err := e.mgr.Get(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, acme, got)

	// Data lands in the tenant's own partitions.
	e.append(t, "acme", "cart-1", event("Added", 1), event("Added", 2))
	e.append(t, "globex", "cart-1", event("Added", 3))
	assert.Equal(t, map[string]int{mustName(t, "messages", "acme"): 2}, rowTables(t, e.pool, "messages", "acme"))
	assert.Equal(t, map[string]int{mustName(t, "streams", "acme"): 1}, rowTables(t, e.pool, "streams", "acme"))

	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	_, err = e.mgr.Get(ctx, "acme")
	assert.ErrorIs(t, err, tenancy.ErrTenantNotFound)
	parts, err = e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	assert.Empty(t, parts)
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = 'acme'`))
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM pg_class WHERE relname LIKE '%_t_acme'`))
	res, err := e.store.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "acme"})
	require.NoError(t, err)
	assert.False(t, res.StreamExists)

	// Idempotent drop; the other tenant is untouched.
	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	require.NoError(t, e.mgr.Drop(ctx, "never-existed"))
	res, err = e.store.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "globex"})
	require.NoError(t, err)
	require.Len(t, res.Events, 1)
	list, err = e.mgr.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, store.TenantID("globex"), list[0].ID)

	// A dropped tenant can be created again, empty.
	_, created, err = e.mgr.Create(ctx, "acme", "Acme again")
	require.NoError(t, err)
	assert.True(t, created)
	res, err = e.store.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "acme"})
	require.NoError(t, err)
	assert.False(t, res.StreamExists)
}

func TestInvalidIDsAreRejectedBeforeSQL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	for _, id := range []store.TenantID{
		"x'); DROP TABLE messages; --",
		`x"; DROP TABLE messages; --`,
		"acme; DELETE FROM streams",
		"a b", "café", "日本", store.TenantID(strings.Repeat("a", 64)), "",
	} {
		_, _, err := e.mgr.Create(ctx, id, "evil")
		assert.ErrorIs(t, err, store.ErrInvalidTenantID, "Create(%q)", id)
		assert.ErrorIs(t, e.mgr.Drop(ctx, id), store.ErrInvalidTenantID, "Drop(%q)", id)
		_, err = e.mgr.Get(ctx, id)
		assert.ErrorIs(t, err, store.ErrInvalidTenantID, "Get(%q)", id)
		_, err = e.mgr.Partitions(ctx, id)
		assert.ErrorIs(t, err, store.ErrInvalidTenantID, "Partitions(%q)", id)
		_, err = e.store.AppendToStream(ctx, "s", []store.EventData{event("E", 1)}, store.AppendOptions{Partition: string(id)})
		if id != "" { // "" is the default partition for the store
			assert.ErrorIs(t, err, store.ErrInvalidArgument, "append to %q", id)
		}
	}
	// Nothing happened: every table is still there, nothing registered.
	for _, table := range eventTables {
		assert.Equal(t, 1, count(t, e.pool, `SELECT count(*) FROM pg_class WHERE relname = $1`, table), table)
	}
	list, err := e.mgr.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)
	// The registry refuses invalid ids even when written directly.
	_, err = e.pool.Exec(ctx, `INSERT INTO tenants (id) VALUES ('a b')`)
	assert.ErrorContains(t, err, "tenants_id_valid")
}

// TestTrickyIDsGetTheirOwnPartitions checks ids that the seed's naming
// mixed up, ids differing only in case, and 63-byte ids that share a long
// prefix (hashed names): each gets its own partitions and its rows land
// there.
func TestTrickyIDsGetTheirOwnPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	long := strings.Repeat("tenant_", 9)[:62]
	ids := []store.TenantID{
		"a-b", "a_b", "A-B", "a", "A", "a__b", "a_-b", "-", "_",
		store.TenantID(long + "x"), store.TenantID(long + "y"), store.TenantID(long + "X"),
		store.TenantID(strings.Repeat("Z", 63)),
	}
	for _, id := range ids {
		e.create(t, id)
	}
	for i, id := range ids {
		e.append(t, id, "same-stream", event("Created", i))
	}
	seen := map[string]store.TenantID{}
	for i, id := range ids {
		for _, table := range []string{"messages", "streams"} {
			want := mustName(t, table, id)
			assert.Equal(t, map[string]int{want: 1}, rowTables(t, e.pool, table, id), "%s rows of %q", table, id)
			if other, dup := seen[want]; dup {
				t.Fatalf("%q and %q share partition %s", other, id, want)
			}
			seen[want] = id
		}
		res, err := e.store.ReadStream(ctx, "same-stream", store.ReadOptions{Partition: string(id)})
		require.NoError(t, err)
		require.Len(t, res.Events, 1, "%q", id)
		assert.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), string(res.Events[0].Data), "%q reads its own event", id)
	}
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM messages_default`), "nothing fell through to DEFAULT")

	require.NoError(t, e.mgr.Drop(ctx, "a-b"))
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = 'a-b'`))
	assert.Equal(t, len(ids)-1, count(t, e.pool, `SELECT count(*) FROM messages`))
	assert.Equal(t, map[string]int{mustName(t, "messages", "a_b"): 1}, rowTables(t, e.pool, "messages", "a_b"))
}

func TestCreateMovesRowsOutOfTheDefaultPartition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	// Written before the tenant exists: DEFAULT partitions.
	first := e.append(t, "early", "s1", event("E", 1), event("E", 2))
	e.append(t, "early", "s2", event("E", 3))
	e.append(t, "bystander", "s1", event("E", 4))
	_, err := e.pool.Exec(ctx, `INSERT INTO subscriptions (subscription_id, partition, last_processed_position) VALUES ('sub', 'early', 7)`)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"messages_default": 3}, rowTables(t, e.pool, "messages", "early"))

	e.create(t, "early")

	assert.Equal(t, map[string]int{mustName(t, "messages", "early"): 3}, rowTables(t, e.pool, "messages", "early"))
	assert.Equal(t, map[string]int{mustName(t, "streams", "early"): 2}, rowTables(t, e.pool, "streams", "early"))
	assert.Equal(t, map[string]int{mustName(t, "subscriptions", "early"): 1}, rowTables(t, e.pool, "subscriptions", "early"))
	assert.Equal(t, map[string]int{"messages_default": 1}, rowTables(t, e.pool, "messages", "bystander"))

	// The moved rows are intact and the stream carries on.
	res, err := e.store.ReadStream(ctx, "s1", store.ReadOptions{Partition: "early"})
	require.NoError(t, err)
	require.Len(t, res.Events, 2)
	assert.Equal(t, first.LastGlobalPosition, res.Events[1].GlobalPosition)
	next, err := e.store.AppendToStream(ctx, "s1", []store.EventData{event("E", 5)},
		store.AppendOptions{Partition: "early", ExpectedVersion: store.Exact(2)})
	require.NoError(t, err)
	assert.Equal(t, store.Version(3), next.NextExpectedVersion)
	assert.Equal(t, 7, count(t, e.pool, `SELECT last_processed_position FROM subscriptions WHERE partition = 'early'`))
}

func TestDropDeletesLeftoversInDefaultPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	e.append(t, "ghost", "s1", event("E", 1)) // never created: DEFAULT partitions
	e.append(t, "bystander", "s1", event("E", 2))
	require.NoError(t, e.mgr.Drop(ctx, "ghost"))
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = 'ghost'`))
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM streams WHERE partition = 'ghost'`))
	assert.Equal(t, 1, count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = 'bystander'`))
}

func TestRegisteredTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	_, err := e.pool.Exec(ctx, `
		CREATE SCHEMA readmodels;
		CREATE TABLE readmodels."Carts" (partition text NOT NULL, cart_id text NOT NULL, total numeric NOT NULL DEFAULT 0,
			PRIMARY KEY (partition, cart_id)) PARTITION BY LIST (partition);
		CREATE TABLE readmodels.carts_default PARTITION OF readmodels."Carts" DEFAULT;
		CREATE TABLE readmodels.plain (partition text, x int);
		INSERT INTO readmodels."Carts" (partition, cart_id, total) VALUES ('acme', 'c0', 1);`)
	require.NoError(t, err)

	// acme exists first without the read model ...
	e.create(t, "acme")
	assert.Equal(t, map[string]int{"readmodels.carts_default": 1}, rowTables(t, e.pool, `readmodels."Carts"`, "acme"))

	// ... then the read model is registered: Create again adds (only) it and
	// moves the row that was in its DEFAULT partition.
	withCarts := newEnvOn(t, e.pool, &tenancy.Config{Tables: []string{"readmodels.Carts"}})
	tables, err := withCarts.mgr.Tables(ctx)
	require.NoError(t, err)
	assert.Contains(t, tables, "readmodels.Carts")
	_, created, err := withCarts.mgr.Create(ctx, "acme", "")
	require.NoError(t, err)
	assert.False(t, created)
	parts, err := withCarts.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	assert.Len(t, parts, len(tables))
	name := mustName(t, "Carts", "acme")
	assert.Equal(t, map[string]int{`readmodels."` + name + `"`: 1}, rowTables(t, e.pool, `readmodels."Carts"`, "acme"))
	_, err = e.pool.Exec(ctx, `INSERT INTO readmodels."Carts" (partition, cart_id) VALUES ('acme', 'c1')`)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{`readmodels."` + name + `"`: 2}, rowTables(t, e.pool, `readmodels."Carts"`, "acme"))

	require.NoError(t, withCarts.mgr.Drop(ctx, "acme"))
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM readmodels."Carts"`))

	for _, bad := range []string{"readmodels.plain", "readmodels.missing"} {
		m, err := tenancy.NewManager(e.pool, &tenancy.Config{Tables: []string{bad}})
		require.NoError(t, err)
		_, _, err = m.Create(ctx, "acme", "")
		assert.ErrorIs(t, err, tenancy.ErrNotPartitioned, bad)
	}
}

func TestCreateRefusesANameTakenByAnotherRelation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	squatter := mustName(t, "messages", "acme")
	_, err := e.pool.Exec(ctx, `CREATE TABLE `+squatter+` (x int)`)
	require.NoError(t, err)
	_, _, err = e.mgr.Create(ctx, "acme", "")
	require.ErrorIs(t, err, tenancy.ErrPartitionConflict)
	assert.Contains(t, err.Error(), squatter)
	// Nothing changed: no registry row, no partition of any table.
	_, err = e.mgr.Get(ctx, "acme")
	assert.ErrorIs(t, err, tenancy.ErrTenantNotFound)
	parts, err := e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	assert.Empty(t, parts)

	// A partition covering the tenant together with another value is not
	// Troupe's: refused too.
	_, err = e.pool.Exec(ctx, `CREATE TABLE odd PARTITION OF streams FOR VALUES IN ('x', 'y')`)
	require.NoError(t, err)
	_, _, err = e.mgr.Create(ctx, "x", "")
	assert.ErrorIs(t, err, tenancy.ErrPartitionConflict)
}

func TestConcurrentCreateOfOneTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	const n = 8
	var wg sync.WaitGroup
	createdCount := make(chan bool, n)
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, created, err := e.mgr.Create(ctx, "acme", "Acme")
			errs <- err
			createdCount <- created
		}()
	}
	wg.Wait()
	close(errs)
	close(createdCount)
	for err := range errs {
		require.NoError(t, err)
	}
	news := 0
	for c := range createdCount {
		if c {
			news++
		}
	}
	assert.Equal(t, 1, news, "exactly one Create registers the tenant")
	tables, err := e.mgr.Tables(ctx)
	require.NoError(t, err)
	parts, err := e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	assert.Len(t, parts, len(tables))
}

func TestConcurrentLifecycleOfManyTenants(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				id := store.TenantID(fmt.Sprintf("t%d-%d", w, i))
				if _, _, err := e.mgr.Create(ctx, id, ""); err != nil {
					errs <- err
					return
				}
				if _, err := e.store.AppendToStream(ctx, "s", []store.EventData{event("E", i)}, store.AppendOptions{Partition: string(id)}); err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					if err := e.mgr.Drop(ctx, id); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	list, err := e.mgr.List(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 12)
	assert.Equal(t, 12, count(t, e.pool, `SELECT count(*) FROM messages`))
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM messages_default`))
}

func TestBusyTablesReturnErrBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	e.create(t, "acme")
	impatient := newEnvOn(t, e.pool, &tenancy.Config{LockTimeout: 20 * time.Millisecond, Retry: retry.Policy{MaxAttempts: 2}})

	// A long transaction reading the event tables holds locks that
	// dropping (and creating) a partition must wait for.
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT count(*) FROM messages`)
	require.NoError(t, err)

	err = impatient.mgr.Drop(ctx, "acme")
	require.ErrorIs(t, err, tenancy.ErrBusy)
	_, _, err = impatient.mgr.Create(ctx, "globex", "")
	require.ErrorIs(t, err, tenancy.ErrBusy)
	// Nothing changed.
	_, err = e.mgr.Get(ctx, "acme")
	require.NoError(t, err)
	_, err = e.mgr.Get(ctx, "globex")
	require.True(t, errors.Is(err, tenancy.ErrTenantNotFound), "%v", err)

	require.NoError(t, tx.Rollback(ctx))
	require.NoError(t, impatient.mgr.Drop(ctx, "acme"))
	_, _, err = impatient.mgr.Create(ctx, "globex", "")
	require.NoError(t, err)
}
