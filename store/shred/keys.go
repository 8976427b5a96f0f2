package shred

import (
	"context"
	"slices"
	"sync"

	"github.com/troupehq/troupe/store"
)

// KeySize is the size of a subject's key in bytes (AES-256).
const KeySize = 32

// Subject names a data subject: the value of an event's subject field, in
// the partition (tenant) of the event. The same id in two partitions is two
// subjects with two keys.
type Subject struct {
	// Partition is the partition of the subject's events; empty means
	// store.DefaultPartition.
	Partition string
	// ID is the value of the subject field.
	ID string
}

func (s Subject) String() string { return store.Partition(s.Partition) + "/" + s.ID }

// Key is a data subject's key as a KeyStore keeps it.
type Key struct {
	Subject Subject
	// Version is the key's version, recorded in every value it encrypts.
	Version int
	// Secret is the AES-256 key (KeySize bytes); nil when Forgotten.
	Secret []byte
	// Forgotten reports that the subject was forgotten: the key is gone
	// and the subject accepts no new personal data.
	Forgotten bool
}

// KeyStore keeps one key per data subject. Implementations: the
// in-memory [MemoryKeyStore] and store/postgres's KeyStore (table
// subject_keys). Every method is safe for concurrent use, and the
// Partition of every Subject passed is resolved (never empty).
type KeyStore interface {
	// Keys returns the stored keys of subjects: forgotten subjects with
	// Forgotten set and no Secret; subjects with neither a key nor a
	// tombstone are absent from the map.
	Keys(ctx context.Context, subjects []Subject) (map[Subject]Key, error)
	// CreateKeys returns the key of every subject of keys, storing the key
	// given for a subject that has none. A subject that already has a key
	// (also one stored by a concurrent call) or a tombstone gets the stored
	// one, so callers racing to create a subject's first key all end with
	// the same key.
	CreateKeys(ctx context.Context, keys []Key) (map[Subject]Key, error)
	// Forget deletes the subject's key and leaves a tombstone: Keys and
	// CreateKeys report it Forgotten from then on. Forgetting a subject
	// without a key leaves a tombstone too; forgetting twice is harmless.
	Forget(ctx context.Context, s Subject) error
}

// MemoryKeyStore is a KeyStore in memory, for store/memory and tests. The
// zero value is not usable; use NewMemoryKeyStore.
type MemoryKeyStore struct {
	mu   sync.Mutex
	keys map[Subject]Key
}

// NewMemoryKeyStore returns an empty MemoryKeyStore.
func NewMemoryKeyStore() *MemoryKeyStore { return &MemoryKeyStore{keys: map[Subject]Key{}} }

var _ KeyStore = (*MemoryKeyStore)(nil)

// Keys implements KeyStore.
func (m *MemoryKeyStore) Keys(_ context.Context, subjects []Subject) (map[Subject]Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[Subject]Key, len(subjects))
	for _, s := range subjects {
		if k, ok := m.keys[s]; ok {
			out[s] = cloneKey(k)
		}
	}
	return out, nil
}

// CreateKeys implements KeyStore.
func (m *MemoryKeyStore) CreateKeys(_ context.Context, keys []Key) (map[Subject]Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[Subject]Key, len(keys))
	for _, k := range keys {
		if len(k.Secret) != KeySize {
			return nil, store.InvalidArgument("create key of subject %s: %d-byte secret, want %d", k.Subject, len(k.Secret), KeySize)
		}
		stored, ok := m.keys[k.Subject]
		if !ok {
			stored = cloneKey(k)
			stored.Forgotten = false
			m.keys[k.Subject] = stored
		}
		out[k.Subject] = cloneKey(stored)
	}
	return out, nil
}

// Forget implements KeyStore.
func (m *MemoryKeyStore) Forget(_ context.Context, s Subject) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[s]
	if !ok {
		k = Key{Subject: s, Version: 1}
	}
	clear(k.Secret)
	k.Secret, k.Forgotten = nil, true
	m.keys[s] = k
	return nil
}

// Delete removes the subject's key and tombstone as if they never were:
// what deleting its row by hand does to a database. It exists for tests of
// a missing key.
func (m *MemoryKeyStore) Delete(s Subject) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keys, s)
}

func cloneKey(k Key) Key {
	k.Secret = slices.Clone(k.Secret)
	return k
}
