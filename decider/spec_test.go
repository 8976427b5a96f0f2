package decider_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/troupehq/troupe/decider"
)

// recorder is a fake testing.TB that records failures instead of failing
// the test, so the kit's own failures can be asserted. It embeds
// testing.TB (nil) so it satisfies the full interface; calling anything the
// kit must not use panics, which fails the test loudly.
type recorder struct {
	testing.TB
	errors  []string
	helpers int
}

func (r *recorder) Helper() { r.helpers++ }

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Failed() bool { return len(r.errors) > 0 }

// check runs one kit check against a recorder and verifies whether it
// failed, and that its report mentions every string in contains.
func check(t *testing.T, wantFail bool, run func(tb testing.TB) bool, contains ...string) {
	t.Helper()
	rec := &recorder{}
	passed := run(rec)
	if passed == rec.Failed() {
		t.Fatalf("check returned %v but recorded %d failures: %q", passed, len(rec.errors), rec.errors)
	}
	if rec.helpers == 0 {
		t.Errorf("check never called t.Helper, so failures point into the kit instead of the test")
	}
	if !wantFail {
		if rec.Failed() {
			t.Fatalf("check failed unexpectedly:\n%s", strings.Join(rec.errors, "\n"))
		}
		return
	}
	if !rec.Failed() {
		t.Fatalf("check passed, want a failure mentioning %q", contains)
	}
	if len(rec.errors) != 1 {
		t.Errorf("got %d failure reports, want exactly 1: %q", len(rec.errors), rec.errors)
	}
	msg := strings.Join(rec.errors, "\n")
	for _, s := range contains {
		if !strings.Contains(msg, s) {
			t.Errorf("failure report does not mention %q:\n%s", s, msg)
		}
	}
}

func TestSpecPasses(t *testing.T) {
	t.Parallel()
	spec := decider.Spec(counterDecider())
	cases := []struct {
		name string
		run  func(tb testing.TB) bool
	}{
		{"then events", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 2}).When(Decrement{By: 2}).Then(tb, Decremented{By: 2})
		}},
		{"when without given", func(tb testing.TB) bool {
			return spec.When(Increment{By: 1}).Then(tb, Incremented{By: 1})
		}},
		{"then nothing", func(tb testing.TB) bool {
			return spec.Given().When(Reset{}).ThenNothing(tb)
		}},
		{"then with no events is then nothing", func(tb testing.TB) bool {
			return spec.When(Reset{}).Then(tb)
		}},
		{"then error with sentinel", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 1}).When(Decrement{By: 2}).ThenError(tb, ErrBelowZero)
		}},
		{"then error with ErrRejected", func(tb testing.TB) bool {
			return spec.When(Increment{By: 0}).ThenError(tb, decider.ErrRejected)
		}},
		{"then error predicate", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 1}).When(Decrement{By: 5}).ThenErrorMatches(tb, func(err error) bool {
				return strings.Contains(err.Error(), "decrement by 5 from 1")
			})
		}},
		{"then state", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 3}, Decremented{By: 1}).When(Increment{By: 4}).ThenState(tb, 6)
		}},
		{"custom equality", func(tb testing.TB) bool {
			sameType := func(want, got any) bool { return fmt.Sprintf("%T", want) == fmt.Sprintf("%T", got) }
			return spec.WithEqual(sameType).When(Increment{By: 7}).Then(tb, Incremented{By: 1})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check(t, false, tc.run)
		})
	}
}

func TestSpecFails(t *testing.T) {
	t.Parallel()
	spec := decider.Spec(counterDecider())
	cases := []struct {
		name     string
		run      func(tb testing.TB) bool
		contains []string
	}{
		{"different event", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 2}).When(Increment{By: 3}).Then(tb, Incremented{By: 4})
		}, []string{
			"events differ (first difference at [0])",
			"given:\n  [0] decider_test.Incremented {By:2}",
			"when:\n  decider_test.Increment {By:3}",
			"want:\n  [0] decider_test.Incremented {By:4}",
			"got:\n  [0] decider_test.Incremented {By:3}",
		}},
		{"missing event", func(tb testing.TB) bool {
			return spec.When(Increment{By: 1}).Then(tb, Incremented{By: 1}, Incremented{By: 1})
		}, []string{"first difference at [1]", "given:\n  (no events)", "[1] decider_test.Incremented {By:1}"}},
		{"extra event", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 1}).When(Reset{}).Then(tb)
		}, []string{"first difference at [0]", "want:\n  (no events)", "got:\n  [0] decider_test.WasReset {}"}},
		{"same value different type", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 5}).When(Decrement{By: 1}).Then(tb, Incremented{By: 1})
		}, []string{"decider_test.Decremented {By:1}"}},
		{"then nothing but events", func(tb testing.TB) bool {
			return spec.When(Increment{By: 1}).ThenNothing(tb)
		}, []string{"events differ", "got:\n  [0] decider_test.Incremented {By:1}"}},
		{"then events but error", func(tb testing.TB) bool {
			return spec.When(Decrement{By: 1}).Then(tb, Decremented{By: 1})
		}, []string{"want 1 event, Decide returned error", "counter would go below zero", "domain error"}},
		{"then nothing but error", func(tb testing.TB) bool {
			return spec.When(Increment{By: -1}).ThenNothing(tb)
		}, []string{"want no events, Decide returned error", ErrNotPositive.Error()}},
		{"then error but events", func(tb testing.TB) bool {
			return spec.When(Increment{By: 1}).ThenError(tb, ErrNotPositive)
		}, []string{"Decide returned no error", "got:\n  [0] decider_test.Incremented {By:1}"}},
		{"then error but nothing", func(tb testing.TB) bool {
			return spec.When(Reset{}).ThenError(tb, ErrNotPositive)
		}, []string{"Decide returned no error", "(no events)"}},
		{"wrong error", func(tb testing.TB) bool {
			return spec.When(Decrement{By: 1}).ThenError(tb, ErrNotPositive)
		}, []string{`want an error matching "amount must be positive"`, "counter would go below zero"}},
		{"error is not a domain error", func(tb testing.TB) bool {
			return spec.When(Broken{}).ThenError(tb, ErrDatabase)
		}, []string{"not a domain error", "wrap it with decider.Rejected", "database unreachable"}},
		{"predicate error is not a domain error", func(tb testing.TB) bool {
			return spec.When(Broken{}).ThenErrorMatches(tb, func(error) bool { return true })
		}, []string{"not a domain error"}},
		{"predicate rejects error", func(tb testing.TB) bool {
			return spec.When(Decrement{By: 1}).ThenErrorMatches(tb, func(err error) bool { return errors.Is(err, ErrNotPositive) })
		}, []string{"want an error accepted by the predicate", "counter would go below zero"}},
		{"error with events", func(tb testing.TB) bool {
			return spec.When(Sloppy{}).ThenError(tb, ErrNotPositive)
		}, []string{"together with 1 event", "[0] decider_test.Incremented {By:1}"}},
		{"decide panics", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 1}).When(Explode{}).Then(tb)
		}, []string{"Decide panicked", "assignment to entry in nil map", "when:\n  decider_test.Explode {}"}},
		{"decide panics under then error", func(tb testing.TB) bool {
			return spec.When(Explode{}).ThenError(tb, ErrNotPositive)
		}, []string{"Decide panicked"}},
		{"evolve panics on given event", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 1}, Poison{}).When(Reset{}).ThenNothing(tb)
		}, []string{"Evolve of given event [1] panicked: poisoned event", "[1] decider_test.Poison {}"}},
		{"evolve panics under then state", func(tb testing.TB) bool {
			return spec.Given(Poison{}).When(Reset{}).ThenState(tb, 0)
		}, []string{"Evolve of given event [0] panicked"}},
		{"wrong state", func(tb testing.TB) bool {
			return spec.Given(Incremented{By: 3}).When(Increment{By: 1}).ThenState(tb, 5)
		}, []string{"states differ", "want state:\n  5", "got state:\n  4", "decided:\n  [0] decider_test.Incremented {By:1}"}},
		{"state but error", func(tb testing.TB) bool {
			return spec.When(Decrement{By: 1}).ThenState(tb, 0)
		}, []string{"want a state, Decide returned error"}},
		{"custom equality rejects", func(tb testing.TB) bool {
			never := func(any, any) bool { return false }
			return spec.WithEqual(never).When(Increment{By: 1}).Then(tb, Incremented{By: 1})
		}, []string{"events differ"}},
		{"missing decide", func(tb testing.TB) bool {
			d := counterDecider()
			d.Decide = nil
			return decider.Spec(d).When(Increment{By: 1}).Then(tb, Incremented{By: 1})
		}, []string{"decider: Decide is nil"}},
		{"missing initial state", func(tb testing.TB) bool {
			d := counterDecider()
			d.InitialState = nil
			return decider.Spec(d).When(Increment{By: 1}).ThenError(tb, ErrNotPositive)
		}, []string{"decider: InitialState is nil"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check(t, true, tc.run, tc.contains...)
		})
	}
}

// Each Then runs the scenario afresh: a scenario value can be checked
// several ways, and state from one run never leaks into the next.
func TestSpecScenarioIsReusable(t *testing.T) {
	t.Parallel()
	calls := 0
	d := counterDecider()
	decide := d.Decide
	d.Decide = func(cmd any, n int) ([]any, error) {
		calls++
		return decide(cmd, n)
	}
	scenario := decider.Spec(d).Given(Incremented{By: 2}).When(Increment{By: 1})
	scenario.Then(t, Incremented{By: 1})
	scenario.ThenState(t, 3)
	scenario.Then(t, Incremented{By: 1})
	if calls != 3 {
		t.Fatalf("Decide ran %d times for 3 checks, want 3", calls)
	}
}

// The kit works with a real *testing.T, *testing.B and a testing.TB.
func TestSpecAcceptsTestingTypes(t *testing.T) {
	t.Parallel()
	var _ decider.TestingT = t
	var _ decider.TestingT = (*testing.B)(nil)
	var _ decider.TestingT = (*testing.F)(nil)
	var tb testing.TB = t
	decider.Spec(counterDecider()).When(Increment{By: 2}).Then(tb, Incremented{By: 2})
}

func TestFold(t *testing.T) {
	t.Parallel()
	d := counterDecider()
	if got := d.Fold(d.InitialState(), Incremented{By: 5}, Decremented{By: 2}, WasReset{}, Incremented{By: 1}); got != 1 {
		t.Fatalf("Fold = %d, want 1", got)
	}
	if got := d.Fold(7); got != 7 {
		t.Fatalf("Fold with no events = %d, want the state unchanged (7)", got)
	}
}

func TestRejected(t *testing.T) {
	t.Parallel()
	if decider.Rejected(nil) != nil {
		t.Fatal("Rejected(nil) is not nil")
	}
	err := decider.Rejected(ErrBelowZero)
	if !errors.Is(err, decider.ErrRejected) || !errors.Is(err, ErrBelowZero) {
		t.Fatalf("Rejected(ErrBelowZero) = %v, want it to match ErrRejected and ErrBelowZero", err)
	}
	if err.Error() != ErrBelowZero.Error() {
		t.Fatalf("Rejected changed the message: %q", err.Error())
	}
	if again := decider.Rejected(err); again != err {
		t.Fatalf("Rejected of a rejected error nests: %#v", again)
	}
	wrapped := fmt.Errorf("handle command: %w", err)
	if decider.Rejected(wrapped) != wrapped {
		t.Fatal("Rejected re-wraps an error that already contains a RejectedError")
	}
	if errors.Is(fmt.Errorf("x: %w", ErrDatabase), decider.ErrRejected) {
		t.Fatal("a plain error matches ErrRejected")
	}
	var re *decider.RejectedError
	if !errors.As(decider.Rejectf("need %d: %w", 3, ErrNotPositive), &re) || !errors.Is(re.Err, ErrNotPositive) {
		t.Fatal("Rejectf does not produce a RejectedError wrapping its %w argument")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := counterDecider().Validate(); err != nil {
		t.Fatalf("complete decider: %v", err)
	}
	d := counterDecider()
	d.Evolve = nil
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "Evolve") {
		t.Fatalf("Validate with nil Evolve = %v", err)
	}
}
