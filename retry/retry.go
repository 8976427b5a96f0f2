// Package retry is the one retry policy of Troupe's components: how many
// times an operation is tried and how long to wait between tries. The actor
// host uses it for version conflicts, projections for failing events, the
// tenant manager for lock timeouts.
//
// Delays grow exponentially with jitter: before retry n (n ≥ 1) the wait is
// a random duration between half and all of InitialDelay·2^(n-1), capped at
// MaxDelay, so that processes retrying the same thing spread out instead of
// colliding again.
package retry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy says how often and how fast an operation is retried. The zero
// value of each field means the default of the component that uses the
// policy; each component documents its defaults and what happens after the
// last attempt.
type Policy struct {
	// MaxAttempts is how many times the operation is tried in all, the
	// first attempt included; 1 disables retries.
	MaxAttempts int
	// InitialDelay bounds the wait before the first retry; the bound
	// doubles with every further retry, up to MaxDelay.
	InitialDelay time.Duration
	// MaxDelay caps the wait between two attempts.
	MaxDelay time.Duration
}

// WithDefaults returns p with every zero field taken from def.
func (p Policy) WithDefaults(def Policy) Policy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.InitialDelay == 0 {
		p.InitialDelay = def.InitialDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = def.MaxDelay
	}
	return p
}

// Validate reports the first unusable field of p, named after field (the
// policy's place in its configuration, say "actor.Config.Retry"). Call it
// after WithDefaults.
func (p Policy) Validate(field string) error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("%s.MaxAttempts: %d is negative", field, p.MaxAttempts)
	case p.InitialDelay < 0:
		return fmt.Errorf("%s.InitialDelay: %v is negative", field, p.InitialDelay)
	case p.MaxDelay < 0:
		return fmt.Errorf("%s.MaxDelay: %v is negative", field, p.MaxDelay)
	case p.MaxDelay > 0 && p.MaxDelay < p.InitialDelay:
		return fmt.Errorf("%s.MaxDelay: %v is shorter than InitialDelay %v", field, p.MaxDelay, p.InitialDelay)
	}
	return nil
}

// Delay returns the wait before retry n (n ≥ 1, the second attempt being
// retry 1): a random duration between half and all of
// min(InitialDelay·2^(n-1), MaxDelay). It is 0 when InitialDelay is.
func (p Policy) Delay(n int) time.Duration {
	limit := p.InitialDelay
	for i := 1; i < n && (p.MaxDelay <= 0 || limit < p.MaxDelay); i++ {
		limit *= 2
	}
	if p.MaxDelay > 0 {
		limit = min(limit, p.MaxDelay)
	}
	if limit <= 0 {
		return 0
	}
	return limit/2 + rand.N(limit-limit/2+1)
}

// Wait sleeps for Delay(n), or until ctx is done, whichever comes first,
// and returns ctx's error in the second case.
func (p Policy) Wait(ctx context.Context, n int) error {
	return sleep(ctx, p.Delay(n))
}

// sleep waits for d or until ctx is done, whichever comes first, and
// returns ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
