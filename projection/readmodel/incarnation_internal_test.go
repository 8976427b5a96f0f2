package readmodel

import (
	"testing"

	"github.com/troupehq/troupe/store"
)

// A row whose last applied event is at stream position 4, global position
// 40, of incarnation 10.
func TestStepFor(t *testing.T) {
	t.Parallel()
	ev := func(pos store.Version, global store.GlobalPosition, inc store.Incarnation) store.Event {
		return store.Event{StreamPosition: pos, GlobalPosition: global, Incarnation: inc}
	}
	for _, c := range []struct {
		name   string
		pos    store.Version
		global store.GlobalPosition
		e      store.Event
		want   step
	}{
		{"next event", 4, 40, ev(5, 45, 10), stepApply},
		{"already applied", 4, 40, ev(3, 30, 10), stepSkip},
		{"the last applied", 4, 40, ev(4, 40, 10), stepSkip},
		{"new row", 0, 0, ev(7, 70, 10), stepApply},
		{"later incarnation, shorter", 4, 40, ev(1, 50, 50), stepRestart},
		{"later incarnation, longer", 4, 40, ev(6, 60, 50), stepRestart},
		{"earlier incarnation", 4, 40, ev(6, 8, 5), stepSkip},
		{"unknown incarnation, later", 4, 40, ev(2, 50, 0), stepRestart},
		{"unknown incarnation, applied", 4, 40, ev(2, 20, 0), stepSkip},
		{"unknown incarnation, next", 4, 40, ev(5, 45, 0), stepApply},
		{"unknown incarnation, earlier", 4, 40, ev(6, 8, 0), stepSkip},
		{"row without global position", 4, 0, ev(2, 50, 50), stepSkip},
		{"row without global position, next", 4, 0, ev(5, 50, 50), stepApply},
	} {
		if got := stepFor(c.pos, c.global, c.e); got != c.want {
			t.Errorf("%s: stepFor(%d, %d, %+v) = %d, want %d", c.name, c.pos, c.global, c.e, got, c.want)
		}
	}
}
