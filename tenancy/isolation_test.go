package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/store/shred"
	"github.com/troupehq/troupe/tenancy"
)

// Cross-tenant isolation through every public API: two tenants, each with
// its own partitions, using the same stream ids. Tenant B never sees tenant
// A's data, and both see their own data correctly.

const (
	tenantA store.TenantID = "tenant-a"
	tenantB store.TenantID = "tenant-b"
)

var quiet = slog.New(slog.DiscardHandler)

// newTwoTenants is a migrated database with a partitioned carts read model
// and tenants A and B (created after the read model, so each has a
// partition of it too).
func newTwoTenants(t *testing.T) env {
	t.Helper()
	e := newEnv(t, nil)
	_, err := e.pool.Exec(testContext(t), `
		CREATE TABLE carts (partition text NOT NULL, cart_id text NOT NULL, items int NOT NULL DEFAULT 0,
		                    PRIMARY KEY (partition, cart_id)) PARTITION BY LIST (partition);
		CREATE TABLE carts_default PARTITION OF carts DEFAULT;`)
	require.NoError(t, err)
	e.create(t, tenantA)
	e.create(t, tenantB)
	return e
}

// cartEvent is an event of the cart workload: its data names the tenant
// it was written for, so a leaked event is recognisable.
func cartEvent(typ string, tenant store.TenantID, qty int) store.EventData {
	data, _ := json.Marshal(map[string]any{"tenant": string(tenant), "qty": qty})
	return store.EventData{Type: typ, Data: data}
}

// writtenFor returns the tenant an event of the cart workload was written for.
func writtenFor(t *testing.T, e store.Event) string {
	t.Helper()
	var d struct{ Tenant string }
	require.NoError(t, json.Unmarshal(e.Data, &d), "event %s", e)
	return d.Tenant
}

// appendCarts writes the cart workload of both tenants, interleaved, into
// the same stream ids, ending with one of B's: A gets cart-1 (opened, 2
// items), cart-2 (opened); B gets cart-1 (opened, 5 items), cart-2
// (opened, 7 items). Message ids are the same in both tenants. It returns
// the position of each tenant's last event.
func appendCarts(t *testing.T, es store.EventStore) map[store.TenantID]store.Position {
	t.Helper()
	ctx := testContext(t)
	last := map[store.TenantID]store.Position{}
	steps := []struct {
		tenant store.TenantID
		stream store.StreamID
		events []store.EventData
	}{
		{tenantA, "cart-1", []store.EventData{cartEvent("CartOpened", tenantA, 0), cartEvent("ItemAdded", tenantA, 1)}},
		{tenantB, "cart-1", []store.EventData{cartEvent("CartOpened", tenantB, 0)}},
		{tenantB, "cart-2", []store.EventData{cartEvent("CartOpened", tenantB, 0)}},
		{tenantA, "cart-2", []store.EventData{cartEvent("CartOpened", tenantA, 0)}},
		{tenantA, "cart-1", []store.EventData{cartEvent("ItemAdded", tenantA, 1)}},
		{tenantB, "cart-1", []store.EventData{cartEvent("ItemAdded", tenantB, 5)}},
		{tenantB, "cart-2", []store.EventData{cartEvent("ItemAdded", tenantB, 7)}},
	}
	for i, s := range steps {
		for j := range s.events {
			s.events[j].MessageID = fmt.Sprintf("msg-%d-%d", i/2, j) // shared by the tenants
		}
		res, err := es.AppendToStream(ctx, s.stream, s.events, store.AppendOptions{Partition: string(s.tenant), StreamType: "cart"})
		require.NoError(t, err, "step %d", i)
		last[s.tenant] = res.LastPosition()
	}
	return last
}

// cartCounts is what each tenant's workload holds: events per stream.
var cartCounts = map[store.TenantID]map[store.StreamID]int{
	tenantA: {"cart-1": 3, "cart-2": 1},
	tenantB: {"cart-1": 2, "cart-2": 2},
}

// checkStoreIsolation runs the event-store checks on es; readAll reads the
// global log of every tenant (it is es, except under row-level security,
// where reading every tenant is the owner's job).
func checkStoreIsolation(t *testing.T, es, readAll store.EventStore) {
	ctx := testContext(t)
	appendCarts(t, es)

	for tenant, streams := range cartCounts {
		for stream, n := range streams {
			res, err := es.ReadStream(ctx, stream, store.ReadOptions{Partition: string(tenant)})
			require.NoError(t, err)
			require.True(t, res.StreamExists)
			require.Equal(t, store.Version(n), res.CurrentVersion, "%s/%s", tenant, stream)
			require.Len(t, res.Events, n)
			for _, e := range res.Events {
				require.Equal(t, string(tenant), e.Partition)
				require.Equal(t, string(tenant), writtenFor(t, e), "%s/%s read an event of another tenant", tenant, stream)
			}
		}
	}

	// Expected versions are per tenant: B's cart-1 is at 2, A's at 3.
	_, err := es.AppendToStream(ctx, "cart-1", []store.EventData{cartEvent("ItemAdded", tenantB, 1)},
		store.AppendOptions{Partition: string(tenantB), ExpectedVersion: store.Exact(3)})
	var vc *store.VersionConflictError
	require.ErrorAs(t, err, &vc)
	require.Equal(t, store.Version(2), vc.Actual)
	_, err = es.AppendToStream(ctx, "cart-9", []store.EventData{cartEvent("CartOpened", tenantB, 0)},
		store.AppendOptions{Partition: string(tenantB), ExpectedVersion: store.NoStream})
	require.NoError(t, err, "a stream id unknown in B is new in B")

	// Read-all limited to B returns B's events only (all of them); the
	// whole log has both tenants'.
	want := map[store.TenantID]int{tenantA: 4, tenantB: 5}
	waitFor(t, "the global log", func() bool {
		res, err := readAll.ReadAll(ctx, store.ReadAllOptions{})
		require.NoError(t, err)
		return len(res.Events) == want[tenantA]+want[tenantB]
	})
	// Each read waits too: a read that saw events may briefly not see
	// them again (another database's older transaction that finishes
	// during the read counts as in flight for it).
	for tenant, n := range want {
		waitFor(t, "the read-all of "+string(tenant), func() bool {
			res, err := es.ReadAll(ctx, store.ReadAllOptions{Partition: string(tenant)})
			require.NoError(t, err)
			require.LessOrEqual(t, len(res.Events), n, "read-all of %s", tenant)
			for _, e := range res.Events {
				require.Equal(t, string(tenant), e.Partition)
				require.Equal(t, string(tenant), writtenFor(t, e))
			}
			return len(res.Events) == n
		})
	}
	waitFor(t, "B's ItemAdded events", func() bool {
		res, err := es.ReadAll(ctx, store.ReadAllOptions{Partition: string(tenantB), Types: []string{"ItemAdded"}})
		require.NoError(t, err)
		require.LessOrEqual(t, len(res.Events), 2)
		for _, e := range res.Events {
			require.Equal(t, string(tenantB), e.Partition)
			require.Equal(t, "ItemAdded", e.Type)
		}
		return len(res.Events) == 2
	})

	// Archiving A's cart-2 leaves B's cart-2 alone.
	require.NoError(t, es.ArchiveStream(ctx, "cart-2", store.ArchiveOptions{Partition: string(tenantA)}))
	rb, err := es.ReadStream(ctx, "cart-2", store.ReadOptions{Partition: string(tenantB)})
	require.NoError(t, err)
	require.True(t, rb.StreamExists)
	require.Len(t, rb.Events, 2)
	ra, err := es.ReadStream(ctx, "cart-2", store.ReadOptions{Partition: string(tenantA)})
	require.NoError(t, err)
	require.False(t, ra.StreamExists)

	// Aggregate snapshots are per tenant too.
	ss, ok := es.(store.SnapshotStore)
	require.True(t, ok, "%T is not a store.SnapshotStore", es)
	require.NoError(t, ss.SaveSnapshot(ctx, store.Snapshot{Partition: string(tenantA), Stream: "cart-1", Name: "cart", Version: 3, State: json.RawMessage(`{"tenant":"tenant-a"}`)}))
	_, ok, err = ss.LoadSnapshot(ctx, string(tenantB), "cart-1", "cart")
	require.NoError(t, err)
	require.False(t, ok, "B sees no snapshot of A's cart-1")
}

func TestIsolationEventStore(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		e := newTwoTenants(t)
		checkStoreIsolation(t, e.store, e.store)
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		es := memory.New()
		checkStoreIsolation(t, es, es)
	})
	t.Run("postgres_row_level_security", func(t *testing.T) {
		t.Parallel()
		e := newTwoTenants(t)
		require.NoError(t, postgres.EnableRowLevelSecurity(testContext(t), e.pool))
		appPool := appRole(t, e.pool)
		app, err := postgres.New(appPool, &postgres.Config{Logger: quiet, RowLevelSecurity: true})
		require.NoError(t, err)
		checkStoreIsolation(t, app, e.store)
		// And as raw SQL of the application role: scoped to B, nothing of A.
		asTenant(t, appPool, tenantB, func(tx pgx.Tx) {
			assert.Zero(t, txCount(t, tx, `SELECT count(*) FROM messages WHERE partition = 'tenant-a'`))
			assert.Equal(t, 5, txCount(t, tx, `SELECT count(*) FROM messages`))
		})
	})
}

// counter is a tiny aggregate for the actor host.
type (
	addCmd struct {
		Tenant string
		ID     string
		By     int
	}
	added   struct{ By int }
	counter struct{ N int }
)

var counterDecider = decider.Decider[addCmd, added, counter]{
	Decide:       func(c addCmd, _ counter) ([]added, error) { return []added{{By: c.By}}, nil },
	Evolve:       func(s counter, e added) counter { return counter{N: s.N + e.By} },
	InitialState: func() counter { return counter{} },
}

// Actors are keyed by tenant: the same stream id in A and B is two
// independent aggregates, in memory and in the store.
func TestIsolationActor(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"postgres", "memory"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			var es store.EventStore = memory.New()
			if backend == "postgres" {
				es = newTwoTenants(t).store
			}
			h, err := actor.New(es, &actor.Config{Codec: store.NewJSONCodec().MustRegister("Added", added{}), Logger: quiet})
			require.NoError(t, err)
			counters, err := actor.Register(h, actor.Kind[addCmd, added, counter]{
				Name: "counter", Decider: counterDecider,
				Route: func(c addCmd) (string, store.StreamID) { return c.Tenant, store.StreamID(c.ID) },
			})
			require.NoError(t, err)
			require.NoError(t, h.Start(ctx))
			t.Cleanup(func() { require.NoError(t, h.Stop(context.Background())) })

			for _, c := range []addCmd{{"tenant-a", "c-1", 1}, {"tenant-b", "c-1", 10}, {"tenant-a", "c-1", 2}} {
				_, err := counters.Send(ctx, c)
				require.NoError(t, err)
			}
			// A command id already used in A is new in B.
			ra, err := counters.Send(ctx, addCmd{"tenant-a", "c-2", 100}, actor.SendOptions{CommandID: "cmd-1"})
			require.NoError(t, err)
			rb, err := counters.Send(ctx, addCmd{"tenant-b", "c-2", 200}, actor.SendOptions{CommandID: "cmd-1"})
			require.NoError(t, err)
			require.False(t, ra.Duplicate || rb.Duplicate)

			for _, c := range []struct {
				tenant, id string
				n          int
				version    store.Version
			}{{"tenant-a", "c-1", 3, 2}, {"tenant-b", "c-1", 10, 1}, {"tenant-a", "c-2", 100, 1}, {"tenant-b", "c-2", 200, 1}} {
				s, v, err := counters.State(ctx, c.tenant, store.StreamID(c.id))
				require.NoError(t, err)
				require.Equal(t, c.n, s.N, "%s/%s", c.tenant, c.id)
				require.Equal(t, c.version, v, "%s/%s", c.tenant, c.id)
				res, err := es.ReadStream(ctx, store.StreamID(c.id), store.ReadOptions{Partition: c.tenant})
				require.NoError(t, err)
				require.Equal(t, c.version, res.CurrentVersion)
				for _, e := range res.Events {
					require.Equal(t, c.tenant, e.Partition)
				}
			}
		})
	}
}

// recorder collects the events a handler saw, by message id and partition.
type recorder struct {
	mu   sync.Mutex
	seen map[string]store.Event // partition/message id → event
}

func (r *recorder) handle(_ context.Context, _ pgx.Tx, e store.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]store.Event{}
	}
	r.seen[e.Partition+"/"+e.MessageID] = e
	return nil
}

func (r *recorder) events() []store.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]store.Event, 0, len(r.seen))
	for _, e := range r.seen {
		out = append(out, e)
	}
	return out
}

type cartState struct{ Items int }

// cartsProjection is a snapshot projection of carts (state in the shared
// snapshots table, item count in the carts read model).
func cartsProjection(t *testing.T) *readmodel.Projection[cartState] {
	t.Helper()
	p, err := readmodel.New(&readmodel.Config[cartState]{
		Table:      "carts",
		Storage:    readmodel.InTable,
		EventTypes: []string{"CartOpened", "ItemAdded"},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"cart_id": string(e.StreamID), "partition": partition}, nil
		},
		Evolve: func(s cartState, e store.Event) (cartState, error) {
			var d struct{ Qty int }
			err := json.Unmarshal(e.Data, &d)
			s.Items += d.Qty
			return s, err
		},
		Initial:      func() cartState { return cartState{} },
		MapToColumns: func(s cartState) map[string]any { return map[string]any{"items": s.Items} },
	})
	require.NoError(t, err)
	return p
}

// cartRows returns the carts read model as partition/cart id → items.
func cartRows(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT partition || '/' || cart_id, items FROM carts`)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		out[k] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// A continuous projection and a consumer limited to B never apply A's
// events, and waiting for B's writes works; the same read model projected
// for A, by a projection limited to A, holds A's rows only.
func TestIsolationProjections(t *testing.T) {
	t.Parallel()
	e := newTwoTenants(t)
	ctx := testContext(t)

	type runner struct {
		p    *projection.Projection
		c    *consumer.Consumer
		seen *recorder // the projection's per-event handler
		got  *recorder // the consumer
	}
	runners := map[store.TenantID]*runner{}
	for _, tenant := range []store.TenantID{tenantA, tenantB} {
		r := &runner{seen: &recorder{}, got: &recorder{}}
		var err error
		r.p, err = projection.New(e.pool, &projection.Config{
			Name: "carts", Partition: string(tenant), Logger: quiet,
			Handlers:      projection.Registry{"CartOpened": {r.seen.handle}, "ItemAdded": {r.seen.handle}},
			BatchHandlers: []projection.BatchHandler{cartsProjection(t)},
		})
		require.NoError(t, err)
		r.c, err = consumer.New(e.pool, &consumer.Config{Name: "mailer", Partition: string(tenant), Logger: quiet})
		require.NoError(t, err)
		r.c.SubscribeToAll(r.got.handle)
		require.NoError(t, r.p.Start(ctx))
		require.NoError(t, r.c.Start(ctx))
		t.Cleanup(func() {
			assert.NoError(t, r.p.Stop(context.Background()))
			assert.NoError(t, r.c.Stop(context.Background()))
		})
		runners[tenant] = r
	}

	last := appendCarts(t, e.store)
	for tenant, r := range runners {
		require.NoError(t, r.p.WaitFor(ctx, last[tenant]), "projection of %s", tenant)
		require.NoError(t, r.c.WaitFor(ctx, last[tenant]), "consumer of %s", tenant)
	}
	for tenant, r := range runners {
		for name, rec := range map[string]*recorder{"projection": r.seen, "consumer": r.got} {
			events := rec.events()
			want := 0
			for _, n := range cartCounts[tenant] {
				want += n
			}
			require.Len(t, events, want, "%s of %s: every one of its tenant's events, once", name, tenant)
			for _, ev := range events {
				require.Equal(t, string(tenant), ev.Partition, "%s of %s got %s", name, tenant, ev)
				require.Equal(t, string(tenant), writtenFor(t, ev), "%s of %s got %s", name, tenant, ev)
			}
		}
		st, err := r.p.Status(ctx)
		require.NoError(t, err)
		require.Equal(t, string(tenant), st.Partition)
	}
	require.Equal(t, map[string]int{
		"tenant-a/cart-1": 2, "tenant-a/cart-2": 0,
		"tenant-b/cart-1": 5, "tenant-b/cart-2": 7,
	}, cartRows(t, e.pool))

	// The snapshots rows carry the partition of their events.
	rows, err := e.pool.Query(ctx, `SELECT stream_id, partition FROM snapshots WHERE readmodel_table_name = 'carts' ORDER BY 1`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var v [2]string
		err := r.Scan(&v[0], &v[1])
		return v, err
	})
	require.NoError(t, err)
	require.Equal(t, [][2]string{
		{"cart_id:cart-1|partition:tenant-a", "tenant-a"}, {"cart_id:cart-1|partition:tenant-b", "tenant-b"},
		{"cart_id:cart-2|partition:tenant-a", "tenant-a"}, {"cart_id:cart-2|partition:tenant-b", "tenant-b"},
	}, got)
}

// tenantRows counts, for every table of the schema with a partition column
// (partitioned tables through their parent, plain tables such as snapshots
// directly), the rows of tenant id.
func tenantRows(t *testing.T, pool *pgxpool.Pool, id store.TenantID) map[string]int {
	t.Helper()
	ctx := testContext(t)
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'partition' AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	out := map[string]int{}
	for _, table := range tables {
		out[table] = count(t, pool, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()+` WHERE partition = $1`, string(id))
	}
	return out
}

// Drop erases every row of the tenant, in every table with a partition
// column (the unpartitioned read-model snapshots included), and nothing of
// the other tenant.
func TestDropErasesEveryTable(t *testing.T) {
	t.Parallel()
	e := newTwoTenants(t)
	ctx := testContext(t)
	appendCarts(t, e.store)
	for _, tenant := range []store.TenantID{tenantA, tenantB} {
		// Aggregate snapshots.
		require.NoError(t, e.store.SaveSnapshot(ctx, store.Snapshot{Partition: string(tenant), Stream: "cart-1", Name: "cart", Version: 1, State: json.RawMessage(`{}`)}))
		// A data subject's key (store/shred).
		keys, err := postgres.NewKeyStore(e.pool, nil)
		require.NoError(t, err)
		_, err = keys.CreateKeys(ctx, []shred.Key{{Subject: shred.Subject{Partition: string(tenant), ID: "customer-1"}, Version: 1, Secret: make([]byte, shred.KeySize)}})
		require.NoError(t, err)
		// A per-stream runner's checkpoint.
		runner, err := perstream.New(e.pool, &perstream.Config{Registry: projection.Registry{}})
		require.NoError(t, err)
		_, err = runner.Drain(ctx, "counts", "cart-1", perstream.ProjectOptions{Partition: string(tenant)})
		require.NoError(t, err)
		// A projection limited to the tenant: checkpoint, status, carts
		// rows and snapshots rows.
		p, err := projection.New(e.pool, &projection.Config{Name: "carts", Partition: string(tenant), Logger: quiet,
			BatchHandlers: []projection.BatchHandler{cartsProjection(t)}})
		require.NoError(t, err)
		// A consumer that dead-letters ItemAdded.
		c, err := consumer.New(e.pool, &consumer.Config{Name: "picky", Partition: string(tenant), Logger: quiet,
			OnFailure: projection.FailSkip, Retry: retry.Policy{MaxAttempts: 1, InitialDelay: time.Millisecond, MaxDelay: time.Millisecond}})
		require.NoError(t, err)
		c.Subscribe("ItemAdded", func(context.Context, pgx.Tx, store.Event) error { return errors.New("refused") })
		require.NoError(t, p.Start(ctx))
		require.NoError(t, c.Start(ctx))
		head, err := e.store.ReadStream(ctx, "cart-2", store.ReadOptions{Partition: string(tenant)})
		require.NoError(t, err)
		pos := head.Events[len(head.Events)-1].Position()
		require.NoError(t, p.WaitFor(ctx, pos))
		require.NoError(t, c.WaitFor(ctx, pos))
		require.NoError(t, p.Stop(ctx))
		require.NoError(t, c.Stop(ctx))
	}

	before := map[store.TenantID]map[string]int{tenantA: tenantRows(t, e.pool, tenantA), tenantB: tenantRows(t, e.pool, tenantB)}
	tables := make([]string, 0, len(before[tenantA]))
	for table := range before[tenantA] {
		tables = append(tables, table)
	}
	sort.Strings(tables)
	require.Subset(t, tables, []string{"streams", "messages", "subscriptions", "aggregate_snapshots", "projection_stream_checkpoints",
		"projection_dead_letters", "projection_status", "snapshots", "carts", "subject_keys"})
	for _, tenant := range []store.TenantID{tenantA, tenantB} {
		for table, n := range before[tenant] {
			require.Positive(t, n, "the workload left no row of %s in %s: the test would prove nothing", tenant, table)
		}
	}

	require.NoError(t, e.mgr.Drop(ctx, tenantA))
	for table, n := range tenantRows(t, e.pool, tenantA) {
		assert.Zero(t, n, "rows of the dropped tenant left in %s", table)
	}
	assert.Equal(t, before[tenantB], tenantRows(t, e.pool, tenantB), "the other tenant's rows")
	_, err := e.mgr.Get(ctx, tenantA)
	require.ErrorIs(t, err, tenancy.ErrTenantNotFound)
	parts, err := e.mgr.Partitions(ctx, tenantA)
	require.NoError(t, err)
	require.Empty(t, parts)

	// B keeps working: its projection resumes from its checkpoint.
	res, err := e.store.AppendToStream(ctx, "cart-1", []store.EventData{cartEvent("ItemAdded", tenantB, 1)}, store.AppendOptions{Partition: string(tenantB)})
	require.NoError(t, err)
	p, err := projection.New(e.pool, &projection.Config{Name: "carts", Partition: string(tenantB), Logger: quiet,
		BatchHandlers: []projection.BatchHandler{cartsProjection(t)}})
	require.NoError(t, err)
	require.NoError(t, p.Start(ctx))
	require.NoError(t, p.WaitFor(ctx, res.LastPosition()))
	require.NoError(t, p.Stop(ctx))
	require.Equal(t, map[string]int{"tenant-b/cart-1": 6, "tenant-b/cart-2": 7}, cartRows(t, e.pool))
}
