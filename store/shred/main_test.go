package shred_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/store/shred"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The event types of the tests: a customer (the data subject) with
// personal fields.
type CustomerRegistered struct {
	CustomerID string `json:"customerId" troupe:"subject"`
	Name       string `json:"name" troupe:"personal"`
	Email      string `json:"email" troupe:"personal"`
	Plan       string `json:"plan"`
}

type Address struct {
	Street string `json:"street"`
	City   string `json:"city"`
}

type AddressChanged struct {
	CustomerID string   `json:"customerId" troupe:"subject"`
	Address    Address  `json:"address" troupe:"personal"`
	Age        int      `json:"age" troupe:"personal"`
	Verified   bool     `json:"verified" troupe:"personal"`
	Phones     []string `json:"phones,omitempty" troupe:"personal"`
	Reason     string   `json:"reason"`
}

// PlanChanged has no personal field and is not given to the Shredder.
type PlanChanged struct {
	CustomerID string `json:"customerId"`
	Plan       string `json:"plan"`
}

func newCodec() *store.JSONCodec {
	return store.NewJSONCodec().
		MustRegister("CustomerRegistered", CustomerRegistered{}).
		MustRegister("AddressChanged", AddressChanged{}).
		MustRegister("PlanChanged", PlanChanged{})
}

func ctxOf(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// pgEnv is a migrated database with a store, a key store and a Shredder
// wrapping the store.
type pgEnv struct {
	pool  *pgxpool.Pool
	inner *postgres.Store
	keys  *postgres.KeyStore
	sh    *shred.Shredder
	es    store.EventStore
	codec *store.JSONCodec
}

func newPG(t *testing.T) *pgEnv {
	t.Helper()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctxOf(t), pool))
	inner, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	keys, err := postgres.NewKeyStore(pool, nil)
	require.NoError(t, err)
	env := &pgEnv{pool: pool, inner: inner, keys: keys, codec: newCodec()}
	env.sh = env.shredder(t, nil)
	env.es = env.sh.Wrap(inner)
	return env
}

// shredder returns a new Shredder on the env's key store (a process of
// its own: its own cache).
func (env *pgEnv) shredder(t testing.TB, cfg *shred.Config) *shred.Shredder {
	t.Helper()
	c := shred.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Codec, c.Events = env.codec, []any{CustomerRegistered{}, AddressChanged{}}
	sh, err := shred.New(env.keys, &c)
	require.NoError(t, err)
	return sh
}

func encode(t testing.TB, codec store.Codec, events ...any) []store.EventData {
	t.Helper()
	out, err := store.Encode(codec, events...)
	require.NoError(t, err)
	return out
}

// decode decodes the events of a read.
func decode(t testing.TB, codec store.Codec, events []store.Event) []any {
	t.Helper()
	out := make([]any, len(events))
	for i, e := range events {
		v, err := store.Decode(codec, e)
		require.NoError(t, err, "event %s: %s", e, e.Data)
		out[i] = v
	}
	return out
}

// plaintextCount counts the rows of table whose text contains any of
// values.
func plaintextCount(t testing.TB, pool *pgxpool.Pool, table string, values ...string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(ctxOf(t), `SELECT count(*) FROM `+table+` x WHERE EXISTS (
		SELECT FROM unnest($1::text[]) v WHERE strpos(x::text, v) > 0)`, values).Scan(&n))
	return n
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
