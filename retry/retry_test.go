package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDelayGrowsWithJitterAndCap(t *testing.T) {
	p := Policy{MaxAttempts: 10, InitialDelay: 8 * time.Millisecond, MaxDelay: 50 * time.Millisecond}
	bounds := []time.Duration{8, 16, 32, 50, 50} // ms: min(8·2^(n-1), 50)
	for n, b := range bounds {
		limit := b * time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n + 1)
			if d < limit/2 || d > limit {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n+1, d, limit/2, limit)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Delay(%d) took only %d distinct values in 200 draws: no jitter", n+1, len(seen))
		}
	}
}

func TestDelayZeroAndHuge(t *testing.T) {
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy Delay = %v, want 0", d)
	}
	p := Policy{InitialDelay: time.Second, MaxDelay: 2 * time.Second}
	if d := p.Delay(1_000_000); d < time.Second || d > 2*time.Second {
		t.Errorf("Delay of a huge retry number = %v, want within [1s, 2s] (no overflow)", d)
	}
}

func TestWithDefaultsAndValidate(t *testing.T) {
	def := Policy{MaxAttempts: 5, InitialDelay: time.Millisecond, MaxDelay: time.Second}
	got := Policy{MaxAttempts: 2}.WithDefaults(def)
	if got != (Policy{MaxAttempts: 2, InitialDelay: time.Millisecond, MaxDelay: time.Second}) {
		t.Errorf("WithDefaults = %+v", got)
	}
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{MaxAttempts: -1}, "x.Retry.MaxAttempts: -1 is negative"},
		{Policy{InitialDelay: -time.Second}, "x.Retry.InitialDelay"},
		{Policy{MaxDelay: -time.Second}, "x.Retry.MaxDelay"},
		{Policy{InitialDelay: time.Second, MaxDelay: time.Millisecond}, "x.Retry.MaxDelay: 1ms is shorter than InitialDelay 1s"},
	} {
		err := c.p.Validate("x.Retry")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want it to say %q", c.p, err, c.want)
		}
	}
	if err := def.Validate("x"); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := Policy{InitialDelay: time.Hour, MaxDelay: time.Hour}
	if err := p.Wait(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context = %v, want context.Canceled", err)
	}
	if err := sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("sleep = %v", err)
	}
}
