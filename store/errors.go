package store

import (
	"errors"
	"fmt"
)

var (
	// ErrVersionConflict matches every failed expected-version check,
	// including two writers racing to create the same stream.
	ErrVersionConflict = errors.New("version conflict")
	// ErrStreamNotFound is returned where an operation needs an existing
	// stream (ArchiveStream). An expected-version check that needs one
	// (StreamExists, in an append or in AggregateStream) fails with a
	// *VersionConflictError whose ActualExists is false instead.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrInvalidArgument matches every rejected input (empty append, empty
	// stream id, invalid partition, event without type or data). Nothing
	// is written when it is returned.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrDuplicateMessageID is returned when an append reuses message ids
	// already stored somewhere other than the positions of an identical
	// earlier append, so it is neither new nor an idempotent retry.
	ErrDuplicateMessageID = errors.New("duplicate message id")
	// ErrUnknownEventType is returned by a codec asked to decode a type it
	// has no registration for.
	ErrUnknownEventType = errors.New("unknown event type")
	// ErrUnavailable is returned when an operation never reached the
	// database: no connection could be made (connection refused, server
	// starting or shutting down, no connection slot left), none could be
	// had from the pool before the context ended, or the request failed
	// before any of it was sent. Nothing was written; retrying the same
	// operation later is safe. The error also matches the cause (for
	// example context.DeadlineExceeded).
	ErrUnavailable = errors.New("store unavailable")
	// ErrRefused is returned when the database refused an operation for a
	// reason other than its input, in a way that proves nothing was written
	// (insufficient privilege, a missing table or column: SQLSTATE class
	// 42). Retrying it as is fails the same way.
	ErrRefused = errors.New("refused by the database")
	// ErrTenantDropped is returned when a write names a tenant (partition)
	// that was dropped: its data was erased and it accepts no writes until
	// it is created again, as a new tenant. Nothing was written; retrying
	// the same write fails the same way.
	ErrTenantDropped = errors.New("the tenant (partition) was dropped; it accepts no writes")
)

// VersionConflictError is the detail of a failed expected-version check.
// errors.Is(err, ErrVersionConflict) matches it.
type VersionConflictError struct {
	Stream    StreamID
	Partition string
	Expected  ExpectedVersion
	// Actual is the stream's version when the check failed (0 for a
	// missing stream). ActualExists says whether the stream existed.
	Actual       Version
	ActualExists bool
	// ExpectedIncarnation is the incarnation the operation required
	// (AppendOptions.Incarnation, Snapshot.Incarnation); zero when none.
	// ActualIncarnation is the stream's incarnation when the check failed
	// (zero for a missing stream). When both are set and differ, the
	// stream was archived and started again since the caller read it.
	ExpectedIncarnation Incarnation
	ActualIncarnation   Incarnation
}

// IncarnationChanged reports whether the conflict is because the stream is
// no longer the incarnation the caller expected (archived, and maybe
// started again): the caller's state of the stream must be rebuilt from
// the first event rather than from where it stopped.
func (e *VersionConflictError) IncarnationChanged() bool {
	return e.ExpectedIncarnation != 0 && e.ExpectedIncarnation != e.ActualIncarnation
}

func (e *VersionConflictError) Error() string {
	actual := fmt.Sprintf("%d", e.Actual)
	if !e.ActualExists {
		actual = "no stream"
	}
	if e.IncarnationChanged() {
		return fmt.Sprintf("version conflict on stream %q in partition %q: expected incarnation %d at %s, current incarnation %d at %s",
			e.Stream, e.Partition, e.ExpectedIncarnation, e.Expected, e.ActualIncarnation, actual)
	}
	return fmt.Sprintf("version conflict on stream %q in partition %q: expected %s, current %s",
		e.Stream, e.Partition, e.Expected, actual)
}

// Is reports whether target is ErrVersionConflict.
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }

// InvalidArgument returns an error matching ErrInvalidArgument with a
// message naming what was wrong.
func InvalidArgument(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// UnknownEventTypeError names an event that could not be decoded because
// its type is not registered. errors.Is(err, ErrUnknownEventType) matches it.
type UnknownEventTypeError struct {
	Type string
	// SchemaVersion is the event's schema version ("" when not known).
	SchemaVersion string
	Stream        StreamID
	Partition     string
	Position      Version
}

func (e *UnknownEventTypeError) Error() string {
	if e.SchemaVersion != "" {
		return fmt.Sprintf("unknown event type %q (schema version %q) at position %d of stream %q in partition %q",
			e.Type, e.SchemaVersion, e.Position, e.Stream, e.Partition)
	}
	return fmt.Sprintf("unknown event type %q at position %d of stream %q in partition %q",
		e.Type, e.Position, e.Stream, e.Partition)
}

// Is reports whether target is ErrUnknownEventType.
func (e *UnknownEventTypeError) Is(target error) bool { return target == ErrUnknownEventType }
