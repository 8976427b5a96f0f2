package actor

import (
	"errors"
	"fmt"
	"runtime/debug"
)

var (
	// ErrStopped is returned by Send and State once the host is stopping or
	// stopped, and to commands that were accepted but could not be handled
	// before a Stop whose context expired.
	ErrStopped = errors.New("actor: host stopped")
	// ErrNotStarted is returned by Send and State before Start.
	ErrNotStarted = errors.New("actor: host not started")
	// ErrPanic matches every *PanicError: user code (Decide, Evolve, Route,
	// the codec or a snapshot encoder) panicked while handling a command.
	ErrPanic = errors.New("actor: panic in user code")
	// ErrOutcomeUnknown is returned when an append failed in a way that
	// leaves its outcome unknown (for example the connection was lost
	// during commit): the events may or may not be stored. The stream actor
	// reloads before its next command; re-sending the command with the same
	// SendOptions.CommandID is safe. Any other error from Send (except the
	// caller's own context ending while its command was in flight) means
	// the command was not stored: an append that never reached the
	// database matches store.ErrUnavailable, one PostgreSQL refused because
	// of the command's events store.ErrInvalidArgument.
	ErrOutcomeUnknown = errors.New("actor: append outcome unknown")
	// ErrUnknownKind is returned by Lookup for a kind name that is not
	// registered, or registered with other type parameters.
	ErrUnknownKind = errors.New("actor: unknown aggregate kind")
	// ErrKindExists is returned by Register for a kind name already
	// registered on the host.
	ErrKindExists = errors.New("actor: aggregate kind already registered")
	// ErrInvalidConfig matches every rejected Config or Kind; the message
	// names the bad field.
	ErrInvalidConfig = errors.New("actor: invalid config")
)

// PanicError is a panic recovered from user code. errors.Is(err, ErrPanic)
// matches it. The stream actor survives it: the command that caused it
// fails, the state is not advanced, and the next command is handled
// normally.
type PanicError struct {
	// Where names the function that panicked (for example "decide").
	Where string
	// Value is the value passed to panic.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("actor: panic in %s: %v\n%s", e.Where, e.Value, e.Stack)
}

// Is reports whether target is ErrPanic.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// Unwrap returns the panic value when it is an error, so errors.Is/As can
// look inside it.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

func newPanicError(where string, v any) *PanicError {
	return &PanicError{Where: where, Value: v, Stack: debug.Stack()}
}

func invalidConfig(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}
