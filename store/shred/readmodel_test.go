package shred_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/shred"
)

type customerRow struct {
	ID, Name, Email, City string
}

const customersTable = `CREATE TABLE %s (customer_id text NOT NULL, partition text NOT NULL,
    snapshot jsonb, stream_id text, last_stream_position bigint, last_global_position bigint,
    name text, email text, city text, PRIMARY KEY (customer_id, partition))`

// customers is a read model of customers with their personal values,
// reading events it misses through hook.
func customers(t testing.TB, env *pgEnv, table string, hook func(context.Context, []store.Event) ([]store.Event, error)) *readmodel.Projection[customerRow] {
	t.Helper()
	_, err := env.pool.Exec(ctxOf(t), fmt.Sprintf(customersTable, table))
	require.NoError(t, err)
	rm, err := readmodel.New(&readmodel.Config[customerRow]{
		Table:      table,
		EventTypes: []string{"CustomerRegistered", "AddressChanged"},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"customer_id": string(e.StreamID), "partition": partition}, nil
		},
		Initial: func() customerRow { return customerRow{} },
		Evolve: func(s customerRow, e store.Event) (customerRow, error) {
			v, err := store.Decode(env.codec, e)
			if err != nil {
				return s, err
			}
			switch ev := v.(type) {
			case CustomerRegistered:
				s.ID, s.Name, s.Email = ev.CustomerID, ev.Name, ev.Email
			case AddressChanged:
				s.City = ev.Address.City
			}
			return s, nil
		},
		MapToColumns: func(s customerRow) map[string]any {
			return map[string]any{"name": s.Name, "email": s.Email, "city": s.City}
		},
		ReadHook: hook,
	})
	require.NoError(t, err)
	return rm
}

// TestRebuiltReadModelHoldsNoPersonalValue: a read model projected through
// the wrapped store holds the decrypted values; rebuilt after the subject
// is forgotten, it holds none of them (checked by SQL on its table), and
// still holds the other subjects'.
func TestRebuiltReadModelHoldsNoPersonalValue(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	for stream, evs := range map[store.StreamID][]any{"customer-ada": ada, "customer-grace": grace} {
		_, err := env.es.AppendToStream(ctx, stream, encode(t, env.codec, evs...), store.AppendOptions{})
		require.NoError(t, err)
	}
	rm := customers(t, env, "customers", env.sh.Decrypt)
	p, err := projection.New(env.pool, &projection.Config{Name: "customers", Store: env.es, BatchHandlers: []projection.BatchHandler{rm}})
	require.NoError(t, err)
	require.NoError(t, p.Rebuild(ctx, projection.RebuildOptions{}))
	require.Equal(t, 1, plaintextCount(t, env.pool, "customers", "Ada Lovelace"), "the read model holds the decrypted values")
	require.Equal(t, 1, plaintextCount(t, env.pool, "customers", "London"))

	require.NoError(t, env.sh.Forget(ctx, "", "c-ada"))
	require.NoError(t, p.Rebuild(ctx, projection.RebuildOptions{}))
	require.Zero(t, plaintextCount(t, env.pool, "customers", adaPersonal...), "the rebuilt read model holds no personal value of the forgotten subject")
	require.Equal(t, 1, plaintextCount(t, env.pool, "customers", gracePersonal...), "and still the others'")
	var name, email, city string
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT name, email, city FROM customers WHERE customer_id = 'customer-ada'`).Scan(&name, &email, &city))
	require.Equal(t, [3]string{"", "", ""}, [3]string{name, email, city}, "the row is there, its personal columns redacted")
	require.Zero(t, plaintextCount(t, env.pool, "messages", adaPersonal...))
}

// TestReadModelGapsAreDecrypted: the events a read model reads with its own
// SQL (a gap before the batch's event) go through Config.ReadHook; without
// it, encrypted values fail the batch with an error saying what to set.
func TestReadModelGapsAreDecrypted(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	_, err := env.es.AppendToStream(ctx, "customer-ada", encode(t, env.codec, ada...), store.AppendOptions{})
	require.NoError(t, err)
	all, err := readAllSettled(t, env.es, 2)
	require.NoError(t, err)
	second := all.Events[1] // AddressChanged; the row misses CustomerRegistered at 1

	apply := func(rm *readmodel.Projection[customerRow]) error {
		return pgx.BeginFunc(ctx, env.pool, func(tx pgx.Tx) error { return rm.HandleBatch(ctx, tx, []store.Event{second}) })
	}
	err = apply(customers(t, env, "customers_nohook", nil))
	require.ErrorContains(t, err, "readmodel.Config.ReadHook")
	require.ErrorContains(t, err, `stream "customer-ada"`)
	var n int
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT count(*) FROM customers_nohook`).Scan(&n))
	require.Zero(t, n, "nothing was written")

	require.NoError(t, apply(customers(t, env, "customers_hook", env.sh.Decrypt)))
	var name, city string
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT name, city FROM customers_hook`).Scan(&name, &city))
	require.Equal(t, "Ada Lovelace", name, "the gap's event was decrypted")
	require.Equal(t, "London", city)

	require.NoError(t, env.sh.Forget(ctx, "", "c-ada"))
	// Decrypt of events read elsewhere redacts, and leaves its input alone.
	raw, err := env.inner.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.NoError(t, err)
	before := string(raw.Events[0].Data)
	out, err := env.sh.Decrypt(ctx, raw.Events)
	require.NoError(t, err)
	require.Equal(t, before, string(raw.Events[0].Data))
	require.Equal(t, []string{"email", "name"}, out[0].Metadata[shred.MetaRedacted])
	require.Nil(t, raw.Events[0].Metadata[shred.MetaRedacted])
}
