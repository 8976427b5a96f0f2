package decider_test

import (
	"errors"
	"fmt"

	"github.com/troupehq/troupe/decider"
)

// A tiny counter aggregate shared by the tests and examples of this package.

// Commands.
type (
	Increment struct{ By int }
	Decrement struct{ By int }
	Reset     struct{}
	// Explode makes Decide panic.
	Explode struct{}
	// Broken makes Decide return an error that is not a domain error.
	Broken struct{}
	// Sloppy makes Decide return an event together with a domain error.
	Sloppy struct{}
)

// Events.
type (
	Incremented struct{ By int }
	Decremented struct{ By int }
	WasReset    struct{}
	// Poison makes Evolve panic.
	Poison struct{}
)

var (
	ErrNotPositive = errors.New("amount must be positive")
	ErrBelowZero   = errors.New("counter would go below zero")
	ErrDatabase    = errors.New("database unreachable")
)

func counterDecider() decider.Decider[any, any, int] {
	return decider.Decider[any, any, int]{
		Decide: func(cmd any, n int) ([]any, error) {
			switch c := cmd.(type) {
			case Increment:
				if c.By <= 0 {
					return nil, decider.Rejected(ErrNotPositive)
				}
				return []any{Incremented{By: c.By}}, nil
			case Decrement:
				if c.By <= 0 {
					return nil, decider.Rejected(ErrNotPositive)
				}
				if n-c.By < 0 {
					return nil, decider.Rejectf("decrement by %d from %d: %w", c.By, n, ErrBelowZero)
				}
				return []any{Decremented{By: c.By}}, nil
			case Reset:
				if n == 0 {
					return nil, nil
				}
				return []any{WasReset{}}, nil
			case Explode:
				var m map[string]int
				m["boom"]++ // nil map write: panics
				return nil, nil
			case Broken:
				return nil, fmt.Errorf("load counter: %w", ErrDatabase)
			case Sloppy:
				return []any{Incremented{By: 1}}, decider.Rejected(ErrNotPositive)
			}
			return nil, fmt.Errorf("unknown command %T", cmd)
		},
		Evolve: func(n int, e any) int {
			switch e := e.(type) {
			case Incremented:
				return n + e.By
			case Decremented:
				return n - e.By
			case WasReset:
				return 0
			case Poison:
				panic("poisoned event")
			}
			return n
		},
		InitialState: func() int { return 0 },
	}
}
