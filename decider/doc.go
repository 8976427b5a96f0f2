// Package decider holds an aggregate's behaviour as pure functions, and a
// given/when/then kit to test it.
//
// A [Decider] is three functions: Decide turns a command and the current
// state into new events or a domain error, Evolve folds one event into the
// state, and InitialState is the state of a stream with no events. The
// package is the pure domain layer of Troupe: it knows nothing of actors,
// SQL or telemetry and imports only the standard library. The aggregate
// host (package actor) keeps the state in memory, calls Decide for each
// command and appends the events to the store; the store folds Evolve over
// a stream to rebuild the state.
//
// # Guarantees
//
//   - [Decider.Fold] applies events in the order given and nothing else.
//   - [Rejected] marks an error as a broken domain rule: errors.Is(err,
//     [ErrRejected]) tells it apart from an infrastructure failure, while
//     errors.Is/As still find the domain's own sentinel and typed errors
//     inside it. Marking twice does not nest.
//
// # Testing deciders
//
// [Spec] checks a decider the way Emmett's DeciderSpecification does:
//
//	decider.Spec(d).Given(past...).When(cmd).Then(t, want...)
//	decider.Spec(d).Given(past...).When(cmd).ThenError(t, ErrSomeRule)
//	decider.Spec(d).Given(past...).When(cmd).ThenNothing(t)
//
// It works with any testing.TB (through the small [TestingT] interface, so
// this package does not import "testing"). A failed check is reported with
// t.Errorf, showing the given events, the command, and the expected and
// actual outcome. A panic in Decide or Evolve fails the check instead of
// crashing the test binary. ThenError also fails when Decide's error is not
// a domain error, so infrastructure-looking errors cannot leak out of the
// domain unnoticed.
//
// # Failures
//
// The package itself does no I/O and cannot fail at run time; a Decider
// with a missing function is reported by [Decider.Validate] (and by every
// Spec check) rather than by a nil-function panic.
package decider
