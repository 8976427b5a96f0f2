package decider

import (
	"errors"
	"fmt"
)

// Decider is an aggregate's behaviour as three pure pieces: Decide turns a
// command and the current state into new events (or a domain error), Evolve
// folds one event into the state, and InitialState is the state of a stream
// with no events.
//
// C is the command type, E the event type and S the state type. E is usually
// an interface implemented by every event of the aggregate.
type Decider[C, E, S any] struct {
	// Decide returns the events a command produces given the current state.
	// A returned error is a domain rule violation: callers wrap it with
	// [Rejected] unless it already is one, so it can be told apart from
	// infrastructure failures.
	Decide func(cmd C, state S) ([]E, error)
	// Evolve returns the state after applying one event.
	Evolve func(state S, event E) S
	// InitialState returns the state of a stream with no events.
	InitialState func() S
}

// Fold applies events to state with d.Evolve, in order.
func (d Decider[C, E, S]) Fold(state S, events ...E) S {
	for _, e := range events {
		state = d.Evolve(state, e)
	}
	return state
}

// Validate reports which function of d is missing, if any.
func (d Decider[C, E, S]) Validate() error {
	switch {
	case d.Decide == nil:
		return errors.New("decider: Decide is nil")
	case d.Evolve == nil:
		return errors.New("decider: Evolve is nil")
	case d.InitialState == nil:
		return errors.New("decider: InitialState is nil")
	}
	return nil
}

// ErrRejected matches every error produced by Decide through [Rejected]:
// errors.Is(err, decider.ErrRejected) tells a broken domain rule apart from
// an infrastructure failure.
var ErrRejected = errors.New("command rejected")

// RejectedError is a domain rule violation returned by Decide. It wraps the
// error Decide returned, so errors.Is/As still find the domain's own errors.
type RejectedError struct {
	Err error
}

func (e *RejectedError) Error() string { return e.Err.Error() }

// Unwrap returns the domain error.
func (e *RejectedError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrRejected].
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Rejected marks err as a domain rule violation. It returns nil for nil and
// err itself when err already is one.
func Rejected(err error) error {
	if err == nil {
		return nil
	}
	var re *RejectedError
	if errors.As(err, &re) {
		return err
	}
	return &RejectedError{Err: err}
}

// Rejectf is a shorthand for Rejected(fmt.Errorf(format, args...)).
func Rejectf(format string, args ...any) error {
	return Rejected(fmt.Errorf(format, args...))
}
