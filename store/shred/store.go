package shred

import (
	"context"
	"fmt"

	"github.com/troupehq/troupe/store"
)

// Wrap returns es with encryption: appends (AppendToStream, and
// AppendBatch when es is a store.BatchAppender) encrypt the personal
// fields of the events of the types in Config.Events, and reads
// (ReadStream, ReadAll) decrypt them, or redact those of forgotten
// subjects. The result implements store.BatchAppender and
// store.SnapshotStore exactly when es does; snapshots are saved as they
// are unless Config.SnapshotSubject names their subject (see
// docs/erasure.md). Sessions (WithSession) are wrapped too.
//
// Wrapping a store this Shredder already wraps returns it unchanged.
func (s *Shredder) Wrap(es store.EventStore) store.EventStore {
	if o, ok := es.(interface{ shredder() *Shredder }); ok && o.shredder() == s {
		return es
	}
	w := &Store{sh: s, inner: es}
	ba, batch := es.(store.BatchAppender)
	ss, snap := es.(store.SnapshotStore)
	switch {
	case batch && snap:
		return &batchSnapshotStore{w, ba, snapshots{s, ss}}
	case batch:
		return &batchStore{w, ba}
	case snap:
		return &snapshotStore{w, snapshots{s, ss}}
	}
	return w
}

// Store is a wrapped store without batches or snapshots, and the part of
// every wrapped store that encrypts and decrypts.
type Store struct {
	sh    *Shredder
	inner store.EventStore
}

func (w *Store) shredder() *Shredder { return w.sh }

// Unwrap returns the wrapped store.
func (w *Store) Unwrap() store.EventStore { return w.inner }

// AppendToStream implements store.EventStore: the events' personal values
// are encrypted before the inner store sees them. Bad input (see
// docs/erasure.md) writes nothing.
func (w *Store) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	partition, err := store.ValidatePartition(opts.Partition)
	if err != nil {
		return w.inner.AppendToStream(ctx, stream, events, opts) // the inner store names the error
	}
	need := map[Subject]struct{}{}
	parsed, err := w.sh.parsePart(stream, partition, events, need)
	if err != nil {
		return store.AppendResult{}, err
	}
	if len(need) == 0 {
		return w.inner.AppendToStream(ctx, stream, events, opts)
	}
	keys, err := w.sh.obtain(ctx, need)
	if err != nil {
		return store.AppendResult{}, keyError(stream, err)
	}
	enc, err := w.sh.encryptPart(stream, partition, events, parsed, keys)
	if err != nil {
		return store.AppendResult{}, err
	}
	return w.inner.AppendToStream(ctx, stream, enc, opts)
}

// ReadStream implements store.EventStore, decrypting what it returns. A
// missing key fails the read (a *KeyMissingError), returning no events.
func (w *Store) ReadStream(ctx context.Context, stream store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	res, err := w.inner.ReadStream(ctx, stream, opts)
	if err != nil {
		return res, err
	}
	if err := w.sh.decrypt(ctx, res.Events); err != nil {
		return store.ReadResult{}, err
	}
	return res, nil
}

// ReadAll implements store.EventStore, decrypting what it returns. A
// missing key fails the read (a *KeyMissingError), returning no events.
func (w *Store) ReadAll(ctx context.Context, opts store.ReadAllOptions) (store.ReadAllResult, error) {
	res, err := w.inner.ReadAll(ctx, opts)
	if err != nil {
		return res, err
	}
	if err := w.sh.decrypt(ctx, res.Events); err != nil {
		return store.ReadAllResult{}, err
	}
	return res, nil
}

// ArchiveStream implements store.EventStore.
func (w *Store) ArchiveStream(ctx context.Context, stream store.StreamID, opts store.ArchiveOptions) error {
	return w.inner.ArchiveStream(ctx, stream, opts)
}

// WithSession implements store.EventStore: fn gets the inner store's
// session, wrapped. Keys are created outside the session's transaction
// (a rolled-back session may leave a key behind, which encrypts nothing).
func (w *Store) WithSession(ctx context.Context, fn func(ctx context.Context, s store.EventStore) error) error {
	return w.inner.WithSession(ctx, func(ctx context.Context, s store.EventStore) error {
		return fn(ctx, w.sh.Wrap(s))
	})
}

// appendBatch encrypts every part of a batch (the keys of all parts in one
// key store call) and sends the parts that passed to the inner store.
func (w *Store) appendBatch(ctx context.Context, ba store.BatchAppender, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	results := make([]store.StreamAppendResult, len(appends))
	parsed := make([][]*pending, len(appends))
	partitions := make([]string, len(appends))
	need := map[Subject]struct{}{}
	needed := make([]bool, len(appends))
	for i, a := range appends {
		partition, err := store.ValidatePartition(a.Options.Partition)
		if err != nil {
			continue // the inner store refuses it
		}
		partitions[i] = partition
		partNeed := map[Subject]struct{}{}
		if parsed[i], results[i].Err = w.sh.parsePart(a.Stream, partition, a.Events, partNeed); results[i].Err != nil {
			continue
		}
		for sub := range partNeed {
			need[sub] = struct{}{}
		}
		needed[i] = len(partNeed) > 0
	}
	// The keys of each partition are obtained on their own, so that one
	// partition's failure (a dropped tenant) fails only its parts.
	keys := make(map[Subject]cached, len(need))
	keysErr := map[string]error{}
	perPartition := map[string]map[Subject]struct{}{}
	for sub := range need {
		if perPartition[sub.Partition] == nil {
			perPartition[sub.Partition] = map[Subject]struct{}{}
		}
		perPartition[sub.Partition][sub] = struct{}{}
	}
	for partition, subs := range perPartition {
		got, err := w.sh.obtain(ctx, subs)
		if err != nil {
			keysErr[partition] = err
			continue
		}
		for sub, k := range got {
			keys[sub] = k
		}
	}
	send := make([]store.StreamAppend, 0, len(appends))
	sent := make([]int, 0, len(appends))
	for i, a := range appends {
		if results[i].Err != nil {
			continue
		}
		if needed[i] {
			if err := keysErr[partitions[i]]; err != nil {
				results[i].Err = keyError(a.Stream, err)
				continue
			}
			enc, err := w.sh.encryptPart(a.Stream, partitions[i], a.Events, parsed[i], keys)
			if err != nil {
				results[i].Err = err
				continue
			}
			a.Events = enc
		}
		send = append(send, a)
		sent = append(sent, i)
	}
	if len(send) == 0 {
		return results, nil
	}
	inner, err := ba.AppendBatch(ctx, send)
	if err != nil {
		return nil, err
	}
	for j, i := range sent {
		results[i] = inner[j]
	}
	return results, nil
}

type batchStore struct {
	*Store
	ba store.BatchAppender
}

// AppendBatch implements store.BatchAppender: parts refused by the
// encryption (see AppendToStream) fail on their own, the others go to the
// inner store's batch.
func (b *batchStore) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	return b.appendBatch(ctx, b.ba, appends)
}

type snapshotStore struct {
	*Store
	snapshots
}

type batchSnapshotStore struct {
	*Store
	ba store.BatchAppender
	snapshots
}

func (b *batchSnapshotStore) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	return b.appendBatch(ctx, b.ba, appends)
}

// snapshots is the store.SnapshotStore of a wrapped store.
type snapshots struct {
	sh    *Shredder
	inner store.SnapshotStore
}

// SaveSnapshot implements store.SnapshotStore: with Config.SnapshotSubject
// naming the snapshot's subject, the state is encrypted with its key, and
// nothing is saved for a forgotten subject.
func (ss snapshots) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if ss.sh.snapSubject == nil {
		return ss.inner.SaveSnapshot(ctx, snap)
	}
	subject, ok := ss.sh.snapSubject(snap.Partition, snap.Stream, snap.Name)
	if !ok {
		return ss.inner.SaveSnapshot(ctx, snap)
	}
	partition, err := store.ValidatePartition(snap.Partition)
	if err != nil {
		return ss.inner.SaveSnapshot(ctx, snap) // the inner store names the error
	}
	if subject == "" {
		return store.InvalidArgument("save snapshot %q of stream %q in partition %q: shred.Config.SnapshotSubject returned an empty subject",
			snap.Name, snap.Stream, partition)
	}
	sub := Subject{Partition: partition, ID: subject}
	keys, err := ss.sh.obtain(ctx, map[Subject]struct{}{sub: {}})
	if err != nil {
		return fmt.Errorf("save snapshot %q of stream %q in partition %q: obtain the key of data subject %q: %w",
			snap.Name, snap.Stream, partition, subject, err)
	}
	k := keys[sub]
	if k.key.Forgotten {
		return nil // a forgotten subject's state is not kept
	}
	state, err := seal(k.aead, partition, subject, k.key.Version, snap.State)
	if err != nil {
		return fmt.Errorf("save snapshot %q of stream %q: encrypt: %w", snap.Name, snap.Stream, err)
	}
	snap.State = state
	return ss.inner.SaveSnapshot(ctx, snap)
}

// LoadSnapshot implements store.SnapshotStore: an encrypted state is
// decrypted; one of a forgotten subject is reported missing.
func (ss snapshots) LoadSnapshot(ctx context.Context, partition string, stream store.StreamID, name string) (store.Snapshot, bool, error) {
	snap, ok, err := ss.inner.LoadSnapshot(ctx, partition, stream, name)
	if err != nil || !ok || !containsMarker(snap.State) {
		return snap, ok, err
	}
	ev := []store.Event{{Type: "snapshot " + name, Data: snap.State, StreamID: stream, Partition: store.Partition(partition),
		StreamPosition: snap.Version}}
	if err := ss.sh.decrypt(ctx, ev); err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot: %w", err)
	}
	if _, redacted := ev[0].Metadata[MetaRedacted]; redacted {
		return store.Snapshot{}, false, nil
	}
	snap.State = ev[0].Data
	return snap, true, nil
}
