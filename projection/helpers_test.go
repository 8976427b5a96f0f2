package projection

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testCtx returns a context ending with the test (or after a minute).
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newDB returns a pool on a fresh migrated database and a store on it.
func newDB(t testing.TB) (*pgxpool.Pool, *postgres.Store) {
	t.Helper()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(testCtx(t), pool))
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return pool, es
}

// The test domain: carts holding items.
const (
	typeOpened  = "CartOpened"
	typeAdded   = "ItemAdded"
	typeRemoved = "ItemRemoved"
	typeNoted   = "CartNoted" // no handler anywhere
)

var cartTypes = []string{typeOpened, typeAdded, typeRemoved}

type cartData struct {
	Cart string `json:"cart"`
	SKU  string `json:"sku,omitempty"`
	Qty  int    `json:"qty,omitempty"`
}

type cartState struct {
	Open    bool           `json:"open"`
	Items   map[string]int `json:"items"`
	Applied int            `json:"applied"`
}

func newCart() cartState { return cartState{Items: map[string]int{}} }

func cartEvent(typ, cart, sku string, qty int) store.EventData {
	b, _ := json.Marshal(cartData{Cart: cart, SKU: sku, Qty: qty})
	return store.EventData{Type: typ, Data: b}
}

func evolveCart(s cartState, e store.Event) (cartState, error) {
	var d cartData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return s, err
	}
	if s.Items == nil {
		s.Items = map[string]int{}
	}
	switch e.Type {
	case typeOpened:
		s.Open = true
	case typeAdded:
		s.Items[d.SKU] += d.Qty
	case typeRemoved:
		s.Items[d.SKU] -= d.Qty
		if s.Items[d.SKU] <= 0 {
			delete(s.Items, d.SKU)
		}
	default:
		return s, fmt.Errorf("unexpected event type %q", e.Type)
	}
	s.Applied++
	return s, nil
}

func itemCount(s cartState) int {
	n := 0
	for _, q := range s.Items {
		n += q
	}
	return n
}

func cartKeys(e store.Event, partition string) (map[string]any, error) {
	var d cartData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, err
	}
	return map[string]any{"cart_id": d.Cart, "partition": partition}, nil
}

func cartColumns(s cartState) map[string]any {
	return map[string]any{"item_count": itemCount(s), "is_open": s.Open}
}

// createCartTable creates a read-model table for storage.
func createCartTable(t testing.TB, pool *pgxpool.Pool, table string, storage SnapshotStorage) {
	t.Helper()
	name := pgx.Identifier{table}.Sanitize()
	sql := `CREATE TABLE ` + name + ` (cart_id text NOT NULL, partition text NOT NULL,
    item_count int, is_open boolean, PRIMARY KEY (cart_id, partition))`
	if storage == SnapshotInRow {
		sql = `CREATE TABLE ` + name + ` (cart_id text NOT NULL, partition text NOT NULL,
    snapshot jsonb, stream_id text, last_stream_position bigint, last_global_position bigint,
    item_count int, is_open boolean, PRIMARY KEY (cart_id, partition))`
	}
	_, err := pool.Exec(testCtx(t), sql)
	require.NoError(t, err)
}

// cartProjection returns a snapshot projection of carts counting its
// MapToColumns calls in mapped.
func cartProjection(t testing.TB, table string, storage SnapshotStorage, mapped *atomic.Int64) *SnapshotProjection[cartState] {
	t.Helper()
	p, err := NewSnapshotProjection(SnapshotConfig[cartState]{
		Table:       table,
		Storage:     storage,
		EventTypes:  cartTypes,
		ExtractKeys: cartKeys,
		Evolve:      evolveCart,
		Initial:     newCart,
		MapToColumns: func(s cartState) map[string]any {
			if mapped != nil {
				mapped.Add(1)
			}
			return cartColumns(s)
		},
	})
	require.NoError(t, err)
	return p
}

type cartRow struct {
	State     cartState
	ItemCount int
	Open      bool
	Position  int64
}

// readCarts reads a cart read model: key "partition/cart".
func readCarts(t testing.TB, pool *pgxpool.Pool, table string, storage SnapshotStorage) map[string]cartRow {
	t.Helper()
	ctx := testCtx(t)
	name := pgx.Identifier{table}.Sanitize()
	out := map[string]cartRow{}
	var rows pgx.Rows
	var err error
	if storage == SnapshotInRow {
		rows, err = pool.Query(ctx, `SELECT cart_id, partition, snapshot::text, last_stream_position, item_count, is_open FROM `+name)
	} else {
		rows, err = pool.Query(ctx, `SELECT r.cart_id, r.partition, s.snapshot::text, s.last_stream_position, r.item_count, r.is_open
FROM `+name+` r JOIN snapshots s ON s.readmodel_table_name = $1
  AND s.stream_id = 'cart_id:' || r.cart_id || '|partition:' || r.partition`, table)
	}
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var cart, part, snap string
		var r cartRow
		require.NoError(t, rows.Scan(&cart, &part, &snap, &r.Position, &r.ItemCount, &r.Open))
		require.NoError(t, json.Unmarshal([]byte(snap), &r.State))
		out[part+"/"+cart] = r
	}
	require.NoError(t, rows.Err())
	return out
}

// foldLog folds the whole log from scratch, each cart's events in stream
// order (as an aggregate would): the expected read model. The global log is
// in commit order, which may differ from a stream's order when transactions
// race on a stream.
func foldLog(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) map[string]cartState {
	t.Helper()
	events := readAllEvents(t, pool, es, partition)
	slices.SortStableFunc(events, func(a, b store.Event) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.StreamID, b.StreamID),
			cmp.Compare(a.StreamPosition, b.StreamPosition))
	})
	out := map[string]cartState{}
	for _, e := range events {
		if e.Type == typeNoted {
			continue
		}
		var d cartData
		require.NoError(t, json.Unmarshal(e.Data, &d))
		key := e.Partition + "/" + d.Cart
		s, ok := out[key]
		if !ok {
			s = newCart()
		}
		s, err := evolveCart(s, e)
		require.NoError(t, err)
		out[key] = s
	}
	return out
}

// requireReadModelMatchesLog checks a cart read model against a fold of the
// log from scratch.
func requireReadModelMatchesLog(t testing.TB, pool *pgxpool.Pool, es store.EventStore, table string, storage SnapshotStorage, partition string) {
	t.Helper()
	want := foldLog(t, pool, es, partition)
	got := readCarts(t, pool, table, storage)
	require.Len(t, got, len(want))
	for k, w := range want {
		g, ok := got[k]
		require.True(t, ok, "cart %s missing from the read model", k)
		require.Equal(t, w, g.State, "cart %s", k)
		require.Equal(t, itemCount(w), g.ItemCount, "item_count of cart %s", k)
		require.Equal(t, w.Open, g.Open, "is_open of cart %s", k)
	}
}

// createAppliedTable creates the table countHandler writes.
func createAppliedTable(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(testCtx(t), `CREATE TABLE applied (message_id text PRIMARY KEY, n int NOT NULL, owner text NOT NULL)`)
	require.NoError(t, err)
}

// countHandler counts, in the batch's transaction, how often each message
// id was applied and by whom.
func countHandler(owner string) Handler {
	return func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO applied (message_id, n, owner) VALUES ($1, 1, $2)
ON CONFLICT (message_id) DO UPDATE SET n = applied.n + 1`, e.MessageID, owner)
		return err
	}
}

// countBatch is countHandler for every event of a batch.
type countBatch struct{ owner string }

func (c countBatch) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	h := countHandler(c.owner)
	for _, e := range events {
		if err := h(ctx, tx, e); err != nil {
			return err
		}
	}
	return nil
}

// requireAppliedOnce checks every event of the log was applied exactly once.
func requireAppliedOnce(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) {
	t.Helper()
	ctx := testCtx(t)
	all := readAllEvents(t, pool, es, partition)
	counts := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT message_id, n FROM applied`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		counts[id] = n
	}
	require.NoError(t, rows.Err())
	require.Len(t, counts, len(all), "applied events")
	for _, e := range all {
		require.Equal(t, 1, counts[e.MessageID], "applications of %s", e)
	}
}

// readAllEvents reads the whole log (of partition) with ReadAll. ReadAll
// holds events back while an older transaction may still commit (including,
// briefly, transactions of other test databases), so it reads until it
// gets every event stored.
func readAllEvents(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) []store.Event {
	t.Helper()
	var want int
	var part *string
	if partition != "" {
		part = &partition
	}
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM messages
WHERE NOT is_archived AND ($1::text IS NULL OR partition = $1::text)`, part).Scan(&want))
	var out []store.Event
	eventually(t, time.Minute, "the whole log to be readable", func() bool {
		out = out[:0]
		after := store.Position{}
		for {
			res, err := es.ReadAll(testCtx(t), store.ReadAllOptions{After: after, Partition: partition, Limit: 1000})
			require.NoError(t, err)
			if len(res.Events) == 0 {
				return len(out) == want
			}
			out = append(out, res.Events...)
			after = res.Next
		}
	})
	return out
}

// appendCart appends events to the cart's stream and returns the result.
func appendCart(t testing.TB, es store.EventStore, partition, cart string, events ...store.EventData) store.AppendResult {
	t.Helper()
	res, err := es.AppendToStream(testCtx(t), store.StreamID(cart), events, store.AppendOptions{Partition: partition, StreamType: "cart"})
	require.NoError(t, err)
	return res
}

// seedCarts appends, for each of n carts, an opening and k additions.
func seedCarts(t testing.TB, es store.EventStore, partition string, n, k int) store.Position {
	t.Helper()
	var last store.Position
	for i := 0; i < n; i++ {
		cart := fmt.Sprintf("cart-%d", i)
		evs := []store.EventData{cartEvent(typeOpened, cart, "", 0)}
		for j := 0; j < k; j++ {
			evs = append(evs, cartEvent(typeAdded, cart, fmt.Sprintf("sku-%d", j%3), j+1))
		}
		last = appendCart(t, es, partition, cart, evs...).LastPosition()
	}
	return last
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func loadCP(t testing.TB, pool *pgxpool.Pool, name, scope string) store.Position {
	t.Helper()
	cp, err := loadCheckpoint(testCtx(t), pool, name, scope)
	require.NoError(t, err)
	return cp
}
