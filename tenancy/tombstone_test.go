package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// storedRows counts tenant's rows in every table of the schema with a
// partition column, DEFAULT partitions included (each counted through
// ONLY, so a partition's rows are counted once, where they are stored).
func storedRows(t testing.TB, pool *pgxpool.Pool, tenant store.TenantID) map[string]int {
	t.Helper()
	ctx := testContext(t)
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'partition' AND NOT a.attisdropped
		WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	out := map[string]int{}
	for _, tb := range tables {
		n := count(t, pool, `SELECT count(*) FROM ONLY `+pgx.Identifier{tb}.Sanitize()+` WHERE partition = $1`, string(tenant))
		if n > 0 {
			out[tb] = n
		}
	}
	return out
}

func TestDropRefusesLaterWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	for _, id := range []store.TenantID{"acme", "globex"} {
		e.create(t, id)
		e.append(t, id, "cart-1", event("Added", 1), event("Added", 2))
		require.NoError(t, e.store.SaveSnapshot(ctx, store.Snapshot{Partition: string(id), Stream: "cart-1", Name: "cart", Version: 2, State: []byte(`{}`)}))
	}
	require.NotEmpty(t, storedRows(t, e.pool, "acme"))

	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	assert.Empty(t, storedRows(t, e.pool, "acme"))

	// Every way an append can name the stream: each is refused, as a
	// dropped tenant, and writes nothing anywhere (DEFAULT partitions
	// included).
	for _, exp := range []store.ExpectedVersion{store.Any, store.NoStream, store.Exact(2), store.StreamExists} {
		_, err := e.store.AppendToStream(ctx, "cart-1", []store.EventData{event("Added", 3)},
			store.AppendOptions{Partition: "acme", StreamType: "test", ExpectedVersion: exp})
		require.ErrorIs(t, err, store.ErrTenantDropped, "expected version %s", exp)
		assert.NotErrorIs(t, err, store.ErrInvalidArgument, "expected version %s", exp)
	}
	err := e.store.SaveSnapshot(ctx, store.Snapshot{Partition: "acme", Stream: "cart-1", Name: "cart", Version: 3, State: []byte(`{}`)})
	require.Error(t, err, "an aggregate snapshot of a dropped tenant")
	_, err = e.pool.Exec(ctx, `INSERT INTO subscriptions (subscription_id, partition, version) VALUES ('p', 'acme', 1)`)
	require.Error(t, err, "a checkpoint of a dropped tenant")
	assert.Empty(t, storedRows(t, e.pool, "acme"))

	res, err := e.store.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "acme"})
	require.NoError(t, err)
	assert.False(t, res.StreamExists)
	parts, err := e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	assert.Empty(t, parts, "tombstones are not partitions of the tenant")

	// The other tenant writes on.
	e.append(t, "globex", "cart-1", event("Added", 3))
	assert.Equal(t, 3, count(t, e.pool, `SELECT count(*) FROM messages WHERE partition = 'globex'`))

	// Dropping again changes nothing and takes no table lock.
	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	_, err = e.store.AppendToStream(ctx, "cart-1", []store.EventData{event("Added", 3)}, store.AppendOptions{Partition: "acme"})
	require.ErrorIs(t, err, store.ErrTenantDropped)

	// Created again, the tenant is a new tenant: its streams start over.
	e.create(t, "acme")
	r := e.append(t, "acme", "cart-1", event("Added", 1))
	assert.Equal(t, store.Version(1), r.NextExpectedVersion)
	assert.True(t, r.CreatedNewStream)
	assert.Equal(t, map[string]int{mustName(t, "messages", "acme"): 1}, rowTables(t, e.pool, "messages", "acme"))
	parts, err = e.mgr.Partitions(ctx, "acme")
	require.NoError(t, err)
	tables, err := e.mgr.Tables(ctx)
	require.NoError(t, err)
	assert.Len(t, parts, len(tables))
}

func TestDropOfAnUnknownTenantRefusesItsWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	e.append(t, "ghost", "s1", event("E", 1)) // never created: DEFAULT partitions
	require.NoError(t, e.mgr.Drop(ctx, "ghost"))
	_, err := e.store.AppendToStream(ctx, "s1", []store.EventData{event("E", 2)}, store.AppendOptions{Partition: "ghost"})
	require.ErrorIs(t, err, store.ErrTenantDropped)
	assert.Empty(t, storedRows(t, e.pool, "ghost"))
	// Writes that name no partition go on into the DEFAULT partitions.
	_, err = e.store.AppendToStream(ctx, "s1", []store.EventData{event("E", 3)}, store.AppendOptions{})
	require.NoError(t, err)
}

// TestDropIsSeenByAnotherProcess: a second pool (another process) keeps
// writing the tenant after the first one dropped it; its writes fail.
func TestDropIsSeenByAnotherProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	other, err := pgxpool.New(ctx, e.pool.Config().ConnString())
	require.NoError(t, err)
	t.Cleanup(other.Close)
	otherStore, err := postgres.New(other, nil)
	require.NoError(t, err)

	e.create(t, "acme")
	appendOther := func(exp store.ExpectedVersion) error {
		_, err := otherStore.AppendToStream(ctx, "cart-1", []store.EventData{event("Added", 1)},
			store.AppendOptions{Partition: "acme", StreamType: "test", ExpectedVersion: exp})
		return err
	}
	require.NoError(t, appendOther(store.NoStream))
	require.NoError(t, appendOther(store.Exact(1))) // the other pool's prepared statements are warm
	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	require.ErrorIs(t, appendOther(store.Exact(2)), store.ErrTenantDropped)
	require.ErrorIs(t, appendOther(store.Any), store.ErrTenantDropped)
	assert.Empty(t, storedRows(t, e.pool, "acme"))
}

// TestTombstonesUnderRowLevelSecurity: a tombstone gets the tenant policy
// like any partition, so the catalogue check stays empty.
func TestTombstonesUnderRowLevelSecurity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, e.pool))
	e.create(t, "acme")
	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	unprotected, err := postgres.UnprotectedTenantTables(ctx, e.pool)
	require.NoError(t, err)
	assert.Empty(t, unprotected)
}

// TestDropWithAForeignPartition: a partition Troupe did not create covers
// the tenant's value in one table; Drop deletes its rows there as before
// and guards the other tables.
func TestDropWithAForeignPartition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testContext(t)
	_, err := e.pool.Exec(ctx, `CREATE TABLE foreign_subs PARTITION OF subscriptions FOR VALUES IN ('acme', 'other')`)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `INSERT INTO subscriptions (subscription_id, partition, version) VALUES ('p', 'acme', 1)`)
	require.NoError(t, err)
	require.NoError(t, e.mgr.Drop(ctx, "acme"))
	assert.Zero(t, count(t, e.pool, `SELECT count(*) FROM subscriptions WHERE partition = 'acme'`))
	_, err = e.store.AppendToStream(ctx, "s", []store.EventData{event("E", 1)}, store.AppendOptions{Partition: "acme"})
	require.ErrorIs(t, err, store.ErrTenantDropped)
}

// TestDropAndCreateInATransaction: a Manager on the caller's transaction
// runs in savepoints; the tombstone's own savepoint nests in them.
func TestDropAndCreateInATransaction(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := testContext(t)
	require.NoError(t, postgres.Migrate(ctx, pool))
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		mgr, err := tenancy.NewManager(tx, nil)
		if err != nil {
			return err
		}
		if _, _, err := mgr.Create(ctx, "acme", ""); err != nil {
			return err
		}
		if err := mgr.Drop(ctx, "acme"); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO streams (stream_id, partition, stream_type, stream_position) VALUES ('s', 'acme', '', 1)`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.ConstraintName != "troupe_tenant_dropped" {
			return fmt.Errorf("a write of the dropped tenant: got %v, want the tombstone's check violation", err)
		}
		return context.Canceled // roll back
	})
	require.ErrorIs(t, err, context.Canceled)
}
