package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/store/storetest"
	"github.com/troupehq/troupe/tenancy"
)

// rlsEnv is a migrated database with row-level security enabled on the
// event tables, a pool of its owner and a pool of a non-owner application
// role.
type rlsEnv struct {
	owner, app *pgxpool.Pool
	// trips counts the statements and batches the application pool sends.
	trips *roundTrips
}

// newRLSEnv migrates a fresh database, creates tenants (each with its own
// partitions), enables row-level security and connects as an application
// role that owns nothing and has no BYPASSRLS.
func newRLSEnv(t testing.TB, tenants ...store.TenantID) rlsEnv {
	t.Helper()
	ctx := context.Background()
	owner := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, owner))
	mgr, err := tenancy.NewManager(owner, &tenancy.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	for _, id := range tenants {
		_, _, err := mgr.Create(ctx, id, "")
		require.NoError(t, err)
	}
	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, owner))

	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "troupe_app_" + hex.EncodeToString(b)
	ident := pgx.Identifier{role}.Sanitize()
	_, err = owner.Exec(ctx, `CREATE ROLE `+ident+` LOGIN PASSWORD 'app-secret' NOSUPERUSER NOBYPASSRLS;
		GRANT USAGE ON SCHEMA public TO `+ident+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+ident+`;
		GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO `+ident)
	require.NoError(t, err)
	cfg := owner.Config().Copy()
	cfg.ConnConfig.User = role
	cfg.ConnConfig.Password = "app-secret"
	cfg.MaxConns = 4
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		app.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := owner.Exec(ctx, `DROP OWNED BY `+ident+`; DROP ROLE `+ident)
		assert.NoError(t, err)
	})
	return rlsEnv{owner: owner, app: app, trips: trips}
}

func (e rlsEnv) store(t testing.TB, pool *pgxpool.Pool, rls bool) *postgres.Store {
	t.Helper()
	s, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RowLevelSecurity: rls})
	require.NoError(t, err)
	return s
}

// roundTrips is a pgx tracer counting single statements and batches
// (prepared-statement set-up, sent once per connection, is not counted).
type roundTrips struct {
	queries, batches atomic.Int64
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.queries.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.batches.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func (r *roundTrips) reset() { r.queries.Store(0); r.batches.Store(0) }

// rlsViolation reports whether err is PostgreSQL refusing a row under a
// row-level security policy.
func rlsViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// With the policies on and the application role, the store scoped per
// operation reaches each tenant's own rows and nothing of the other
// tenant's, even for the same stream id; without RowLevelSecurity the same
// role reaches nothing at all.
func TestRowLevelSecurity(t *testing.T) {
	t.Parallel()
	e := newRLSEnv(t, "tenant-a", "tenant-b")
	ctx := t.Context()
	es := e.store(t, e.app, true)
	a := store.AppendOptions{Partition: "tenant-a", StreamType: "cart"}
	b := store.AppendOptions{Partition: "tenant-b", StreamType: "cart"}

	ra, err := es.AppendToStream(ctx, "cart-1", withIDs("a", events("A", 2)), a)
	require.NoError(t, err)
	require.True(t, ra.CreatedNewStream)
	rb, err := es.AppendToStream(ctx, "cart-1", withIDs("b", events("B", 3)), b)
	require.NoError(t, err)
	require.True(t, rb.CreatedNewStream, "the same stream id in B is another stream")
	require.Equal(t, store.Version(3), rb.NextExpectedVersion)

	// Expected versions, conflicts and idempotent retries are per tenant.
	_, err = es.AppendToStream(ctx, "cart-1", events("A", 1), store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(3)})
	requireConflict(t, err, "cart-1", "tenant-a", store.Exact(3), 2, true)
	again, err := es.AppendToStream(ctx, "cart-1", withIDs("a", events("A", 2)), a)
	require.NoError(t, err, "an idempotent retry is answered under the policies too")
	require.Equal(t, ra, again)
	_, err = es.AppendToStream(ctx, "cart-1", events("A", 1), store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(2)})
	require.NoError(t, err)

	readA, err := es.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.Equal(t, store.Version(3), readA.CurrentVersion)
	for _, ev := range readA.Events {
		require.Equal(t, "A", ev.Type)
		require.Equal(t, "tenant-a", ev.Partition)
	}
	readB, err := es.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "tenant-b"})
	require.NoError(t, err)
	require.Len(t, readB.Events, 3)
	for _, ev := range readB.Events {
		require.Equal(t, "B", ev.Type)
	}

	// Read-all limited to a tenant returns that tenant's events only; the
	// application role reading every partition sees nothing (it is not
	// scoped), while the owner sees both tenants.
	waitFor(t, "the global log", func() bool {
		res, err := e.store(t, e.owner, false).ReadAll(ctx, store.ReadAllOptions{})
		require.NoError(t, err)
		return len(res.Events) == 6
	})
	// Each read waits too: a read that saw events may briefly not see
	// them again (another database's older transaction that finishes
	// during the read counts as in flight for it).
	for _, tenant := range []string{"tenant-a", "tenant-b"} {
		waitFor(t, tenant+"'s events in the global log", func() bool {
			res, err := es.ReadAll(ctx, store.ReadAllOptions{Partition: tenant})
			require.NoError(t, err)
			require.LessOrEqual(t, len(res.Events), 3)
			for _, ev := range res.Events {
				require.Equal(t, tenant, ev.Partition)
			}
			return len(res.Events) == 3
		})
	}
	unscoped, err := es.ReadAll(ctx, store.ReadAllOptions{})
	require.NoError(t, err)
	require.Empty(t, unscoped.Events, "an unscoped read by the application role fails closed")

	// Snapshots and archiving.
	snap := store.Snapshot{Partition: "tenant-a", Stream: "cart-1", Name: "cart", Version: 3, State: json.RawMessage(`{"n":3}`)}
	require.NoError(t, es.SaveSnapshot(ctx, snap))
	got, ok, err := es.LoadSnapshot(ctx, "tenant-a", "cart-1", "cart")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, store.Version(3), got.Version)
	_, ok, err = es.LoadSnapshot(ctx, "tenant-b", "cart-1", "cart")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, es.ArchiveStream(ctx, "cart-1", store.ArchiveOptions{Partition: "tenant-b"}))
	readB, err = es.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "tenant-b"})
	require.NoError(t, err)
	require.False(t, readB.StreamExists)
	readA, err = es.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.True(t, readA.StreamExists, "archiving B's stream leaves A's alone")

	// The same role without the store's scoping: the policies refuse
	// every write and hide every row.
	plain := e.store(t, e.app, false)
	_, err = plain.AppendToStream(ctx, "cart-2", events("A", 1), a)
	require.True(t, rlsViolation(err), "want a row-level security violation, got %v", err)
	res, err := plain.ReadStream(ctx, "cart-1", store.ReadOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.False(t, res.StreamExists)
	allA, err := plain.ReadAll(ctx, store.ReadAllOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.Empty(t, allA.Events)
	_, ok, err = plain.LoadSnapshot(ctx, "tenant-a", "cart-1", "cart")
	require.NoError(t, err)
	require.False(t, ok)
}

// In a caller's transaction, each operation scopes the transaction to its
// partition, and raw SQL that follows sees only that tenant's rows.
func TestRowLevelSecurityInTransaction(t *testing.T) {
	t.Parallel()
	e := newRLSEnv(t, "tenant-a", "tenant-b")
	ctx := t.Context()
	es := e.store(t, e.app, true)
	_, err := es.AppendToStream(ctx, "s", events("A", 2), store.AppendOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	_, err = es.AppendToStream(ctx, "s", events("B", 3), store.AppendOptions{Partition: "tenant-b"})
	require.NoError(t, err)

	tx, err := e.app.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	txs := es.WithTx(tx)
	res, err := txs.AppendToStream(ctx, "s", events("A", 1), store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(2)})
	require.NoError(t, err)
	require.Equal(t, store.Version(3), res.NextExpectedVersion)
	var n int
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n))
	require.Equal(t, 3, n, "the transaction sees tenant A's rows only, its own append included")
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM messages WHERE partition = 'tenant-b'`).Scan(&n))
	require.Zero(t, n)
	tag, err := tx.Exec(ctx, `UPDATE messages SET message_type = 'hacked' WHERE partition = 'tenant-b'`)
	require.NoError(t, err)
	require.Zero(t, tag.RowsAffected())

	// ReadAll without a partition inside the transaction reads as the
	// tenant the transaction is scoped to.
	waitFor(t, "tenant A's committed events", func() bool {
		all, err := txs.ReadAll(ctx, store.ReadAllOptions{})
		require.NoError(t, err)
		for _, ev := range all.Events {
			require.Equal(t, "tenant-a", ev.Partition)
		}
		return len(all.Events) == 2 // the uncommitted third is not in the global log yet
	})

	// A session on the transaction (a savepoint) scopes it the same way.
	err = txs.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
		r, err := s.ReadStream(ctx, "s", store.ReadOptions{Partition: "tenant-b"})
		require.NoError(t, err)
		require.Len(t, r.Events, 3)
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n))
	require.Equal(t, 3, n, "now scoped to tenant B, which has 3 events")
	_, err = tx.Exec(ctx, `INSERT INTO streams (stream_id, stream_position, partition, stream_type) VALUES ('t', 1, 'tenant-a', 'x')`)
	require.True(t, rlsViolation(err), "want a row-level security violation, got %v", err)
}

// A store session (WithSession on the pool) scopes its transaction per
// operation and commits.
func TestRowLevelSecuritySession(t *testing.T) {
	t.Parallel()
	e := newRLSEnv(t, "tenant-a")
	ctx := t.Context()
	es := e.store(t, e.app, true)
	err := es.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
		if _, err := s.AppendToStream(ctx, "s", events("A", 1), store.AppendOptions{Partition: "tenant-a"}); err != nil {
			return err
		}
		_, err := s.AppendToStream(ctx, "s", events("U", 1), store.AppendOptions{Partition: "unregistered"})
		return err
	})
	require.NoError(t, err)
	for partition, want := range map[string]int{"tenant-a": 1, "unregistered": 1} {
		var n int
		require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM messages WHERE partition = $1`, partition).Scan(&n))
		require.Equal(t, want, n, partition)
	}
}

// With RowLevelSecurity off an append is one statement and nothing else;
// with it on, one batch and nothing else: the same one round trip.
func TestRowLevelSecurityRoundTrips(t *testing.T) {
	t.Parallel()
	e := newRLSEnv(t)
	ctx := t.Context()
	for _, rls := range []bool{false, true} {
		pool := e.app
		if !rls {
			// The owner is not filtered, so the unscoped store works on
			// it; route it through the counting tracer too.
			cfg := e.owner.Config().Copy()
			cfg.ConnConfig.Tracer = e.trips
			p, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(p.Close)
			pool = p
		}
		es := e.store(t, pool, rls)
		version := store.Version(0)
		stream := store.StreamID("rt-" + map[bool]string{false: "off", true: "on"}[rls])
		for i := range 3 {
			e.trips.reset()
			res, err := es.AppendToStream(ctx, stream, events("E", 1), store.AppendOptions{Partition: "tenant-x", ExpectedVersion: store.Exact(version)})
			require.NoError(t, err)
			version = res.NextExpectedVersion
			if rls {
				assert.Equal(t, [2]int64{0, 1}, [2]int64{e.trips.queries.Load(), e.trips.batches.Load()}, "append %d with RLS: (statements, batches)", i)
			} else {
				assert.Equal(t, [2]int64{1, 0}, [2]int64{e.trips.queries.Load(), e.trips.batches.Load()}, "append %d without RLS: (statements, batches)", i)
			}
		}
	}
}

// rlsConformanceStore is the store of a deployment with row-level
// security: partition-scoped operations run as the application role with
// RowLevelSecurity on; reading the whole global log (cross-tenant work)
// runs as the owner.
type rlsConformanceStore struct {
	*postgres.Store
	owner *postgres.Store
}

func (s rlsConformanceStore) ReadAll(ctx context.Context, o store.ReadAllOptions) (store.ReadAllResult, error) {
	if o.Partition == "" {
		return s.owner.ReadAll(ctx, o)
	}
	return s.Store.ReadAll(ctx, o)
}

func TestConformanceRowLevelSecurity(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.EventStore {
		e := newRLSEnv(t)
		return rlsConformanceStore{Store: e.store(t, e.app, true), owner: e.store(t, e.owner, false)}
	})
}
