package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// StreamID identifies a stream within a partition.
type StreamID string

// Version is a stream's version: the position of its last event. A stream
// with no events is at version 0; positions start at 1.
type Version int64

// GlobalPosition is an event's position in the store-wide log. Positions are
// unique and increase in the order they were taken, which is not always the
// order of commit; see [Position].
type GlobalPosition int64

// Incarnation identifies one life of a stream id. Archiving a stream (or
// dropping its tenant) ends its life; an append that starts a stream with
// the same id again begins a new incarnation, a new stream that shares
// nothing with the old one. Both stores use the global position of the
// incarnation's first event, so incarnations are unique across streams and
// partitions and a later life always has a greater one than an earlier
// life. The zero Incarnation means none (a missing stream) or unknown (a
// value recorded before incarnations were).
type Incarnation int64

// Position is a place in the global log in commit-safe order: events are
// ordered by (TransactionID, GlobalPosition). Consumers checkpoint a Position,
// never a bare GlobalPosition, so an event committed late by an older
// transaction is not skipped. The zero Position is the start of the log.
type Position struct {
	TransactionID  uint64
	GlobalPosition GlobalPosition
}

// Less reports whether p comes before q in commit-safe order.
func (p Position) Less(q Position) bool {
	if p.TransactionID != q.TransactionID {
		return p.TransactionID < q.TransactionID
	}
	return p.GlobalPosition < q.GlobalPosition
}

// Metadata is an event's metadata, stored as a JSON object.
type Metadata map[string]any

// Metadata keys with a meaning to Troupe. The system keys (message id, stream
// id, positions, partition) are filled in on read from the stored columns and
// override anything a caller put under the same name.
const (
	MetaMessageID      = "messageId"
	MetaStreamID       = "streamId"
	MetaStreamPosition = "streamPosition"
	MetaGlobalPosition = "globalPosition"
	MetaPartition      = "partition"
	// MetaSplitPart is set (0, 1, …) on each event of a split: a stored
	// event an upcaster split into several, which share its position.
	MetaSplitPart = "splitPart"

	// Caller-supplied keys persisted as given.
	MetaCorrelationID = "correlationId"
	MetaCausationID   = "causationId"
	MetaTraceParent   = "traceparent"
	MetaTraceState    = "tracestate"
)

// DefaultStreamType is the stream type recorded when an append names none.
const DefaultStreamType = "unknown"

// DefaultSchemaVersion is the schema version recorded when an event names none.
const DefaultSchemaVersion = "1"

// EventData is an event to append.
type EventData struct {
	// Type is the event type name. Required.
	Type string
	// Data is the event body, a JSON document. Required (use "{}" or "null"
	// for an event without a body).
	Data json.RawMessage
	// Metadata is stored with the event. Correlation id, causation id and
	// trace context go here under the Meta* keys.
	Metadata Metadata
	// MessageID identifies the event; a random UUID is generated when empty.
	// Appending an already stored message id again at the same positions is
	// an idempotent retry.
	MessageID string
	// SchemaVersion is the version of the event's schema. Defaults to "1".
	SchemaVersion string
}

// Event is a stored event as read back.
type Event struct {
	Type string
	Data json.RawMessage
	// Metadata is the stored metadata merged with the system keys
	// (MetaMessageID, MetaStreamID, MetaStreamPosition, MetaGlobalPosition,
	// MetaPartition), which always reflect the stored columns.
	Metadata       Metadata
	MessageID      string
	StreamID       StreamID
	StreamType     string
	Partition      string
	StreamPosition Version
	GlobalPosition GlobalPosition
	// TransactionID is the id of the database transaction that wrote the
	// event (xid8 in PostgreSQL; a commit counter in memory).
	TransactionID uint64
	Created       time.Time
	SchemaVersion string
	// Incarnation is the incarnation of the stream the event belongs to
	// (see [Incarnation]); zero when the store could not tell (for
	// example an event of an archived stream).
	Incarnation Incarnation
}

// Position returns the event's place in the global log.
func (e Event) Position() Position {
	return Position{TransactionID: e.TransactionID, GlobalPosition: e.GlobalPosition}
}

// String names the event for error messages and logs.
func (e Event) String() string {
	return fmt.Sprintf("%s@%s/%s#%d", e.Type, e.Partition, e.StreamID, e.StreamPosition)
}

// AppendOptions are the options of one append.
type AppendOptions struct {
	// Partition the stream lives in. Defaults to DefaultPartition.
	Partition string
	// StreamType is recorded when the append creates the stream and is
	// never changed afterwards. Defaults to DefaultStreamType.
	StreamType string
	// ExpectedVersion is checked atomically with the write. The zero value
	// is Any (no check).
	ExpectedVersion ExpectedVersion
	// Incarnation, when not zero, is checked atomically with the write like
	// ExpectedVersion: the append succeeds only when the stream exists and
	// is that incarnation, so a writer holding the state of a stream that
	// was archived (and maybe started again, longer or shorter) since gets
	// a *VersionConflictError instead of appending to the new stream. It
	// requires an existing stream: with NoStream or Exact(0) it is an
	// invalid argument.
	Incarnation Incarnation
}

// AppendResult is the outcome of a successful append.
type AppendResult struct {
	// NextExpectedVersion is the stream's version after the append (the
	// position of its last event).
	NextExpectedVersion Version
	// LastGlobalPosition is the global position of the last appended event.
	LastGlobalPosition GlobalPosition
	// TransactionID is the id of the transaction that wrote the events;
	// with LastGlobalPosition it is the [Position] a projection must reach
	// to have seen them.
	TransactionID uint64
	// CreatedNewStream reports whether the append created the stream.
	CreatedNewStream bool
	// Incarnation is the stream's incarnation: a new one when the append
	// created the stream.
	Incarnation Incarnation
}

// LastPosition returns the commit-safe position of the last appended event.
func (r AppendResult) LastPosition() Position {
	return Position{TransactionID: r.TransactionID, GlobalPosition: r.LastGlobalPosition}
}

// ReadOptions select part of one stream.
type ReadOptions struct {
	// Partition the stream lives in. Defaults to DefaultPartition.
	Partition string
	// From is the first stream position returned (inclusive). 0 or 1 reads
	// from the start.
	From Version
	// To is the last stream position returned (inclusive). 0 means no limit.
	To Version
	// MaxCount caps the number of events returned. 0 means no limit.
	MaxCount int
}

// ReadResult is the outcome of reading a stream. A missing (or archived)
// stream reads as no events, version 0, StreamExists false and
// Incarnation 0.
type ReadResult struct {
	Events         []Event
	CurrentVersion Version
	StreamExists   bool
	// Incarnation is the stream's incarnation, set on every read of an
	// existing stream, also when no event is in the range. A reader that
	// keeps state across reads (an actor, a per-stream checkpoint) compares
	// it with the incarnation it read before: when it differs, the stream
	// was archived and started again, and the state must be rebuilt from
	// the first event.
	Incarnation Incarnation
}

// ReadAllOptions select part of the global log.
type ReadAllOptions struct {
	// After is the checkpoint: only events after it in commit-safe order are
	// returned. The zero Position reads from the start.
	After Position
	// Partition limits the read to one partition. Empty reads every
	// partition.
	Partition string
	// Types limits the read to these event types. Empty reads every type.
	Types []string
	// Limit caps the number of events returned. 0 means DefaultReadAllLimit.
	Limit int
}

// DefaultReadAllLimit is the batch size of ReadAll when none is given.
const DefaultReadAllLimit = 1000

// ReadAllResult is one batch of the global log.
type ReadAllResult struct {
	// Events in commit-safe order. Only events no older in-flight
	// transaction can precede are returned.
	Events []Event
	// Next is the checkpoint to pass as After for the next batch: the
	// position of the last event returned, or After when none was.
	Next Position
}

// ArchiveOptions select the stream to archive.
type ArchiveOptions struct {
	// Partition the stream lives in. Defaults to DefaultPartition.
	Partition string
}

// EventStore is an append-only store of event streams.
//
// Every method is safe for concurrent use. Streams are scoped to a partition
// (a tenant): the same StreamID in two partitions is two streams.
type EventStore interface {
	// AppendToStream appends events atomically: all of them at contiguous
	// positions after the stream's current version, or none. A failed
	// expected-version check returns an error matching ErrVersionConflict
	// (as a *VersionConflictError).
	AppendToStream(ctx context.Context, stream StreamID, events []EventData, opts AppendOptions) (AppendResult, error)
	// ReadStream reads events of one stream in stream order.
	ReadStream(ctx context.Context, stream StreamID, opts ReadOptions) (ReadResult, error)
	// ReadAll reads a batch of the global log after a checkpoint, in
	// commit-safe order. That order is not always each stream's own order:
	// a transaction that took its id and then waited for a stream's lock
	// commits that stream's later event under a smaller transaction id.
	// Readers that fold per stream must order by StreamPosition themselves
	// (projection's snapshot projections do).
	ReadAll(ctx context.Context, opts ReadAllOptions) (ReadAllResult, error)
	// ArchiveStream archives a stream: afterwards it reads as missing and a
	// new stream with the same id may be started, as a new incarnation.
	// The stream's aggregate snapshots (SnapshotStore) are deleted in the
	// same transaction. Archiving a missing stream returns an error
	// matching ErrStreamNotFound.
	ArchiveStream(ctx context.Context, stream StreamID, opts ArchiveOptions) error
	// WithSession runs fn with a store whose operations all happen in one
	// transaction, committed when fn returns nil and rolled back when it
	// returns an error (which WithSession returns) or panics.
	WithSession(ctx context.Context, fn func(ctx context.Context, s EventStore) error) error
}

// Snapshot is an aggregate's state at one version of its stream.
type Snapshot struct {
	Partition string
	Stream    StreamID
	// Name tells snapshots of different aggregates (or state encodings) of
	// the same stream apart.
	Name    string
	Version Version
	State   json.RawMessage
	// Incarnation is the incarnation of the stream the state was folded
	// from. A loader must ignore a snapshot whose incarnation is not the
	// stream's current one (ReadResult.Incarnation), or is zero (unknown:
	// a snapshot saved before incarnations were recorded that could not be
	// verified when the schema was upgraded).
	Incarnation Incarnation
	// StateVersion is the version of the state's shape (its encoding),
	// chosen by the aggregate (actor.SnapshotConfig.Version). A loader
	// ignores a snapshot of another state version and folds the events
	// instead. 0 for a snapshot saved without one.
	StateVersion int
}

// SnapshotStore keeps aggregate snapshots. Backends that can implement it
// do; the actor host uses it when configured to snapshot.
type SnapshotStore interface {
	// SaveSnapshot stores s, replacing an older snapshot of the same
	// partition, stream and name, one of an older state version, or any
	// snapshot of another incarnation. A snapshot never replaces a newer
	// one of the same incarnation and state version, nor one of a newer
	// state version of the same incarnation (saved by a newer build).
	//
	// With s.Incarnation set, the save is checked atomically against the
	// stream: unless the stream exists and is that incarnation, nothing is
	// saved and a *VersionConflictError is returned, so a save racing an
	// archive can't leave the old life's state for a new stream with the
	// same id. A zero s.Incarnation is recorded as the stream's current
	// incarnation (zero when it does not exist) without that check.
	SaveSnapshot(ctx context.Context, s Snapshot) error
	// LoadSnapshot returns the latest snapshot of the stream under name;
	// ok is false when there is none.
	LoadSnapshot(ctx context.Context, partition string, stream StreamID, name string) (s Snapshot, ok bool, err error)
}
