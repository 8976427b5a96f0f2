package memory

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/internal/upcasting"
)

// streamKey names a live (not archived) stream.
type streamKey struct {
	partition string
	id        store.StreamID
}

// idKey names a message id; ids are unique per partition, archived events
// included, as in the PostgreSQL schema.
type idKey struct {
	partition string
	messageID string
}

type snapshotKey struct {
	partition string
	stream    store.StreamID
	name      string
}

type stream struct {
	key      streamKey
	typ      string
	records  []*record // records[i] is at position i+1
	archived bool
}

// incarnation is the global position of the stream's first event.
func (s *stream) incarnation() store.Incarnation {
	if len(s.records) == 0 {
		return 0
	}
	return store.Incarnation(s.records[0].global)
}

func (s *stream) version() store.Version { return store.Version(len(s.records)) }

// record is one stored event. Records are never mutated after they are
// appended; reads copy them into store.Event values.
type record struct {
	stream        *stream
	position      store.Version
	global        store.GlobalPosition
	tx            uint64
	typ           string
	data          json.RawMessage
	meta          []byte // the caller's metadata as a JSON object, nil when none
	messageID     string
	schemaVersion string
	created       time.Time
}

func (r *record) pos() store.Position {
	return store.Position{TransactionID: r.tx, GlobalPosition: r.global}
}

// event renders r as the store.Event a reader gets: fresh copies of the
// data and metadata, system metadata keys filled from the record.
func (r *record) event() (store.Event, error) {
	meta := store.Metadata{}
	if len(r.meta) > 0 {
		if err := json.Unmarshal(r.meta, &meta); err != nil {
			return store.Event{}, fmt.Errorf("decode metadata of event %d of stream %q: %w", r.position, r.stream.key.id, err)
		}
	}
	meta[store.MetaMessageID] = r.messageID
	meta[store.MetaStreamID] = string(r.stream.key.id)
	meta[store.MetaStreamPosition] = r.position
	meta[store.MetaGlobalPosition] = r.global
	meta[store.MetaPartition] = r.stream.key.partition
	return store.Event{
		Type:           r.typ,
		Data:           append(json.RawMessage(nil), r.data...),
		Metadata:       meta,
		MessageID:      r.messageID,
		StreamID:       r.stream.key.id,
		StreamType:     r.stream.typ,
		Partition:      r.stream.key.partition,
		StreamPosition: r.position,
		GlobalPosition: r.global,
		TransactionID:  r.tx,
		Created:        r.created,
		SchemaVersion:  r.schemaVersion,
		Incarnation:    r.stream.incarnation(),
	}, nil
}

// state is everything the store holds. It is only touched by the holder of
// the store lock.
type state struct {
	streams    map[streamKey]*stream
	log        []*record // every record ever committed or pending, in (tx, global) order
	ids        map[idKey]*record
	snapshots  map[snapshotKey]store.Snapshot
	lastTx     uint64 // the id of the last committed transaction
	lastGlobal store.GlobalPosition
}

func newState() *state {
	return &state{
		streams:   map[streamKey]*stream{},
		ids:       map[idKey]*record{},
		snapshots: map[snapshotKey]store.Snapshot{},
	}
}

// txn is one transaction on the state: the writes it made and how to undo
// them. The store lock is held for its whole life.
type txn struct {
	st    *state
	id    uint64 // taken on the first write; 0 before
	undo  []func()
	wrote bool // whether it appended events (for change notification)
	now   func() time.Time
}

func (t *txn) txID() uint64 {
	if t.id == 0 {
		t.id = t.st.lastTx + 1
	}
	return t.id
}

// rollbackTo undoes every write made after mark, newest first.
func (t *txn) rollbackTo(mark int) {
	for i := len(t.undo) - 1; i >= mark; i-- {
		t.undo[i]()
	}
	t.undo = t.undo[:mark]
}

func (t *txn) rollback() { t.rollbackTo(0) }

// commit makes the transaction's events visible to ReadAll.
func (t *txn) commit() {
	if t.id != 0 {
		t.st.lastTx = t.id
	}
	t.undo = nil
}

func (t *txn) append(streamID store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	events, opts, err := store.PrepareAppend(streamID, events, opts)
	if err != nil {
		return store.AppendResult{}, err
	}
	metas := make([][]byte, len(events))
	for i, e := range events {
		if len(e.Metadata) == 0 {
			continue
		}
		b, err := json.Marshal(e.Metadata)
		if err != nil {
			return store.AppendResult{}, store.InvalidArgument("append to stream %q: event %d (%s) metadata: %v", streamID, i, e.Type, err)
		}
		metas[i] = b
	}

	st := t.st
	key := streamKey{partition: opts.Partition, id: streamID}
	str := st.streams[key]

	exists := str != nil
	var current store.Version
	var incarnation store.Incarnation
	if exists {
		current, incarnation = str.version(), str.incarnation()
	}
	conflict := &store.VersionConflictError{
		Stream: streamID, Partition: opts.Partition, Expected: opts.ExpectedVersion,
		Actual: current, ActualExists: exists,
		ExpectedIncarnation: opts.Incarnation, ActualIncarnation: incarnation,
	}
	if res, retry, err := t.checkRetry(str, key, events, opts.ExpectedVersion); err != nil || retry {
		if err == nil && conflict.IncarnationChanged() {
			return store.AppendResult{}, conflict
		}
		return res, err
	}
	if !opts.ExpectedVersion.Allows(exists, current) || conflict.IncarnationChanged() {
		return store.AppendResult{}, conflict
	}

	created := false
	if !exists {
		str = &stream{key: key, typ: opts.StreamType}
		st.streams[key] = str
		created = true
	}
	tx := t.txID()
	now := t.now().Round(0)
	prevLen, prevLog, prevGlobal := len(str.records), len(st.log), st.lastGlobal
	for i, e := range events {
		st.lastGlobal++
		r := &record{
			stream:        str,
			position:      current + store.Version(i) + 1,
			global:        st.lastGlobal,
			tx:            tx,
			typ:           e.Type,
			data:          append(json.RawMessage(nil), e.Data...),
			meta:          metas[i],
			messageID:     e.MessageID,
			schemaVersion: e.SchemaVersion,
			created:       now,
		}
		str.records = append(str.records, r)
		st.log = append(st.log, r)
		st.ids[idKey{partition: key.partition, messageID: e.MessageID}] = r
	}
	t.wrote = true
	t.undo = append(t.undo, func() {
		for _, e := range events {
			delete(st.ids, idKey{partition: key.partition, messageID: e.MessageID})
		}
		clear(str.records[prevLen:])
		str.records = str.records[:prevLen]
		clear(st.log[prevLog:])
		st.log = st.log[:prevLog]
		st.lastGlobal = prevGlobal
		if created {
			delete(st.streams, key)
		}
	})
	last := str.records[len(str.records)-1]
	return store.AppendResult{
		NextExpectedVersion: last.position,
		LastGlobalPosition:  last.global,
		TransactionID:       tx,
		CreatedNewStream:    created,
		Incarnation:         str.incarnation(),
	}, nil
}

// checkRetry looks the append's message ids up. None stored: a new append
// (retry false). All stored, in this live stream, at contiguous positions in
// the same order (and after version n for Exact(n)): an idempotent retry,
// answered with the original result. Anything else is a duplicate.
func (t *txn) checkRetry(str *stream, key streamKey, events []store.EventData, expected store.ExpectedVersion) (store.AppendResult, bool, error) {
	stored := make([]*record, len(events))
	found := 0
	for i, e := range events {
		if r, ok := t.st.ids[idKey{partition: key.partition, messageID: e.MessageID}]; ok {
			stored[i] = r
			found++
		}
	}
	if found == 0 {
		return store.AppendResult{}, false, nil
	}
	dup := func(i int, why string, args ...any) error {
		return fmt.Errorf("%w: append to stream %q in partition %q: message id %q %s",
			store.ErrDuplicateMessageID, key.id, key.partition, events[i].MessageID, fmt.Sprintf(why, args...))
	}
	for i, r := range stored {
		if r == nil {
			continue
		}
		if r.stream.archived {
			return store.AppendResult{}, false, dup(i, "is already stored in archived stream %q", r.stream.key.id)
		}
		if r.stream != str {
			return store.AppendResult{}, false, dup(i, "is already stored in another stream (%q)", r.stream.key.id)
		}
		if found < len(events) {
			return store.AppendResult{}, false, dup(i, "is already stored at position %d but other events of the append are new", r.position)
		}
		if r.position != stored[0].position+store.Version(i) {
			return store.AppendResult{}, false, dup(i, "is already stored at position %d, not in the order of this append", r.position)
		}
	}
	first := stored[0].position
	if n, exact := expected.Exact(); exact && first != n+1 {
		return store.AppendResult{}, false, dup(0, "is already stored at position %d, not at version %d + 1", first, n)
	}
	last := stored[len(stored)-1]
	return store.AppendResult{
		NextExpectedVersion: last.position,
		LastGlobalPosition:  last.global,
		TransactionID:       last.tx,
		CreatedNewStream:    first == 1,
		Incarnation:         str.incarnation(),
	}, true, nil
}

// readUpcast is read with up applied (none when up is nil).
func (t *txn) readUpcast(up store.Upcaster, streamID store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	return upcasting.ReadStream(up, opts, func(o store.ReadOptions) (store.ReadResult, error) { return t.read(streamID, o) })
}

// readAllUpcast is readAll with up applied (none when up is nil).
func (t *txn) readAllUpcast(up store.Upcaster, opts store.ReadAllOptions) (store.ReadAllResult, error) {
	return upcasting.ReadAll(up, opts, t.readAll)
}

func (t *txn) read(streamID store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	if err := store.ValidateStreamID(streamID); err != nil {
		return store.ReadResult{}, err
	}
	partition, err := store.ValidatePartition(opts.Partition)
	if err != nil {
		return store.ReadResult{}, err
	}
	if opts.From < 0 || opts.To < 0 || opts.MaxCount < 0 {
		return store.ReadResult{}, store.InvalidArgument("read stream %q: negative From, To or MaxCount", streamID)
	}
	str := t.st.streams[streamKey{partition: partition, id: streamID}]
	if str == nil {
		return store.ReadResult{}, nil
	}
	res := store.ReadResult{CurrentVersion: str.version(), StreamExists: true, Incarnation: str.incarnation()}
	from, to := max(opts.From, 1), str.version()
	if opts.To > 0 && opts.To < to {
		to = opts.To
	}
	if opts.MaxCount > 0 && from+store.Version(opts.MaxCount)-1 < to {
		to = from + store.Version(opts.MaxCount) - 1
	}
	if to >= from {
		res.Events = make([]store.Event, 0, to-from+1)
	}
	for p := from; p <= to; p++ {
		e, err := str.records[p-1].event()
		if err != nil {
			return store.ReadResult{}, err
		}
		res.Events = append(res.Events, e)
	}
	return res, nil
}

// readAll returns committed events only, like a database reader that can't
// see uncommitted rows (its own transaction's included, as PostgreSQL's
// visibility guard also hides them).
func (t *txn) readAll(opts store.ReadAllOptions) (store.ReadAllResult, error) {
	res := store.ReadAllResult{Next: opts.After}
	if opts.Partition != "" {
		if _, err := store.ValidatePartition(opts.Partition); err != nil {
			return res, err
		}
	}
	if opts.Limit < 0 {
		return res, store.InvalidArgument("read all: negative Limit %d", opts.Limit)
	}
	limit := opts.Limit
	if limit == 0 {
		limit = store.DefaultReadAllLimit
	}
	var types map[string]bool
	if len(opts.Types) > 0 {
		types = make(map[string]bool, len(opts.Types))
		for _, typ := range opts.Types {
			types[typ] = true
		}
	}
	log := t.st.log
	i := sort.Search(len(log), func(i int) bool { return opts.After.Less(log[i].pos()) })
	for ; i < len(log) && len(res.Events) < limit; i++ {
		r := log[i]
		if r.tx > t.st.lastTx {
			break // pending in the current transaction
		}
		if r.stream.archived ||
			(opts.Partition != "" && r.stream.key.partition != opts.Partition) ||
			(types != nil && !types[r.typ]) {
			continue
		}
		e, err := r.event()
		if err != nil {
			return store.ReadAllResult{Next: opts.After}, err
		}
		res.Events = append(res.Events, e)
		res.Next = r.pos()
	}
	return res, nil
}

func (t *txn) archive(streamID store.StreamID, opts store.ArchiveOptions) error {
	if err := store.ValidateStreamID(streamID); err != nil {
		return err
	}
	partition, err := store.ValidatePartition(opts.Partition)
	if err != nil {
		return err
	}
	key := streamKey{partition: partition, id: streamID}
	str := t.st.streams[key]
	if str == nil {
		return fmt.Errorf("partition %q: %w", partition, store.ErrStreamNotFound)
	}
	str.archived = true
	delete(t.st.streams, key)
	// The stream's aggregate snapshots go with it.
	removed := map[snapshotKey]store.Snapshot{}
	for k, snap := range t.st.snapshots {
		if k.partition == partition && k.stream == streamID {
			removed[k] = snap
			delete(t.st.snapshots, k)
		}
	}
	t.undo = append(t.undo, func() {
		str.archived = false
		t.st.streams[key] = str
		for k, snap := range removed {
			t.st.snapshots[k] = snap
		}
	})
	return nil
}

func (t *txn) saveSnapshot(s store.Snapshot) error {
	if err := store.ValidateStreamID(s.Stream); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	partition, err := store.ValidatePartition(s.Partition)
	if err != nil {
		return fmt.Errorf("save snapshot of stream %q: %w", s.Stream, err)
	}
	if s.Version < 0 {
		return store.InvalidArgument("save snapshot of stream %q: negative version %d", s.Stream, s.Version)
	}
	if !json.Valid(s.State) {
		return store.InvalidArgument("save snapshot of stream %q: state is not valid JSON", s.Stream)
	}
	if s.Incarnation < 0 {
		return store.InvalidArgument("save snapshot of stream %q: negative incarnation %d", s.Stream, s.Incarnation)
	}
	if s.StateVersion < 0 || s.StateVersion > math.MaxInt32 {
		return store.InvalidArgument("save snapshot of stream %q: state version %d is not in 0..%d", s.Stream, s.StateVersion, math.MaxInt32)
	}
	var current store.Incarnation
	str := t.st.streams[streamKey{partition: partition, id: s.Stream}]
	if str != nil {
		current = str.incarnation()
	}
	if s.Incarnation != 0 && s.Incarnation != current {
		conflict := &store.VersionConflictError{Stream: s.Stream, Partition: partition, Expected: store.Any,
			ExpectedIncarnation: s.Incarnation, ActualIncarnation: current, ActualExists: str != nil}
		if str != nil {
			conflict.Actual = str.version()
		}
		return fmt.Errorf("save snapshot: %w", conflict)
	}
	s.Incarnation = current
	s.Partition = partition
	s.State = append(json.RawMessage(nil), s.State...)
	key := snapshotKey{partition: partition, stream: s.Stream, name: s.Name}
	old, had := t.st.snapshots[key]
	if had && old.Incarnation == s.Incarnation &&
		(old.StateVersion > s.StateVersion || old.StateVersion == s.StateVersion && old.Version > s.Version) {
		return nil
	}
	t.st.snapshots[key] = s
	t.undo = append(t.undo, func() {
		if had {
			t.st.snapshots[key] = old
		} else {
			delete(t.st.snapshots, key)
		}
	})
	return nil
}

func (t *txn) loadSnapshot(partition string, streamID store.StreamID, name string) (store.Snapshot, bool, error) {
	if err := store.ValidateStreamID(streamID); err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot: %w", err)
	}
	partition, err := store.ValidatePartition(partition)
	if err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot of stream %q: %w", streamID, err)
	}
	s, ok := t.st.snapshots[snapshotKey{partition: partition, stream: streamID, name: name}]
	if !ok {
		return store.Snapshot{}, false, nil
	}
	s.State = append(json.RawMessage(nil), s.State...)
	return s, true, nil
}
