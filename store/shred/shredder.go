package shred

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/troupehq/troupe/store"
)

// Defaults of Config.
const (
	DefaultCacheSize = 10000
	DefaultCacheTTL  = time.Minute
)

// Config configures a Shredder.
type Config struct {
	// Codec names the event types: each sample of Events is encoded with
	// it to learn the type name its events are stored under. Required.
	Codec store.Codec
	// Events are samples (zero values will do) of the event types with
	// personal fields, structs tagged as described in the package
	// documentation. Events of types not listed are stored as they come.
	// Required.
	Events []any
	// CacheSize is how many subjects' keys (and tombstones) are kept in
	// memory. Defaults to DefaultCacheSize; negative disables the cache.
	CacheSize int
	// SnapshotSubject, when set, names the data subject whose key
	// encrypts an aggregate snapshot saved through a wrapped store
	// (store.SnapshotStore.SaveSnapshot), from the snapshot's partition,
	// stream and name: the whole state is encrypted as one value. ok false
	// saves the snapshot as it is. Once the subject is forgotten, its
	// snapshots load as missing (the actor replays the redacted events)
	// and new ones are not saved. Defaults to nil: snapshots are saved as
	// they are (see docs/erasure.md).
	SnapshotSubject func(partition string, stream store.StreamID, name string) (subject string, ok bool)
	// CacheTTL is how long a cached key is used before it is read again:
	// the longest a process keeps encrypting and decrypting with a key
	// that another process forgot. Defaults to DefaultCacheTTL.
	CacheTTL time.Duration
}

// Shredder encrypts the personal fields of the events appended through the
// stores it wraps and decrypts them when read. It is safe for concurrent
// use; one Shredder serves any number of wrapped stores.
type Shredder struct {
	keys  KeyStore
	types map[string]*typeSpec
	ttl   time.Duration
	cache *lru.Cache[Subject, cached] // nil when disabled
	// snapSubject is Config.SnapshotSubject.
	snapSubject func(partition string, stream store.StreamID, name string) (string, bool)
	// forgets counts the Forget calls begun: keys read while one ran are
	// used but not cached, so a look-up racing a Forget can't put the
	// forgotten key back in the cache.
	forgets atomic.Uint64
}

// cached is a key as the cache holds it: its cipher ready.
type cached struct {
	key  Key
	aead cipher.AEAD // nil when forgotten
	at   time.Time
}

// New returns a Shredder keeping keys in keys. Config errors name the
// field (shred.Config.Events[2]).
func New(keys KeyStore, cfg *Config) (*Shredder, error) {
	if keys == nil || reflect.ValueOf(keys).Kind() == reflect.Pointer && reflect.ValueOf(keys).IsNil() {
		return nil, errors.New("shred.New: keys is nil")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Codec == nil {
		return nil, errors.New("shred.Config.Codec is nil")
	}
	if len(c.Events) == 0 {
		return nil, errors.New("shred.Config.Events is empty")
	}
	if c.CacheTTL < 0 {
		return nil, fmt.Errorf("shred.Config.CacheTTL is negative (%v)", c.CacheTTL)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	s := &Shredder{keys: keys, types: map[string]*typeSpec{}, ttl: c.CacheTTL, snapSubject: c.SnapshotSubject}
	for i, sample := range c.Events {
		if sample == nil {
			return nil, fmt.Errorf("shred.Config.Events[%d] is nil", i)
		}
		name, _, err := c.Codec.Encode(sample)
		if err != nil {
			return nil, fmt.Errorf("shred.Config.Events[%d] (%T): the codec does not encode it: %w", i, sample, err)
		}
		spec, err := specOf(name, reflect.TypeOf(sample))
		if err != nil {
			return nil, fmt.Errorf("shred.Config.Events[%d] (%s): %w", i, name, err)
		}
		if _, dup := s.types[name]; dup {
			return nil, fmt.Errorf("shred.Config.Events[%d]: event type %s is listed twice", i, name)
		}
		s.types[name] = spec
	}
	if c.CacheSize > 0 {
		cache, err := lru.New[Subject, cached](c.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("shred.Config.CacheSize: %w", err)
		}
		s.cache = cache
	}
	return s, nil
}

// Forget forgets a data subject of partition: its key is deleted, and
// from then on the personal values of its events read as redacted and an
// append of personal values for it is refused (ErrSubjectForgotten). The
// key leaves this Shredder's cache at once; another process's cache keeps
// it for at most its Config.CacheTTL. Read models that hold the subject's
// personal values keep them until they are rebuilt (see docs/erasure.md).
func (s *Shredder) Forget(ctx context.Context, partition, subject string) error {
	p, err := store.ValidatePartition(partition)
	if err != nil {
		return fmt.Errorf("forget subject %q: %w", subject, err)
	}
	if subject == "" {
		return store.InvalidArgument("forget: empty subject in partition %q", p)
	}
	sub := Subject{Partition: p, ID: subject}
	s.forgets.Add(1)
	if s.cache != nil {
		s.cache.Remove(sub)
	}
	err = s.keys.Forget(ctx, sub)
	s.forgets.Add(1)
	if s.cache != nil {
		s.cache.Remove(sub)
	}
	if err != nil {
		return fmt.Errorf("forget subject %q of partition %q: %w", subject, p, err)
	}
	return nil
}

// cachedKeys returns the cached keys of subjects and the subjects not in
// the cache (or expired).
func (s *Shredder) cachedKeys(subjects map[Subject]struct{}) (map[Subject]cached, []Subject) {
	found := make(map[Subject]cached, len(subjects))
	var missing []Subject
	now := time.Now()
	for sub := range subjects {
		if s.cache != nil {
			if c, ok := s.cache.Get(sub); ok && now.Sub(c.at) < s.ttl {
				found[sub] = c
				continue
			}
		}
		missing = append(missing, sub)
	}
	return found, missing
}

// remember turns stored keys into cache entries and caches them, unless
// a Forget ran since forgets was gen or runs while they are cached.
func (s *Shredder) remember(found map[Subject]cached, keys map[Subject]Key, gen uint64) error {
	now := time.Now()
	cache := s.cache != nil && s.forgets.Load() == gen
	for sub, k := range keys {
		c := cached{key: k, at: now}
		if !k.Forgotten {
			aead, err := newAEAD(k.Secret)
			if err != nil {
				return fmt.Errorf("key of data subject %s (version %d): %w", sub, k.Version, err)
			}
			c.aead = aead
		}
		c.key.Secret = nil
		found[sub] = c
		if cache {
			s.cache.Add(sub, c)
			// A Forget that began after the check above removes its
			// subject after bumping forgets: either it removes this entry
			// or this check sees the bump and does.
			if s.forgets.Load() != gen {
				s.cache.Remove(sub)
			}
		}
	}
	return nil
}

// lookup returns the keys of subjects for reading; subjects without key
// nor tombstone are absent.
func (s *Shredder) lookup(ctx context.Context, subjects map[Subject]struct{}) (map[Subject]cached, error) {
	gen := s.forgets.Load()
	found, missing := s.cachedKeys(subjects)
	if len(missing) == 0 {
		return found, nil
	}
	keys, err := s.keys.Keys(ctx, missing)
	if err != nil {
		return nil, fmt.Errorf("read the keys of %d data subjects: %w", len(missing), err)
	}
	return found, s.remember(found, keys, gen)
}

// obtain returns the keys of subjects for appending, creating the missing
// ones.
func (s *Shredder) obtain(ctx context.Context, subjects map[Subject]struct{}) (map[Subject]cached, error) {
	gen := s.forgets.Load()
	found, missing := s.cachedKeys(subjects)
	if len(missing) == 0 {
		return found, nil
	}
	fresh := make([]Key, len(missing))
	for i, sub := range missing {
		secret := make([]byte, KeySize)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("generate a key: %w", err)
		}
		fresh[i] = Key{Subject: sub, Version: 1, Secret: secret}
	}
	keys, err := s.keys.CreateKeys(ctx, fresh)
	if err != nil {
		return nil, err
	}
	for _, sub := range missing {
		if _, ok := keys[sub]; !ok {
			return nil, fmt.Errorf("the key store returned no key for data subject %s", sub)
		}
	}
	return found, s.remember(found, keys, gen)
}

// pending is one event of an append being encrypted.
type pending struct {
	spec   *typeSpec
	obj    map[string]json.RawMessage
	sub    Subject
	fields []field // the personal fields present
}

// parse checks one event of an append and finds its personal values.
// It returns nil for an event with nothing to encrypt.
func (s *Shredder) parse(stream store.StreamID, partition string, i int, e store.EventData) (*pending, error) {
	spec, ok := s.types[e.Type]
	if !ok {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(e.Data, &obj); err != nil || obj == nil {
		return nil, store.InvalidArgument("append to stream %q: event %d (%s): the body is not a JSON object, so its personal fields can't be found", stream, i, e.Type)
	}
	id, ok := subjectOf(obj[spec.subject.json])
	if !ok {
		return nil, store.InvalidArgument("append to stream %q: event %d (%s): the subject field %s (JSON %q) is empty or missing; an event with personal fields must name its data subject",
			stream, i, e.Type, spec.subject.gofn, spec.subject.json)
	}
	p := &pending{spec: spec, obj: obj, sub: Subject{Partition: partition, ID: id}}
	for _, f := range spec.personal {
		if _, present := obj[f.json]; present {
			p.fields = append(p.fields, f)
		}
	}
	if len(p.fields) == 0 {
		return nil, nil
	}
	return p, nil
}

// encryptPart prepares one append: it returns the events with their
// personal values encrypted, or the error refusing the append before
// anything is written. keys holds the keys obtained for the batch.
func (s *Shredder) encryptPart(stream store.StreamID, partition string, events []store.EventData, parsed []*pending, keys map[Subject]cached) ([]store.EventData, error) {
	out := make([]store.EventData, len(events))
	copy(out, events)
	for i, p := range parsed {
		if p == nil {
			continue
		}
		k := keys[p.sub]
		if k.key.Forgotten {
			return nil, fmt.Errorf("%w: append to stream %q: event %d (%s): %w: subject %q of partition %q accepts no personal data (field %s)",
				store.ErrInvalidArgument, stream, i, events[i].Type, ErrSubjectForgotten, p.sub.ID, partition, p.fields[0].gofn)
		}
		for _, f := range p.fields {
			v, err := seal(k.aead, partition, p.sub.ID, k.key.Version, p.obj[f.json])
			if err != nil {
				return nil, fmt.Errorf("append to stream %q: event %d (%s): encrypt field %s: %w", stream, i, events[i].Type, f.gofn, err)
			}
			p.obj[f.json] = v
		}
		data, err := json.Marshal(p.obj)
		if err != nil {
			return nil, fmt.Errorf("append to stream %q: event %d (%s): %w", stream, i, events[i].Type, err)
		}
		out[i].Data = data
	}
	return out, nil
}

// parsePart checks an append's events: every event of a listed type names
// its subject, and no body carries an encrypted value already.
func (s *Shredder) parsePart(stream store.StreamID, partition string, events []store.EventData, need map[Subject]struct{}) ([]*pending, error) {
	parsed := make([]*pending, len(events))
	for i, e := range events {
		if holdsMarker(e.Data) {
			return nil, store.InvalidArgument("append to stream %q: event %d (%s): the body holds the key %q, which is reserved for encrypted values",
				stream, i, e.Type, EncryptedKey)
		}
		p, err := s.parse(stream, partition, i, e)
		if err != nil {
			return nil, err
		}
		parsed[i] = p
		if p != nil {
			need[p.sub] = struct{}{}
		}
	}
	return parsed, nil
}

// keyError wraps a failure to obtain an append's keys: nothing of the
// append was written. Unless the key store said why (the tenant was
// dropped, the database refused), the error matches store.ErrUnavailable,
// so the append is safe to retry.
func keyError(stream store.StreamID, err error) error {
	if errors.Is(err, store.ErrTenantDropped) || errors.Is(err, store.ErrRefused) ||
		errors.Is(err, store.ErrInvalidArgument) || errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("append to stream %q: obtain the data subjects' keys, nothing was written: %w", stream, err)
	}
	return fmt.Errorf("append to stream %q: obtain the data subjects' keys: %w: nothing was written: %w", stream, store.ErrUnavailable, err)
}

// Decrypt decrypts the personal values of events read without a wrapped
// store (a read model's own SQL), as a wrapped store's reads do: a value
// of a forgotten subject is redacted, and the event's metadata lists it
// under MetaRedacted. events is not modified. An event whose subject's key
// is missing fails the whole call (a *KeyMissingError), naming the event.
func (s *Shredder) Decrypt(ctx context.Context, events []store.Event) ([]store.Event, error) {
	out := make([]store.Event, len(events))
	copy(out, events)
	if err := s.decrypt(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// decrypt decrypts events in place.
func (s *Shredder) decrypt(ctx context.Context, events []store.Event) error {
	need := map[Subject]struct{}{}
	encrypted := false
	for _, e := range events {
		if !containsMarker(e.Data) {
			continue
		}
		encrypted = true
		part := store.Partition(e.Partition)
		for _, id := range subjectsIn(e.Data) {
			need[Subject{Partition: part, ID: id}] = struct{}{}
		}
	}
	if !encrypted {
		return nil
	}
	keys, err := s.lookup(ctx, need)
	if err != nil {
		return err
	}
	for i := range events {
		e := &events[i]
		if !containsMarker(e.Data) {
			continue
		}
		part := store.Partition(e.Partition)
		var redacted []string
		data, changed, err := walk(e.Data, "", func(path string, sd sealed) (json.RawMessage, error) {
			sub := Subject{Partition: part, ID: sd.Subject}
			k, ok := keys[sub]
			if _, asked := need[sub]; !ok && !asked {
				// A subject the pre-pass did not see: look it up now.
				need[sub] = struct{}{}
				more, err := s.lookup(ctx, map[Subject]struct{}{sub: {}})
				if err != nil {
					return nil, err
				}
				k, ok = more[sub]
				if ok {
					keys[sub] = k
				}
			}
			switch {
			case !ok:
				return nil, &KeyMissingError{Type: e.Type, Stream: e.StreamID, Partition: e.Partition, Position: e.StreamPosition, Subject: sd.Subject, Path: path}
			case k.key.Forgotten:
				redacted = append(redacted, path)
				if v, ok := redactedByKind[sd.Kind]; ok {
					return v, nil
				}
				return json.RawMessage(`null`), nil
			case k.key.Version != sd.Version:
				return nil, fmt.Errorf("%w: the value at %q is encrypted with key version %d of data subject %q, whose key is at version %d",
					ErrUndecryptable, path, sd.Version, sd.Subject, k.key.Version)
			}
			v, err := open(k.aead, part, sd)
			if err != nil {
				return nil, fmt.Errorf("%w: the value at %q does not decrypt with the key of data subject %q (version %d): %v",
					ErrUndecryptable, path, sd.Subject, sd.Version, err)
			}
			return v, nil
		})
		if err != nil {
			var km *KeyMissingError
			if errors.As(err, &km) {
				return km
			}
			return eventError(*e, err)
		}
		if changed {
			e.Data = data
		}
		if len(redacted) > 0 {
			md := maps.Clone(e.Metadata)
			if md == nil {
				md = store.Metadata{}
			}
			md[MetaRedacted] = redacted
			e.Metadata = md
		}
	}
	return nil
}

func eventError(e store.Event, err error) error {
	return fmt.Errorf("event %s at position %d of stream %q in partition %q: %w", e.Type, e.StreamPosition, e.StreamID, e.Partition, err)
}

func containsMarker(data []byte) bool { return bytes.Contains(data, markerBytes) }

// holdsMarker reports whether an appended body holds EncryptedKey, also
// spelled with escapes (the database stores it unescaped).
func holdsMarker(data []byte) bool {
	if containsMarker(data) {
		return true
	}
	if !bytes.Contains(data, []byte(`\u`)) {
		return false
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return false // refused as invalid JSON by the store
	}
	norm, err := json.Marshal(v)
	return err == nil && containsMarker(norm)
}
