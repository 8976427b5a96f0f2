package projection

import (
	"errors"
	"fmt"
	"strings"

	"github.com/troupehq/troupe/store"
)

var (
	// ErrInvalidConfig matches every rejected configuration; the message
	// names the field.
	ErrInvalidConfig = errors.New("invalid projection config")
	// ErrHandlerFailed matches every *HandlerError: a handler returned an
	// error for an event.
	ErrHandlerFailed = errors.New("projection handler failed")
	// ErrKeySetChanged matches every *KeySetError: a snapshot projection's
	// ExtractKeys returned a different set of key columns than before.
	ErrKeySetChanged = errors.New("snapshot projection key set changed")
	// ErrInvalidSnapshot matches every *SnapshotParseError: a stored
	// snapshot could not be decoded.
	ErrInvalidSnapshot = errors.New("invalid stored snapshot")
	// ErrAlreadyRunning is returned by Start, Run and Rebuild on a
	// projection or consumer that is already running in this process.
	ErrAlreadyRunning = errors.New("projection already running")
	// ErrFailed is returned by WaitFor when the projection stopped at a
	// failing event (stop policy) before reaching the position; the error
	// also matches ErrHandlerFailed and names the event.
	ErrFailed = errors.New("projection stopped on a failing event")
	// errConcurrentWrite reports that a snapshot row changed under a batch
	// (another writer inserted it first). The batch is rolled back and
	// retried; callers never see it unless retries run out.
	errConcurrentWrite = errors.New("snapshot row written concurrently")
	// errCheckpointMoved reports that the checkpoint moved under a batch
	// (another runner committed first). The batch is rolled back and the
	// runner reloads its checkpoint.
	errCheckpointMoved = errors.New("checkpoint moved")
)

// HandlerError is a handler failure for one event. errors.Is(err,
// ErrHandlerFailed) matches it and errors.Unwrap returns the handler's
// error.
type HandlerError struct {
	// Projection is the subscription or projection name.
	Projection string
	// Event is the event being handled. When a batch handler failed on a
	// batch of several events, Event is the first of them and Batch is
	// their number.
	Event store.Event
	Batch int
	// Attempts is how many times the event was tried.
	Attempts int
	Err      error
}

func (e *HandlerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "projection %q: handle %s (global position %d", e.Projection, e.Event, e.Event.GlobalPosition)
	if e.Batch > 1 {
		fmt.Fprintf(&b, ", first of a batch of %d", e.Batch)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, ", %d attempts", e.Attempts)
	}
	fmt.Fprintf(&b, "): %v", e.Err)
	return b.String()
}

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }

// Is reports whether target is ErrHandlerFailed.
func (e *HandlerError) Is(target error) bool { return target == ErrHandlerFailed }

// KeySetError reports that ExtractKeys returned a key set different from
// the one inferred from the first event. errors.Is(err, ErrKeySetChanged)
// matches it.
type KeySetError struct {
	Table    string
	Expected []string
	Received []string
}

func (e *KeySetError) Error() string {
	return fmt.Sprintf("snapshot projection %q: extract keys returned key columns [%s], expected [%s] (the key set must be the same for every event)",
		e.Table, strings.Join(e.Received, ", "), strings.Join(e.Expected, ", "))
}

// Is reports whether target is ErrKeySetChanged.
func (e *KeySetError) Is(target error) bool { return target == ErrKeySetChanged }

// maxShownSnapshot is how many characters of an undecodable snapshot a
// SnapshotParseError shows.
const maxShownSnapshot = 200

// SnapshotParseError reports a stored snapshot that is not valid JSON for
// the state type. errors.Is(err, ErrInvalidSnapshot) matches it.
type SnapshotParseError struct {
	Table string
	// Value is the stored value, cut to its first 200 characters.
	Value string
	// Truncated reports whether Value was cut.
	Truncated bool
	Err       error
}

func (e *SnapshotParseError) Error() string {
	more := ""
	if e.Truncated {
		more = "…"
	}
	return fmt.Sprintf("snapshot projection %q: stored snapshot is not valid JSON for the state (%v): %q%s",
		e.Table, e.Err, e.Value, more)
}

// Unwrap returns the decoding error.
func (e *SnapshotParseError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidSnapshot.
func (e *SnapshotParseError) Is(target error) bool { return target == ErrInvalidSnapshot }

// newSnapshotParseError builds the error for value, keeping at most
// maxShownSnapshot characters (runes, not bytes) of it.
func newSnapshotParseError(table, value string, err error) *SnapshotParseError {
	shown, truncated := value, false
	n := 0
	for i := range value {
		if n == maxShownSnapshot {
			shown, truncated = value[:i], true
			break
		}
		n++
	}
	return &SnapshotParseError{Table: table, Value: shown, Truncated: truncated, Err: err}
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}
