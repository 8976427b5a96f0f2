package shred_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/shred"
)

var (
	ada = []any{
		CustomerRegistered{CustomerID: "c-ada", Name: "Ada Lovelace", Email: "ada@analytical.example", Plan: "gold"},
		AddressChanged{CustomerID: "c-ada", Address: Address{Street: "12 St James Square", City: "London"}, Age: 36, Verified: true,
			Phones: []string{"+44 1234 567890"}, Reason: "moved"},
		PlanChanged{CustomerID: "c-ada", Plan: "platinum"},
	}
	adaPersonal = []string{"Ada Lovelace", "ada@analytical.example", "12 St James Square", "London", "+44 1234 567890"}
	grace       = []any{
		CustomerRegistered{CustomerID: "c-grace", Name: "Grace Hopper", Email: "grace@cobol.example", Plan: "silver"},
	}
	gracePersonal = []string{"Grace Hopper", "grace@cobol.example"}
)

// TestForgetSubject is the whole story on PostgreSQL: personal values never
// reach the messages table in clear, reads decrypt them, and after the
// subject is forgotten reads return them redacted, while another subject's
// stay readable.
func TestForgetSubject(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	_, err := env.es.AppendToStream(ctx, "customer-ada", encode(t, env.codec, ada...), store.AppendOptions{ExpectedVersion: store.NoStream})
	require.NoError(t, err)
	_, err = env.es.AppendToStream(ctx, "customer-grace", encode(t, env.codec, grace...), store.AppendOptions{})
	require.NoError(t, err)

	require.Zero(t, plaintextCount(t, env.pool, "messages", append(adaPersonal, gracePersonal...)...), "no personal value is stored in clear")
	require.Equal(t, 2, plaintextCount(t, env.pool, "messages", "gold", "platinum"), "values not marked personal are stored as they are")
	var keys int
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT count(*) FROM subject_keys WHERE key IS NOT NULL`).Scan(&keys))
	require.Equal(t, 2, keys, "one key per subject")

	// Reads decrypt, through every reader: ReadStream, ReadAll and a
	// fresh Shredder (another process) on the same keys.
	read, err := env.es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, ada, decode(t, env.codec, read.Events))
	all, err := readAllSettled(t, env.shredder(t, nil).Wrap(env.inner), len(ada)+len(grace))
	require.NoError(t, err)
	require.Equal(t, append(append([]any{}, ada...), grace...), decode(t, env.codec, all.Events))
	for _, e := range all.Events {
		require.NotContains(t, e.Metadata, shred.MetaRedacted)
	}

	require.NoError(t, env.sh.Forget(ctx, "", "c-ada"))
	require.Zero(t, plaintextCount(t, env.pool, "messages", append(adaPersonal, gracePersonal...)...))
	require.Zero(t, plaintextCount(t, env.pool, "subject_keys", "c-grace-no-such"), "sanity")
	var forgotten bool
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT key IS NULL AND forgotten IS NOT NULL FROM subject_keys WHERE subject = 'c-ada'`).Scan(&forgotten))
	require.True(t, forgotten, "the key is gone, the tombstone stays")

	redacted := []any{
		CustomerRegistered{CustomerID: "c-ada", Plan: "gold"},
		AddressChanged{CustomerID: "c-ada", Reason: "moved"},
		PlanChanged{CustomerID: "c-ada", Plan: "platinum"},
	}
	// This process forgot: its cache is cleared at once. Another process
	// that never cached the key reads the same.
	for name, es := range map[string]store.EventStore{"same": env.es, "other": env.shredder(t, nil).Wrap(env.inner)} {
		read, err = es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
		require.NoError(t, err, name)
		require.Equal(t, redacted, decode(t, env.codec, read.Events), name)
		require.Equal(t, []string{"email", "name"}, read.Events[0].Metadata[shred.MetaRedacted], name)
		require.Equal(t, []string{"address", "age", "phones", "verified"}, read.Events[1].Metadata[shred.MetaRedacted], name)
		require.NotContains(t, read.Events[2].Metadata, shred.MetaRedacted, name)
		require.JSONEq(t, `{"customerId":"c-ada","address":null,"age":0,"verified":false,"phones":null,"reason":"moved"}`, string(read.Events[1].Data), name)
		g, err := es.ReadStream(ctx, "customer-grace", store.ReadOptions{})
		require.NoError(t, err, name)
		require.Equal(t, grace, decode(t, env.codec, g.Events), "another subject is untouched")
	}

	// A forgotten subject takes no new personal data; nothing is written.
	_, err = env.es.AppendToStream(ctx, "customer-ada", encode(t, env.codec,
		PlanChanged{CustomerID: "c-ada", Plan: "basic"},
		CustomerRegistered{CustomerID: "c-ada", Name: "Ada King", Email: "ada@king.example"}), store.AppendOptions{})
	require.ErrorIs(t, err, shred.ErrSubjectForgotten)
	require.ErrorIs(t, err, store.ErrInvalidArgument)
	require.ErrorContains(t, err, `event 1 (CustomerRegistered)`)
	require.ErrorContains(t, err, `"c-ada"`)
	read, err = env.es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, read.CurrentVersion, "nothing of the refused append was written")
	// Also not through a Shredder that never saw the key.
	_, err = env.shredder(t, nil).Wrap(env.inner).AppendToStream(ctx, "customer-ada2", encode(t, env.codec,
		CustomerRegistered{CustomerID: "c-ada", Name: "Ada King"}), store.AppendOptions{})
	require.ErrorIs(t, err, shred.ErrSubjectForgotten)
	// Events without personal values still go in.
	_, err = env.es.AppendToStream(ctx, "customer-ada", encode(t, env.codec, PlanChanged{CustomerID: "c-ada", Plan: "basic"}), store.AppendOptions{})
	require.NoError(t, err)
	// Forgetting again is harmless; forgetting an unknown subject leaves
	// a tombstone that refuses its first personal data.
	require.NoError(t, env.sh.Forget(ctx, "", "c-ada"))
	require.NoError(t, env.sh.Forget(ctx, "", "c-never"))
	_, err = env.es.AppendToStream(ctx, "customer-never", encode(t, env.codec, CustomerRegistered{CustomerID: "c-never", Name: "N"}), store.AppendOptions{})
	require.ErrorIs(t, err, shred.ErrSubjectForgotten)
}

// TestBatchAppendEncrypts: a wrapped store/postgres store is a
// store.BatchAppender; parts are encrypted, a bad part fails alone.
func TestBatchAppendEncrypts(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	ba, ok := env.es.(store.BatchAppender)
	require.True(t, ok, "the wrapper passes store.BatchAppender through")
	_, ok = env.es.(store.SnapshotStore)
	require.True(t, ok, "the wrapper passes store.SnapshotStore through")
	res, err := ba.AppendBatch(ctx, []store.StreamAppend{
		{Stream: "customer-ada", Events: encode(t, env.codec, ada...)},
		{Stream: "customer-nobody", Events: encode(t, env.codec, CustomerRegistered{Name: "No Subject"})},
		{Stream: "customer-grace", Events: encode(t, env.codec, grace...)},
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.ErrorIs(t, res[1].Err, store.ErrInvalidArgument)
	require.ErrorContains(t, res[1].Err, "CustomerRegistered")
	require.ErrorContains(t, res[1].Err, "CustomerID")
	require.NoError(t, res[2].Err)
	require.Equal(t, res[0].Result.TransactionID, res[2].Result.TransactionID, "the good parts share one transaction")
	require.Zero(t, plaintextCount(t, env.pool, "messages", append(adaPersonal, gracePersonal...)...))
	require.Zero(t, plaintextCount(t, env.pool, "messages", "No Subject"))
	all, err := readAllSettled(t, env.es, len(ada)+len(grace))
	require.NoError(t, err)
	require.Equal(t, append(append([]any{}, ada...), grace...), decode(t, env.codec, all.Events))
}

// TestEmptySubjectRefused: an event with personal fields and no subject is
// refused, naming the type and the field; nothing of the append is written.
func TestEmptySubjectRefused(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	for _, bad := range []store.EventData{
		encode(t, env.codec, CustomerRegistered{Name: "Anonymous", Email: "anon@example.com"})[0],
		{Type: "CustomerRegistered", Data: []byte(`{"customerId":null,"name":"Anonymous"}`)},
		{Type: "CustomerRegistered", Data: []byte(`{"name":"Anonymous"}`)},
		{Type: "CustomerRegistered", Data: []byte(`{"customerId":{"id":"x"},"name":"Anonymous"}`)},
	} {
		_, err := env.es.AppendToStream(ctx, "customer-x", []store.EventData{encode(t, env.codec, PlanChanged{Plan: "a"})[0], bad}, store.AppendOptions{})
		require.ErrorIs(t, err, store.ErrInvalidArgument, "%s", bad.Data)
		require.ErrorContains(t, err, `event 1 (CustomerRegistered): the subject field CustomerID (JSON "customerId") is empty or missing`)
	}
	// A body that is not an object, and one carrying the reserved key
	// (also escaped), are refused too.
	for _, bad := range []store.EventData{
		{Type: "CustomerRegistered", Data: []byte(`"Anonymous"`)},
		{Type: "PlanChanged", Data: []byte(`{"plan":{"troupe:encrypted":{"s":"x"}}}`)},
		{Type: "PlanChanged", Data: []byte(`{"plan":{"troupe\u003aencrypted":{"s":"x"}}}`)},
	} {
		_, err := env.es.AppendToStream(ctx, "customer-x", []store.EventData{bad}, store.AppendOptions{})
		require.ErrorIs(t, err, store.ErrInvalidArgument, "%s", bad.Data)
	}
	read, err := env.inner.ReadStream(ctx, "customer-x", store.ReadOptions{})
	require.NoError(t, err)
	require.False(t, read.StreamExists, "nothing was written")
	var keys int
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT count(*) FROM subject_keys`).Scan(&keys))
	require.Zero(t, keys, "no key was made for a refused append")
}

// TestMissingKey: a subject whose key row was deleted by hand (not
// forgotten) makes every read of its events fail with an error naming the
// stream, position, type and subject; the read returns nothing.
func TestMissingKey(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	_, err := env.es.AppendToStream(ctx, "customer-grace", encode(t, env.codec, grace...), store.AppendOptions{})
	require.NoError(t, err)
	_, err = env.es.AppendToStream(ctx, "customer-ada", encode(t, env.codec, ada...), store.AppendOptions{})
	require.NoError(t, err)
	_, err = env.pool.Exec(ctx, `DELETE FROM subject_keys WHERE subject = 'c-ada'`)
	require.NoError(t, err)

	es := env.shredder(t, nil).Wrap(env.inner) // a process that never cached the key
	read, err := es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.ErrorIs(t, err, shred.ErrKeyMissing)
	var km *shred.KeyMissingError
	require.ErrorAs(t, err, &km)
	require.Equal(t, shred.KeyMissingError{Type: "CustomerRegistered", Stream: "customer-ada", Partition: store.DefaultPartition,
		Position: 1, Subject: "c-ada", Path: "email"}, *km)
	for _, want := range []string{"CustomerRegistered", `"customer-ada"`, "position 1", `"c-ada"`, "not forgotten"} {
		require.ErrorContains(t, err, want)
	}
	require.Empty(t, read.Events, "nothing is returned half-decrypted")
	all, err := readAllSettled(t, es, 1)
	require.ErrorIs(t, err, shred.ErrKeyMissing)
	require.Empty(t, all.Events)
	// The other subject's stream reads fine.
	g, err := es.ReadStream(ctx, "customer-grace", store.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, grace, decode(t, env.codec, g.Events))

	// A new append for the subject makes a new key, which does not open
	// the old values: reads say so rather than return garbage.
	fresh := env.shredder(t, nil).Wrap(env.inner)
	_, err = fresh.AppendToStream(ctx, "customer-ada-2", encode(t, env.codec, ada[0]), store.AppendOptions{})
	require.NoError(t, err)
	_, err = fresh.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.ErrorIs(t, err, shred.ErrUndecryptable)
	require.ErrorContains(t, err, `stream "customer-ada"`)
	require.ErrorContains(t, err, "CustomerRegistered")
}

// TestConcurrentFirstAppendsMakeOneKey: many processes (Shredders of their
// own) appending the first events of one subject at once end with one key,
// which opens every event.
func TestConcurrentFirstAppendsMakeOneKey(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	const writers = 32
	var wg sync.WaitGroup
	errs := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		sh := env.shredder(t, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			es := sh.Wrap(env.inner)
			ev := CustomerRegistered{CustomerID: "c-race", Name: fmt.Sprintf("Racer %d", i), Email: fmt.Sprintf("racer%d@example.com", i)}
			_, errs[i] = es.AppendToStream(ctx, store.StreamID(fmt.Sprintf("race-%d", i)), encode(t, env.codec, ev), store.AppendOptions{})
		}()
	}
	close(start)
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	var n int
	require.NoError(t, env.pool.QueryRow(ctx, `SELECT count(*) FROM subject_keys WHERE subject = 'c-race'`).Scan(&n))
	require.Equal(t, 1, n)
	all, err := readAllSettled(t, env.shredder(t, nil).Wrap(env.inner), writers)
	require.NoError(t, err)
	require.Len(t, all.Events, writers)
	for _, v := range decode(t, env.codec, all.Events) {
		require.Contains(t, v.(CustomerRegistered).Name, "Racer ")
	}
	require.Zero(t, plaintextCount(t, env.pool, "messages", "Racer"))
}

// TestCacheWindow: a process that cached a subject's key keeps decrypting
// with it after another process forgot the subject, for at most its
// CacheTTL (the documented window); the process that forgot drops it at
// once.
func TestCacheWindow(t *testing.T) {
	t.Parallel()
	env := newPG(t)
	ctx := ctxOf(t)
	_, err := env.es.AppendToStream(ctx, "customer-ada", encode(t, env.codec, ada[0]), store.AppendOptions{})
	require.NoError(t, err)
	long := env.shredder(t, &shred.Config{CacheTTL: time.Hour}).Wrap(env.inner)
	short := env.shredder(t, &shred.Config{CacheTTL: 20 * time.Millisecond}).Wrap(env.inner)
	for _, es := range []store.EventStore{long, short} {
		read, err := es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
		require.NoError(t, err)
		require.Equal(t, ada[:1], decode(t, env.codec, read.Events))
	}
	require.NoError(t, env.sh.Forget(ctx, "", "c-ada"))
	time.Sleep(50 * time.Millisecond)
	read, err := long.ReadStream(ctx, "customer-ada", store.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, "Ada Lovelace", decode(t, env.codec, read.Events)[0].(CustomerRegistered).Name, "inside the window")
	for _, es := range []store.EventStore{short, env.es} {
		read, err = es.ReadStream(ctx, "customer-ada", store.ReadOptions{})
		require.NoError(t, err)
		require.Empty(t, decode(t, env.codec, read.Events)[0].(CustomerRegistered).Name, "after the window")
	}

	require.ErrorIs(t, env.sh.Forget(ctx, "", ""), store.ErrInvalidArgument)
	require.ErrorIs(t, env.sh.Forget(ctx, "bad tenant", "x"), store.ErrInvalidArgument)
}

// readAllSettled reads the whole log once it holds at least want events,
// or fails trying (up to 10 s). ReadAll hands over only events below every
// transaction still open in the server, other tests' included, so right
// after an append it may read fewer, without an error.
func readAllSettled(t *testing.T, es store.EventStore, want int) (store.ReadAllResult, error) {
	t.Helper()
	ctx, deadline := ctxOf(t), time.Now().Add(10*time.Second)
	for {
		all, err := es.ReadAll(ctx, store.ReadAllOptions{})
		if err != nil || len(all.Events) >= want || time.Now().After(deadline) {
			return all, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
