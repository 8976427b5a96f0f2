package projection

import (
	"errors"
	"fmt"
	"strings"

	"github.com/troupehq/troupe/projection/internal/cfgerr"
	"github.com/troupehq/troupe/store"
)

var (
	// ErrInvalidConfig matches every rejected configuration of this package
	// and its sub-packages; the message names the field (pkg.Config.Field).
	ErrInvalidConfig = cfgerr.ErrInvalid
	// ErrHandlerFailed matches every *HandlerError: a handler returned an
	// error for an event.
	ErrHandlerFailed = errors.New("projection handler failed")
	// ErrAlreadyRunning is returned by Start, Run and Rebuild on a
	// projection or consumer that is already running in this process.
	ErrAlreadyRunning = errors.New("projection already running")
	// ErrFailed is returned by WaitFor when the projection stopped at a
	// failing event (stop policy) before reaching the position; the error
	// also matches ErrHandlerFailed and names the event.
	ErrFailed = errors.New("projection stopped on a failing event")
	// errCheckpointMoved reports that the checkpoint moved under a batch
	// (another runner committed first). The batch is rolled back and the
	// runner reloads its checkpoint.
	errCheckpointMoved = errors.New("checkpoint moved")
	// errLeaseLost reports that a write found the runner no longer holding
	// the projection's lease: its lease connection no longer holds the
	// lock, or another runner has claimed the projection since. The
	// transaction is rolled back and nothing is written.
	errLeaseLost = errors.New("projection lease lost")
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

func configError(format string, args ...any) error { return cfgerr.Errorf(format, args...) }
