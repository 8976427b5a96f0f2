package decider_test

import (
	"errors"
	"fmt"

	"github.com/troupehq/troupe/decider"
)

func ExampleDecider() {
	d := counterDecider()

	// Rebuild the state from the stream's events...
	state := d.Fold(d.InitialState(), Incremented{By: 3}, Decremented{By: 1})
	fmt.Println("state:", state)

	// ...decide a command against it...
	events, err := d.Decide(Increment{By: 5}, state)
	fmt.Println("events:", events, "error:", err)
	fmt.Println("new state:", d.Fold(state, events...))

	// ...and tell a broken rule apart from an infrastructure failure.
	_, err = d.Decide(Decrement{By: 10}, state)
	fmt.Println("rejected:", errors.Is(err, decider.ErrRejected), "below zero:", errors.Is(err, ErrBelowZero))
	fmt.Println(err)
	// Output:
	// state: 2
	// events: [{5}] error: <nil>
	// new state: 7
	// rejected: true below zero: true
	// decrement by 10 from 2: counter would go below zero
}

// printer reports failures on standard output; in a real test pass the
// *testing.T instead.
type printer struct{}

func (printer) Helper() {}

func (printer) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func ExampleSpec() {
	t := printer{} // a *testing.T in a real test
	spec := decider.Spec(counterDecider())

	spec.Given(Incremented{By: 2}).When(Decrement{By: 2}).Then(t, Decremented{By: 2})
	spec.Given(Incremented{By: 1}).When(Decrement{By: 2}).ThenError(t, ErrBelowZero)
	spec.Given().When(Reset{}).ThenNothing(t)

	// A wrong expectation is reported with the whole scenario.
	spec.Given(Incremented{By: 2}).When(Increment{By: 3}).Then(t, Incremented{By: 4})
	// Output:
	// decider spec: events differ (first difference at [0])
	// given:
	//   [0] decider_test.Incremented {By:2}
	// when:
	//   decider_test.Increment {By:3}
	// want:
	//   [0] decider_test.Incremented {By:4}
	// got:
	//   [0] decider_test.Incremented {By:3}
}
