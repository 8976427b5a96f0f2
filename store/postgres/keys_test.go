package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/store/shred"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, shred.KeySize) }

// TestKeyStore: the first key stored for a subject is the one every later
// CreateKeys returns; Forget leaves a tombstone; subjects of two partitions
// are two subjects.
func TestKeyStore(t *testing.T) {
	t.Parallel()
	_, pool := newStore(t)
	ctx := context.Background()
	ks, err := postgres.NewKeyStore(pool, nil)
	require.NoError(t, err)
	a := shred.Subject{Partition: store.DefaultPartition, ID: "a"}
	b := shred.Subject{Partition: store.DefaultPartition, ID: "b"}
	other := shred.Subject{Partition: "acme", ID: "a"}

	got, err := ks.CreateKeys(ctx, []shred.Key{{Subject: b, Version: 1, Secret: secret(2)}, {Subject: a, Version: 1, Secret: secret(1)}, {Subject: other, Version: 1, Secret: secret(3)}})
	require.NoError(t, err)
	require.Equal(t, secret(1), got[a].Secret)
	require.Equal(t, secret(3), got[other].Secret)
	got, err = ks.CreateKeys(ctx, []shred.Key{{Subject: a, Version: 1, Secret: secret(9)}})
	require.NoError(t, err)
	require.Equal(t, shred.Key{Subject: a, Version: 1, Secret: secret(1)}, got[a], "the stored key wins")

	require.NoError(t, ks.Forget(ctx, a))
	require.NoError(t, ks.Forget(ctx, a))
	got, err = ks.Keys(ctx, []shred.Subject{a, b, other, {Partition: store.DefaultPartition, ID: "none"}})
	require.NoError(t, err)
	require.Equal(t, map[shred.Subject]shred.Key{
		a:     {Subject: a, Version: 1, Forgotten: true},
		b:     {Subject: b, Version: 1, Secret: secret(2)},
		other: {Subject: other, Version: 1, Secret: secret(3)},
	}, got)
	got, err = ks.CreateKeys(ctx, []shred.Key{{Subject: a, Version: 1, Secret: secret(7)}})
	require.NoError(t, err)
	require.True(t, got[a].Forgotten, "a forgotten subject gets no new key")
	require.Nil(t, got[a].Secret)

	_, err = ks.CreateKeys(ctx, []shred.Key{{Subject: b, Secret: []byte("short")}})
	require.ErrorIs(t, err, store.ErrInvalidArgument)
	_, err = postgres.NewKeyStore(nil, nil)
	require.Error(t, err)
}

// TestKeyStoreRowLevelSecurity: subject_keys is under the tenant policy;
// the key store scoped per partition reaches each tenant's keys and
// nothing of another's, and a database that ran with row-level security
// before migration 9 gets the policy on the new table.
func TestKeyStoreRowLevelSecurity(t *testing.T) {
	t.Parallel()
	e := newRLSEnv(t, "acme", "globex")
	ctx := context.Background()
	ks, err := postgres.NewKeyStore(e.app, &postgres.KeyStoreConfig{RowLevelSecurity: true})
	require.NoError(t, err)
	acme := shred.Subject{Partition: "acme", ID: "c-1"}
	globex := shred.Subject{Partition: "globex", ID: "c-1"}
	_, err = ks.CreateKeys(ctx, []shred.Key{{Subject: acme, Version: 1, Secret: secret(1)}, {Subject: globex, Version: 1, Secret: secret(2)}})
	require.NoError(t, err)
	require.NoError(t, ks.Forget(ctx, globex))
	got, err := ks.Keys(ctx, []shred.Subject{acme, globex})
	require.NoError(t, err)
	require.Equal(t, secret(1), got[acme].Secret)
	require.True(t, got[globex].Forgotten)

	// Unscoped, the application role sees no key.
	unscoped, err := postgres.NewKeyStore(e.app, nil)
	require.NoError(t, err)
	got, err = unscoped.Keys(ctx, []shred.Subject{acme, globex})
	require.NoError(t, err)
	require.Empty(t, got)

	// Raw SQL scoped to a tenant reaches its own row only, and can't
	// write another tenant's.
	for _, tenant := range []string{"acme", "globex"} {
		err := pgx.BeginFunc(ctx, e.app, func(tx pgx.Tx) error {
			require.NoError(t, postgres.SetTenant(ctx, tx, store.TenantID(tenant)))
			var n int
			var part string
			require.NoError(t, tx.QueryRow(ctx, `SELECT count(*), min(partition) FROM subject_keys`).Scan(&n, &part))
			require.Equal(t, 1, n)
			require.Equal(t, tenant, part)
			_, err := tx.Exec(ctx, `INSERT INTO subject_keys (partition, subject, key) VALUES ('acme-other', 'x', '\x00')`)
			require.True(t, rlsViolation(err), "%v", err)
			return errors.New("roll back")
		})
		require.EqualError(t, err, "roll back")
	}

	// Migrating a database that already runs with row-level security
	// puts the policy on subject_keys.
	pool := pgtest.NewPool(t)
	migrateBefore(t, pool, 9)
	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, pool))
	require.NoError(t, postgres.Migrate(ctx, pool))
	var enabled, policy bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT c.relrowsecurity, EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $1)
		FROM pg_class c WHERE c.oid = 'subject_keys_default'::regclass`, postgres.TenantPolicyName).Scan(&enabled, &policy))
	require.True(t, enabled)
	require.True(t, policy)
}
