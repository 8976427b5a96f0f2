package decider

import (
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
)

// TestingT is the part of testing.TB a [Specification] uses to report
// failures. *testing.T, *testing.B, *testing.F and every testing.TB satisfy
// it; the package does not import "testing" so production binaries that use
// deciders do not link it in.
type TestingT interface {
	Helper()
	Errorf(format string, args ...any)
}

// Specification checks a Decider given/when/then style:
//
//	decider.Spec(d).Given(past...).When(cmd).Then(t, want...)
//
// Given events are folded with Evolve from InitialState, the command is
// decided against the resulting state, and the outcome is compared with the
// expectation. A mismatch is reported through t.Errorf with the given
// events, the command, and the expected and actual outcome; a panic in
// Decide or Evolve is reported the same way instead of crashing the test.
// Nothing is evaluated until a Then method runs, and each Then method runs
// the scenario afresh, so a Specification and its scenarios can be reused.
//
// Events are compared with reflect.DeepEqual unless [Specification.WithEqual]
// sets another comparison.
type Specification[C, E, S any] struct {
	d     Decider[C, E, S]
	equal func(want, got E) bool
}

// Spec returns a Specification for d.
func Spec[C, E, S any](d Decider[C, E, S]) Specification[C, E, S] {
	return Specification[C, E, S]{d: d}
}

// WithEqual returns a copy of s that compares events with equal instead of
// reflect.DeepEqual.
func (s Specification[C, E, S]) WithEqual(equal func(want, got E) bool) Specification[C, E, S] {
	s.equal = equal
	return s
}

// Given returns the scenario of a stream that already holds events.
func (s Specification[C, E, S]) Given(events ...E) Given[C, E, S] {
	return Given[C, E, S]{spec: s, events: events}
}

// When is a shorthand for s.Given().When(cmd): cmd sent to a stream with no
// events.
func (s Specification[C, E, S]) When(cmd C) When[C, E, S] {
	return s.Given().When(cmd)
}

// Given is a Specification with the past events of the stream.
type Given[C, E, S any] struct {
	spec   Specification[C, E, S]
	events []E
}

// When returns the scenario of cmd sent to the given stream.
func (g Given[C, E, S]) When(cmd C) When[C, E, S] {
	return When[C, E, S]{given: g, cmd: cmd}
}

// When is a complete scenario, checked by one of its Then methods. Each
// Then method returns whether the check passed.
type When[C, E, S any] struct {
	given Given[C, E, S]
	cmd   C
}

// outcome is what running a scenario produced.
type outcome[E, S any] struct {
	events []E
	err    error
	state  S // state after the given events and the decided ones
	// failure describes a broken decider (missing function, panic); the
	// scenario's expectation is not checked when it is set.
	failure string
}

// run folds the given events, decides the command and folds the decided
// events, recovering panics in Decide and Evolve.
func (w When[C, E, S]) run() (out outcome[E, S]) {
	d := w.given.spec.d
	if err := d.Validate(); err != nil {
		out.failure = err.Error()
		return out
	}
	stage := "InitialState"
	defer func() {
		if r := recover(); r != nil {
			out.failure = fmt.Sprintf("%s panicked: %v\n%s", stage, r, debug.Stack())
		}
	}()
	state := d.InitialState()
	for i, e := range w.given.events {
		stage = fmt.Sprintf("Evolve of given event [%d]", i)
		state = d.Evolve(state, e)
	}
	stage = "Decide"
	out.events, out.err = d.Decide(w.cmd, state)
	for i, e := range out.events {
		stage = fmt.Sprintf("Evolve of decided event [%d]", i)
		state = d.Evolve(state, e)
	}
	out.state = state
	return out
}

// Then checks that Decide returns exactly want, in order, and no error.
// Then with no events is the same as ThenNothing. The decided events are
// also folded with Evolve, so a panic while applying them fails the check.
func (w When[C, E, S]) Then(t TestingT, want ...E) bool {
	t.Helper()
	out := w.run()
	if out.failure != "" {
		return w.fail(t, out.failure)
	}
	if out.err != nil {
		return w.fail(t, fmt.Sprintf("want %s, Decide returned error: %s", countEvents(len(want)), describeErr(out.err)),
			"want:\n"+w.list(want))
	}
	if i, ok := w.diff(want, out.events); !ok {
		return w.fail(t, fmt.Sprintf("events differ (first difference at [%d])", i),
			"want:\n"+w.list(want), "got:\n"+w.list(out.events))
	}
	return true
}

// ThenNothing checks that Decide returns no events and no error.
func (w When[C, E, S]) ThenNothing(t TestingT) bool {
	t.Helper()
	return w.Then(t)
}

// ThenError checks that Decide returns an error matching target
// (errors.Is), that the error is a domain error (it matches [ErrRejected],
// see [Rejected]) and that no events come with it.
func (w When[C, E, S]) ThenError(t TestingT, target error) bool {
	t.Helper()
	return w.thenError(t, fmt.Sprintf("an error matching %q", errString(target)), func(err error) bool {
		return errors.Is(err, target)
	})
}

// ThenErrorMatches checks that Decide returns an error for which match
// returns true, that the error is a domain error (it matches [ErrRejected])
// and that no events come with it.
func (w When[C, E, S]) ThenErrorMatches(t TestingT, match func(error) bool) bool {
	t.Helper()
	return w.thenError(t, "an error accepted by the predicate", match)
}

func (w When[C, E, S]) thenError(t TestingT, want string, match func(error) bool) bool {
	t.Helper()
	out := w.run()
	switch {
	case out.failure != "":
		return w.fail(t, out.failure)
	case out.err == nil:
		return w.fail(t, fmt.Sprintf("want %s, Decide returned no error", want), "got:\n"+w.list(out.events))
	case !match(out.err):
		return w.fail(t, fmt.Sprintf("want %s, Decide returned error: %s", want, describeErr(out.err)))
	case !errors.Is(out.err, ErrRejected):
		return w.fail(t, fmt.Sprintf("Decide returned %s that is not a domain error (wrap it with decider.Rejected): %s",
			want, describeErr(out.err)))
	case len(out.events) > 0:
		return w.fail(t, fmt.Sprintf("Decide returned %s together with %s", want, countEvents(len(out.events))),
			"got:\n"+w.list(out.events))
	}
	return true
}

// ThenState checks that Decide returns no error and that the state after
// the given events and the decided ones equals want (reflect.DeepEqual).
// It checks Evolve where Then checks Decide.
func (w When[C, E, S]) ThenState(t TestingT, want S) bool {
	t.Helper()
	out := w.run()
	if out.failure != "" {
		return w.fail(t, out.failure)
	}
	if out.err != nil {
		return w.fail(t, "want a state, Decide returned error: "+describeErr(out.err))
	}
	if !reflect.DeepEqual(want, out.state) {
		return w.fail(t, "states differ", "decided:\n"+w.list(out.events),
			fmt.Sprintf("want state:\n  %+v", want), fmt.Sprintf("got state:\n  %+v", out.state))
	}
	return true
}

// diff compares want and got and returns the index of the first difference.
func (w When[C, E, S]) diff(want, got []E) (int, bool) {
	eq := w.given.spec.equal
	if eq == nil {
		eq = func(a, b E) bool { return reflect.DeepEqual(a, b) }
	}
	n := min(len(want), len(got))
	for i := range n {
		if !eq(want[i], got[i]) {
			return i, false
		}
	}
	if len(want) != len(got) {
		return n, false
	}
	return 0, true
}

// fail reports a failed check with the scenario and the extra sections.
func (w When[C, E, S]) fail(t TestingT, what string, sections ...string) bool {
	t.Helper()
	var b strings.Builder
	b.WriteString("decider spec: ")
	b.WriteString(what)
	b.WriteString("\ngiven:\n")
	b.WriteString(w.list(w.given.events))
	fmt.Fprintf(&b, "\nwhen:\n  %s", describe(w.cmd))
	for _, s := range sections {
		b.WriteString("\n")
		b.WriteString(s)
	}
	t.Errorf("%s", b.String())
	return false
}

// list formats events one per line, indented, with their index.
func (w When[C, E, S]) list(events []E) string {
	if len(events) == 0 {
		return "  (no events)"
	}
	lines := make([]string, len(events))
	for i, e := range events {
		lines[i] = fmt.Sprintf("  [%d] %s", i, describe(e))
	}
	return strings.Join(lines, "\n")
}

// describe formats a value with its dynamic type.
func describe(v any) string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%T %+v", v, v)
}

// describeErr formats an error with its type and whether it is a domain
// error.
func describeErr(err error) string {
	kind := "not a domain error"
	if errors.Is(err, ErrRejected) {
		kind = "domain error"
	}
	return fmt.Sprintf("%q (%T, %s)", err.Error(), err, kind)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func countEvents(n int) string {
	switch n {
	case 0:
		return "no events"
	case 1:
		return "1 event"
	}
	return fmt.Sprintf("%d events", n)
}
