// Package projtest holds the test helpers the projection packages share: a
// migrated database, a cart domain, read-model checks and a telemetry rig.
package projtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// Ctx returns a context ending with the test (or after a minute).
func Ctx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// NewDB returns a pool on a fresh migrated database and a store on it.
func NewDB(t testing.TB) (*pgxpool.Pool, *postgres.Store) {
	t.Helper()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(Ctx(t), pool))
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	return pool, es
}

// The test domain: carts holding items.
const (
	TypeOpened  = "CartOpened"
	TypeAdded   = "ItemAdded"
	TypeRemoved = "ItemRemoved"
	TypeNoted   = "CartNoted" // no handler anywhere
)

var CartTypes = []string{TypeOpened, TypeAdded, TypeRemoved}

type CartData struct {
	Cart string `json:"cart"`
	SKU  string `json:"sku,omitempty"`
	Qty  int    `json:"qty,omitempty"`
}

type CartState struct {
	Open    bool           `json:"open"`
	Items   map[string]int `json:"items"`
	Applied int            `json:"applied"`
}

func NewCart() CartState { return CartState{Items: map[string]int{}} }

func CartEvent(typ, cart, sku string, qty int) store.EventData {
	b, _ := json.Marshal(CartData{Cart: cart, SKU: sku, Qty: qty})
	return store.EventData{Type: typ, Data: b}
}

func EvolveCart(s CartState, e store.Event) (CartState, error) {
	var d CartData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return s, err
	}
	if s.Items == nil {
		s.Items = map[string]int{}
	}
	switch e.Type {
	case TypeOpened:
		s.Open = true
	case TypeAdded:
		s.Items[d.SKU] += d.Qty
	case TypeRemoved:
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

func ItemCount(s CartState) int {
	n := 0
	for _, q := range s.Items {
		n += q
	}
	return n
}

func CartKeys(e store.Event, partition string) (map[string]any, error) {
	var d CartData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, err
	}
	return map[string]any{"cart_id": d.Cart, "partition": partition}, nil
}

func CartColumns(s CartState) map[string]any {
	return map[string]any{"item_count": ItemCount(s), "is_open": s.Open}
}

// CreateCartTable creates a read-model table for storage.
func CreateCartTable(t testing.TB, pool *pgxpool.Pool, table string, storage readmodel.Storage) {
	t.Helper()
	name := pgx.Identifier{table}.Sanitize()
	sql := `CREATE TABLE ` + name + ` (cart_id text NOT NULL, partition text NOT NULL,
    item_count int, is_open boolean, PRIMARY KEY (cart_id, partition))`
	if storage == readmodel.InRow {
		sql = `CREATE TABLE ` + name + ` (cart_id text NOT NULL, partition text NOT NULL,
    snapshot jsonb, stream_id text, last_stream_position bigint, last_global_position bigint,
    item_count int, is_open boolean, PRIMARY KEY (cart_id, partition))`
	}
	_, err := pool.Exec(Ctx(t), sql)
	require.NoError(t, err)
}

// CartProjection returns a snapshot projection of carts counting its
// MapToColumns calls in mapped.
func CartProjection(t testing.TB, table string, storage readmodel.Storage, mapped *atomic.Int64) *readmodel.Projection[CartState] {
	t.Helper()
	p, err := readmodel.New(&readmodel.Config[CartState]{
		Table:       table,
		Storage:     storage,
		EventTypes:  CartTypes,
		ExtractKeys: CartKeys,
		Evolve:      EvolveCart,
		Initial:     NewCart,
		MapToColumns: func(s CartState) map[string]any {
			if mapped != nil {
				mapped.Add(1)
			}
			return CartColumns(s)
		},
	})
	require.NoError(t, err)
	return p
}

type CartRow struct {
	State     CartState
	ItemCount int
	Open      bool
	Position  int64
}

// ReadCarts reads a cart read model: key "partition/cart".
func ReadCarts(t testing.TB, pool *pgxpool.Pool, table string, storage readmodel.Storage) map[string]CartRow {
	t.Helper()
	ctx := Ctx(t)
	name := pgx.Identifier{table}.Sanitize()
	out := map[string]CartRow{}
	var rows pgx.Rows
	var err error
	if storage == readmodel.InRow {
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
		var r CartRow
		require.NoError(t, rows.Scan(&cart, &part, &snap, &r.Position, &r.ItemCount, &r.Open))
		require.NoError(t, json.Unmarshal([]byte(snap), &r.State))
		out[part+"/"+cart] = r
	}
	require.NoError(t, rows.Err())
	return out
}

// FoldLog folds the whole log from scratch, each cart's events in stream
// order (as an aggregate would): the expected read model. The global log is
// in commit order, which may differ from a stream's order when transactions
// race on a stream.
func FoldLog(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) map[string]CartState {
	t.Helper()
	events := ReadAllEvents(t, pool, es, partition)
	slices.SortStableFunc(events, func(a, b store.Event) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.StreamID, b.StreamID),
			cmp.Compare(a.StreamPosition, b.StreamPosition))
	})
	out := map[string]CartState{}
	for _, e := range events {
		if e.Type == TypeNoted {
			continue
		}
		var d CartData
		require.NoError(t, json.Unmarshal(e.Data, &d))
		key := e.Partition + "/" + d.Cart
		s, ok := out[key]
		if !ok {
			s = NewCart()
		}
		s, err := EvolveCart(s, e)
		require.NoError(t, err)
		out[key] = s
	}
	return out
}

// RequireReadModelMatchesLog checks a cart read model against a fold of the
// log from scratch.
func RequireReadModelMatchesLog(t testing.TB, pool *pgxpool.Pool, es store.EventStore, table string, storage readmodel.Storage, partition string) {
	t.Helper()
	want := FoldLog(t, pool, es, partition)
	got := ReadCarts(t, pool, table, storage)
	require.Len(t, got, len(want))
	for k, w := range want {
		g, ok := got[k]
		require.True(t, ok, "cart %s missing from the read model", k)
		require.Equal(t, w, g.State, "cart %s", k)
		require.Equal(t, ItemCount(w), g.ItemCount, "item_count of cart %s", k)
		require.Equal(t, w.Open, g.Open, "is_open of cart %s", k)
	}
}

// CreateAppliedTable creates the table CountHandler writes.
func CreateAppliedTable(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(Ctx(t), `CREATE TABLE applied (message_id text PRIMARY KEY, n int NOT NULL, owner text NOT NULL)`)
	require.NoError(t, err)
}

// CountHandler counts, in the batch's transaction, how often each message
// id was applied and by whom.
func CountHandler(owner string) projection.Handler {
	return func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO applied (message_id, n, owner) VALUES ($1, 1, $2)
ON CONFLICT (message_id) DO UPDATE SET n = applied.n + 1`, e.MessageID, owner)
		return err
	}
}

// CountBatch is CountHandler for every event of a batch.
type CountBatch struct{ Owner string }

func (c CountBatch) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	h := CountHandler(c.Owner)
	for _, e := range events {
		if err := h(ctx, tx, e); err != nil {
			return err
		}
	}
	return nil
}

// RequireAppliedOnce checks every event of the log was applied exactly once.
func RequireAppliedOnce(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) {
	t.Helper()
	ctx := Ctx(t)
	all := ReadAllEvents(t, pool, es, partition)
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

// ReadAllEvents reads the whole log (of partition) with ReadAll. ReadAll
// holds events back while an older transaction may still commit (including,
// briefly, transactions of other test databases), so it reads until it
// gets every event stored.
func ReadAllEvents(t testing.TB, pool *pgxpool.Pool, es store.EventStore, partition string) []store.Event {
	t.Helper()
	var want int
	var part *string
	if partition != "" {
		part = &partition
	}
	require.NoError(t, pool.QueryRow(Ctx(t), `SELECT count(*) FROM messages
WHERE NOT is_archived AND ($1::text IS NULL OR partition = $1::text)`, part).Scan(&want))
	var out []store.Event
	Eventually(t, time.Minute, "the whole log to be readable", func() bool {
		out = out[:0]
		after := store.Position{}
		for {
			res, err := es.ReadAll(Ctx(t), store.ReadAllOptions{After: after, Partition: partition, Limit: 1000})
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

// AppendCart appends events to the cart's stream and returns the result.
func AppendCart(t testing.TB, es store.EventStore, partition, cart string, events ...store.EventData) store.AppendResult {
	t.Helper()
	res, err := es.AppendToStream(Ctx(t), store.StreamID(cart), events, store.AppendOptions{Partition: partition, StreamType: "cart"})
	require.NoError(t, err)
	return res
}

// SeedCarts appends, for each of n carts, an opening and k additions.
func SeedCarts(t testing.TB, es store.EventStore, partition string, n, k int) store.Position {
	t.Helper()
	var last store.Position
	for i := 0; i < n; i++ {
		cart := fmt.Sprintf("cart-%d", i)
		evs := []store.EventData{CartEvent(TypeOpened, cart, "", 0)}
		for j := 0; j < k; j++ {
			evs = append(evs, CartEvent(TypeAdded, cart, fmt.Sprintf("sku-%d", j%3), j+1))
		}
		last = AppendCart(t, es, partition, cart, evs...).LastPosition()
	}
	return last
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LoadCheckpoint reads the checkpoint of a continuous projection or
// consumer; a missing one is the start of the log.
func LoadCheckpoint(t testing.TB, pool *pgxpool.Pool, name, scope string) store.Position {
	t.Helper()
	var tx uint64
	var gp int64
	err := pool.QueryRow(Ctx(t), `SELECT last_processed_transaction_id, last_processed_position FROM subscriptions
WHERE subscription_id = $1 AND partition = $2 AND version = 1`, name, scope).Scan(&tx, &gp)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Position{}
	}
	require.NoError(t, err)
	return store.Position{TransactionID: tx, GlobalPosition: store.GlobalPosition(gp)}
}

// Storages are both read-model storages.
var Storages = []readmodel.Storage{readmodel.InRow, readmodel.InTable}

// WaitForLockWait waits until a transaction of pool's database waits for a
// lock.
func WaitForLockWait(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	Eventually(t, 30*time.Second, "a transaction waiting for a lock", func() bool {
		var n int
		require.NoError(t, pool.QueryRow(Ctx(t), `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
		return n > 0
	})
}
