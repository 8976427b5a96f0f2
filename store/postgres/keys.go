package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/shred"
)

// KeyStoreConfig configures a KeyStore. The zero value (or nil) is ready
// to use.
type KeyStoreConfig struct {
	// RowLevelSecurity scopes each statement to the partition of the
	// subjects it reads or writes (see Config.RowLevelSecurity), for a pool
	// connecting as a role under the policies of EnableRowLevelSecurity.
	RowLevelSecurity bool
}

// KeyStore is the PostgreSQL shred.KeyStore: one row per data subject in
// the subject_keys table (schema v9), a tenant table, so that dropping a
// tenant drops its subjects' keys. It is safe for concurrent use.
//
// Creating a subject's first key is race-safe: of several processes
// creating it at once, one inserts its key and every other gets that one.
// Forget sets the key to NULL and records when; PostgreSQL keeps the old
// row version on disk until VACUUM reclaims it (see docs/erasure.md).
type KeyStore struct {
	db  DB
	rls bool
}

var _ shred.KeyStore = (*KeyStore)(nil)

// NewKeyStore returns a KeyStore on db, a *pgxpool.Pool (usually the
// event store's), a *pgx.Conn or a pgx.Tx. The schema must be migrated.
// cfg may be nil.
func NewKeyStore(db DB, cfg *KeyStoreConfig) (*KeyStore, error) {
	if IsNil(db) {
		return nil, errors.New("postgres.NewKeyStore: db is nil")
	}
	k := &KeyStore{db: db}
	if cfg != nil {
		k.rls = cfg.RowLevelSecurity
	}
	return k, nil
}

const (
	keysReadSQL = `SELECT subject, version, key FROM subject_keys WHERE partition = $1 AND subject = ANY($2::text[])`
	// The subjects are sorted, so concurrent inserts lock them in one
	// order and can't deadlock; a conflicting insert waits for the other's
	// commit and then does nothing, and the read that follows (a statement
	// of its own, so a snapshot of its own) sees the winner's key.
	keysCreateSQL = `INSERT INTO subject_keys (partition, subject, version, key)
SELECT $1, t.subject, t.version, t.key FROM unnest($2::text[], $3::int[], $4::bytea[]) WITH ORDINALITY AS t (subject, version, key, n)
ORDER BY t.n
ON CONFLICT (partition, subject) DO NOTHING`
	keysForgetSQL = `INSERT INTO subject_keys (partition, subject, key, forgotten) VALUES ($1, $2, NULL, now())
ON CONFLICT (partition, subject) DO UPDATE SET key = NULL, forgotten = coalesce(subject_keys.forgotten, now())`
)

// byPartition groups subjects by partition, each group sorted, the groups
// in partition order.
func byPartition[T any](items []T, sub func(T) shred.Subject) [][]T {
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, func(a, b T) int {
		sa, sb := sub(a), sub(b)
		return cmp.Or(cmp.Compare(sa.Partition, sb.Partition), cmp.Compare(sa.ID, sb.ID))
	})
	var out [][]T
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sub(sorted[j]).Partition == sub(sorted[i]).Partition {
			j++
		}
		out = append(out, slices.CompactFunc(sorted[i:j:j], func(a, b T) bool { return sub(a) == sub(b) }))
		i = j
	}
	return out
}

// Keys implements shred.KeyStore.
func (k *KeyStore) Keys(ctx context.Context, subjects []shred.Subject) (map[shred.Subject]shred.Key, error) {
	out := make(map[shred.Subject]shred.Key, len(subjects))
	groups := byPartition(subjects, func(s shred.Subject) shred.Subject { return s })
	b := &pgx.Batch{}
	for _, g := range groups {
		if k.rls {
			b.Queue(SetTenantSQL, g[0].Partition)
		}
		ids := make([]string, len(g))
		for i, s := range g {
			ids[i] = s.ID
		}
		partition := g[0].Partition
		b.Queue(keysReadSQL, partition, ids).Query(func(rows pgx.Rows) error {
			return scanKeys(rows, partition, out)
		})
	}
	if err := k.run(ctx, b); err != nil {
		return nil, keyStoreError("read subject keys", err)
	}
	return out, nil
}

// CreateKeys implements shred.KeyStore.
func (k *KeyStore) CreateKeys(ctx context.Context, keys []shred.Key) (map[shred.Subject]shred.Key, error) {
	out := make(map[shred.Subject]shred.Key, len(keys))
	groups := byPartition(keys, func(k shred.Key) shred.Subject { return k.Subject })
	b := &pgx.Batch{}
	for _, g := range groups {
		partition := g[0].Subject.Partition
		if err := store.ValidateTenantID(partition); err != nil {
			return nil, store.InvalidArgument("create subject keys: partition: %v", err)
		}
		ids := make([]string, len(g))
		versions := make([]int32, len(g))
		secrets := make([][]byte, len(g))
		for i, key := range g {
			if len(key.Secret) != shred.KeySize {
				return nil, store.InvalidArgument("create key of subject %s: %d-byte secret, want %d", key.Subject, len(key.Secret), shred.KeySize)
			}
			ids[i], versions[i], secrets[i] = key.Subject.ID, int32(max(key.Version, 1)), key.Secret
		}
		if k.rls {
			b.Queue(SetTenantSQL, partition)
		}
		b.Queue(keysCreateSQL, partition, ids, versions, secrets)
		b.Queue(keysReadSQL, partition, ids).Query(func(rows pgx.Rows) error {
			return scanKeys(rows, partition, out)
		})
	}
	if err := k.run(ctx, b); err != nil {
		if IsTenantDropped(err) {
			return nil, fmt.Errorf("create subject keys: %w: nothing was written: %w", store.ErrTenantDropped, err)
		}
		return nil, keyStoreError("create subject keys", err)
	}
	return out, nil
}

// Forget implements shred.KeyStore.
func (k *KeyStore) Forget(ctx context.Context, s shred.Subject) error {
	if err := store.ValidateTenantID(s.Partition); err != nil {
		return store.InvalidArgument("forget subject %q: partition: %v", s.ID, err)
	}
	b := &pgx.Batch{}
	if k.rls {
		b.Queue(SetTenantSQL, s.Partition)
	}
	b.Queue(keysForgetSQL, s.Partition, s.ID)
	if err := k.run(ctx, b); err != nil {
		if IsTenantDropped(err) {
			// The tenant's data, keys included, is gone already.
			return nil
		}
		return keyStoreError("forget subject "+s.String(), err)
	}
	return nil
}

// run sends b: in a transaction of its own when row-level security needs
// the tenant settings to last, as an implicit one otherwise.
func (k *KeyStore) run(ctx context.Context, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	if !k.rls {
		return k.db.SendBatch(ctx, b).Close()
	}
	return pgx.BeginFunc(ctx, k.db, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
}

func scanKeys(rows pgx.Rows, partition string, out map[shred.Subject]shred.Key) error {
	var (
		id      string
		version int32
		secret  []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &version, &secret}, func() error {
		s := shred.Subject{Partition: partition, ID: id}
		out[s] = shred.Key{Subject: s, Version: int(version), Secret: slices.Clone(secret), Forgotten: secret == nil}
		return nil
	})
	return err
}

// keyStoreError classifies a failed key store statement like the event
// store's: never sent (store.ErrUnavailable), refused by the database
// (store.ErrRefused), or as is.
func keyStoreError(what string, err error) error {
	switch {
	case notSent(err):
		return unavailable(what, err)
	case sqlstateClass(err) == classSyntaxOrAccess:
		return fmt.Errorf("%s: %w: %w", what, store.ErrRefused, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
