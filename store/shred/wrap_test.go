package shred_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
	"github.com/troupehq/troupe/store/shred"
	"github.com/troupehq/troupe/store/storetest"
	"github.com/troupehq/troupe/tenancy"
)

// The wrapper is a store like any other: the conformance suite passes
// through it, on both backends (its events have no personal fields, so
// this checks the pass-through of everything else).
func TestConformanceWrapped(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) store.EventStore { return newPG(t).es })
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) store.EventStore {
			sh, err := shred.New(shred.NewMemoryKeyStore(), &shred.Config{Codec: newCodec(), Events: []any{CustomerRegistered{}}})
			require.NoError(t, err)
			return sh.Wrap(memory.New())
		})
	})
}

// TestMemoryBackend: store/memory with the in-memory key store encrypts,
// redacts and reports a missing key like PostgreSQL.
func TestMemoryBackend(t *testing.T) {
	t.Parallel()
	ctx := ctxOf(t)
	codec := newCodec()
	keys := shred.NewMemoryKeyStore()
	sh, err := shred.New(keys, &shred.Config{Codec: codec, Events: []any{CustomerRegistered{}, AddressChanged{}}, CacheSize: -1})
	require.NoError(t, err)
	inner := memory.New()
	es := sh.Wrap(inner)
	require.Same(t, es, sh.Wrap(es), "wrapping twice is wrapping once")
	_, err = es.AppendToStream(ctx, "customer-ada", encode(t, codec, ada...), store.AppendOptions{})
	require.NoError(t, err)
	raw, err := inner.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.NoError(t, err)
	for _, e := range raw.Events {
		for _, v := range adaPersonal {
			require.NotContains(t, string(e.Data), v)
		}
	}
	read, err := es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, ada, decode(t, codec, read.Events))
	require.NoError(t, sh.Forget(ctx, "", "c-ada"))
	read, err = es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, CustomerRegistered{CustomerID: "c-ada", Plan: "gold"}, decode(t, codec, read.Events)[0])

	_, err = es.AppendToStream(ctx, "customer-grace", encode(t, codec, grace...), store.AppendOptions{})
	require.NoError(t, err)
	keys.Delete(shred.Subject{Partition: store.DefaultPartition, ID: "c-grace"})
	_, err = es.ReadStream(ctx, "customer-grace", store.ReadOptions{})
	require.ErrorIs(t, err, shred.ErrKeyMissing)
}

// TestTenantDropErasesKeys: the keys of a tenant's subjects live in the
// tenant's partition of subject_keys; dropping the tenant erases them, and
// a key for the dropped tenant can't be created again.
func TestTenantDropErasesKeys(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	m, err := tenancy.NewManager(env.pool, nil)
	require.NoError(t, err)
	for _, id := range []store.TenantID{"acme", "globex"} {
		_, _, err := m.Create(ctx, id, string(id))
		require.NoError(t, err)
		_, err = env.es.AppendToStream(ctx, "customer-ada", encode(t, env.codec, ada...), store.AppendOptions{Partition: string(id)})
		require.NoError(t, err)
	}
	var parts int
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'subject_keys'::regclass`).Scan(&parts))
	require.Equal(t, 3, parts, "the default partition and one per tenant")
	require.NoError(t, m.Drop(ctx, "acme"))

	var acme, globex int
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE partition = 'acme'), count(*) FILTER (WHERE partition = 'globex') FROM subject_keys`).Scan(&acme, &globex))
	require.Zero(t, acme, "the dropped tenant's keys are gone")
	require.Equal(t, 1, globex, "the other tenant's stay")
	// A process that never cached the key can't create it anew.
	_, err = env.shredder(t, nil).Wrap(env.inner).AppendToStream(ctx, "customer-ada", encode(t, env.codec, ada[0]), store.AppendOptions{Partition: "acme"})
	require.ErrorIs(t, err, store.ErrTenantDropped)
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT count(*) FROM subject_keys WHERE partition = 'acme'`).Scan(&acme))
	require.Zero(t, acme)
	// In a batch, the dropped tenant's part fails alone.
	res, err := env.shredder(t, nil).Wrap(env.inner).(store.BatchAppender).AppendBatch(ctx, []store.StreamAppend{
		{Stream: "customer-new", Events: encode(t, env.codec, CustomerRegistered{CustomerID: "c-new", Name: "New"}), Options: store.AppendOptions{Partition: "acme"}},
		{Stream: "customer-new", Events: encode(t, env.codec, CustomerRegistered{CustomerID: "c-new", Name: "New"}), Options: store.AppendOptions{Partition: "globex"}},
	})
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, store.ErrTenantDropped)
	require.NoError(t, res[1].Err)
	// Forgetting in a dropped tenant has nothing left to do.
	require.NoError(t, env.sh.Forget(ctx, "acme", "c-ada"))
}

// TestConfigErrors: New refuses event types it can't use, naming the
// field and saying why.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	type noSubject struct {
		Name string `json:"name" troupe:"personal"`
	}
	type twoSubjects struct {
		A    string `troupe:"subject"`
		B    string `troupe:"subject"`
		Name string `troupe:"personal"`
	}
	type nothingPersonal struct {
		A string `troupe:"subject"`
	}
	type badTag struct {
		A    string `troupe:"subject"`
		Name string `troupe:"personel"`
	}
	type inner struct {
		Secret string `troupe:"personal"`
	}
	type nested struct {
		A     string `troupe:"subject"`
		Name  string `troupe:"personal"`
		Inner inner
	}
	type hidden struct {
		A    string `troupe:"subject"`
		Name string `json:"-" troupe:"personal"`
	}
	type Base struct {
		Owner string `json:"owner" troupe:"subject"`
	}
	type embedded struct {
		Base
		Name string `json:"name" troupe:"personal"`
	}
	codec := store.NewJSONCodec()
	for i, v := range []any{noSubject{}, twoSubjects{}, nothingPersonal{}, badTag{}, nested{}, hidden{}, embedded{}, CustomerRegistered{}} {
		codec.MustRegister(strings.Repeat("T", i+1), v)
	}
	keys := shred.NewMemoryKeyStore()
	for _, c := range []struct {
		cfg  *shred.Config
		want string
	}{
		{nil, "shred.Config.Codec is nil"},
		{&shred.Config{Codec: codec}, "shred.Config.Events is empty"},
		{&shred.Config{Codec: codec, Events: []any{PlanChanged{}}}, "shred.Config.Events[0] (shred_test.PlanChanged): the codec does not encode it"},
		{&shred.Config{Codec: codec, Events: []any{noSubject{}}}, `no field tagged troupe:"subject"`},
		{&shred.Config{Codec: codec, Events: []any{twoSubjects{}}}, "has 2 fields tagged"},
		{&shred.Config{Codec: codec, Events: []any{nothingPersonal{}}}, `has no field tagged troupe:"personal"`},
		{&shred.Config{Codec: codec, Events: []any{badTag{}}}, `field Name has the tag troupe:"personel"`},
		{&shred.Config{Codec: codec, Events: []any{nested{}}}, `field Inner.Secret is tagged troupe:"personal" inside the value of field Inner`},
		{&shred.Config{Codec: codec, Events: []any{hidden{}}}, "encoding/json never writes it"},
		{&shred.Config{Codec: codec, Events: []any{CustomerRegistered{}, CustomerRegistered{}}}, "shred.Config.Events[1]: event type TTTTTTTT is listed twice"},
		{&shred.Config{Codec: codec, Events: []any{nil}}, "shred.Config.Events[0] is nil"},
		{&shred.Config{Codec: codec, Events: []any{CustomerRegistered{}}, CacheTTL: -1}, "shred.Config.CacheTTL is negative"},
	} {
		_, err := shred.New(keys, c.cfg)
		require.ErrorContains(t, err, c.want)
	}
	_, err := shred.New(nil, &shred.Config{Codec: codec, Events: []any{embedded{}}})
	require.ErrorContains(t, err, "keys is nil")
	var nilKeys *shred.MemoryKeyStore
	_, err = shred.New(nilKeys, &shred.Config{Codec: codec, Events: []any{embedded{}}})
	require.ErrorContains(t, err, "keys is nil")

	// An embedded struct's subject counts, as encoding/json flattens it.
	sh, err := shred.New(keys, &shred.Config{Codec: codec, Events: []any{embedded{}}})
	require.NoError(t, err)
	ctx := ctxOf(t)
	es := sh.Wrap(memory.New())
	_, err = es.AppendToStream(ctx, "s", encode(t, codec, embedded{Base: Base{Owner: "o-1"}, Name: "Secret Name"}), store.AppendOptions{})
	require.NoError(t, err)
	read, err := es.(interface{ Unwrap() store.EventStore }).Unwrap().ReadStream(ctx, "s", store.ReadOptions{})
	require.NoError(t, err)
	require.NotContains(t, string(read.Events[0].Data), "Secret Name")
	require.Contains(t, string(read.Events[0].Data), `"owner":"o-1"`)
}

// TestForgetRacingReads: reads running while the subject is forgotten
// never put the key back in the cache: once Forget returns, every read of
// the same Shredder is redacted.
func TestForgetRacingReads(t *testing.T) {
	t.Parallel()
	ctx := ctxOf(t)
	codec := newCodec()
	sh, err := shred.New(shred.NewMemoryKeyStore(), &shred.Config{Codec: codec, Events: []any{CustomerRegistered{}}, CacheTTL: time.Hour})
	require.NoError(t, err)
	es := sh.Wrap(memory.New())
	_, err = es.AppendToStream(ctx, "customer-ada", encode(t, codec, ada[0]), store.AppendOptions{})
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := es.ReadStream(ctx, "customer-ada", store.ReadOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, sh.Forget(ctx, "", "c-ada"))
	for range 200 {
		read, err := es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
		require.NoError(t, err)
		require.Empty(t, decode(t, codec, read.Events)[0].(CustomerRegistered).Name)
	}
	close(stop)
	wg.Wait()
}
