package readmodel

import (
	"errors"
	"fmt"
	"strings"

	"github.com/troupehq/troupe/projection/internal/cfgerr"
)

var (
	// ErrKeySetChanged matches every *KeySetError: a read model's
	// ExtractKeys returned a different set of key columns than before.
	ErrKeySetChanged = errors.New("read model key set changed")
	// ErrInvalidState matches every *StateParseError: a row's stored state
	// could not be decoded.
	ErrInvalidState = errors.New("invalid stored read-model state")
	// errConcurrentWrite reports that a row changed under a batch (another
	// writer inserted it first). The batch is rolled back and retried;
	// callers never see it unless retries run out.
	errConcurrentWrite = errors.New("read-model row written concurrently")
)

// KeySetError reports that ExtractKeys returned a key set different from
// the one inferred from the first event. errors.Is(err, ErrKeySetChanged)
// matches it.
type KeySetError struct {
	Table    string
	Expected []string
	Received []string
}

func (e *KeySetError) Error() string {
	return fmt.Sprintf("read model %q: extract keys returned key columns [%s], expected [%s] (the key set must be the same for every event)",
		e.Table, strings.Join(e.Received, ", "), strings.Join(e.Expected, ", "))
}

// Is reports whether target is ErrKeySetChanged.
func (e *KeySetError) Is(target error) bool { return target == ErrKeySetChanged }

// maxShownState is how many characters of an undecodable stored state a
// StateParseError shows.
const maxShownState = 200

// StateParseError reports a row's stored state (the snapshot column, or
// the snapshots table's row) that is not valid JSON for the state type.
// errors.Is(err, ErrInvalidState) matches it.
type StateParseError struct {
	Table string
	// Value is the stored value, cut to its first 200 characters.
	Value string
	// Truncated reports whether Value was cut.
	Truncated bool
	Err       error
}

func (e *StateParseError) Error() string {
	more := ""
	if e.Truncated {
		more = "…"
	}
	return fmt.Sprintf("read model %q: stored state is not valid JSON for the state type (%v): %q%s",
		e.Table, e.Err, e.Value, more)
}

// Unwrap returns the decoding error.
func (e *StateParseError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidState.
func (e *StateParseError) Is(target error) bool { return target == ErrInvalidState }

// newStateParseError builds the error for value, keeping at most
// maxShownState characters (runes, not bytes) of it.
func newStateParseError(table, value string, err error) *StateParseError {
	shown, truncated := value, false
	n := 0
	for i := range value {
		if n == maxShownState {
			shown, truncated = value[:i], true
			break
		}
		n++
	}
	return &StateParseError{Table: table, Value: shown, Truncated: truncated, Err: err}
}

func configError(format string, args ...any) error { return cfgerr.Errorf(format, args...) }
