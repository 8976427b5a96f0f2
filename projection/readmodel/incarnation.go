package readmodel

import "github.com/troupehq/troupe/store"

// step is what a row does with one of its events.
type step int

const (
	// stepApply folds the event onto the row's state: its next event.
	stepApply step = iota
	// stepSkip leaves the event out: already applied, or of an earlier
	// incarnation of the stream than the row's.
	stepSkip
	// stepRestart folds the event onto the initial state: it belongs to a
	// later incarnation of the stream (archived and started again) than
	// the row's last applied event.
	stepRestart
)

// stepFor tells what a row whose last applied event is at stream position
// pos and global position global does with e.
//
// Within one incarnation stream positions and global positions rise
// together (an append takes its global positions after it holds the
// stream), and every event of a later incarnation has a greater global
// position than every event of an earlier one, beginning with the first,
// whose global position is the incarnation. So an event is of a later
// incarnation than the row's when its incarnation is greater than the
// row's last global position; when the event's incarnation is unknown
// (0), when it is at or before the row's stream position but after its
// global position. An event after the row's stream position but before its
// global position is of an earlier incarnation. A row without a global
// position (0) compares stream positions only.
func stepFor(pos store.Version, global store.GlobalPosition, e store.Event) step {
	switch {
	case pos == 0:
		return stepApply
	case global == 0:
		if e.StreamPosition <= pos {
			return stepSkip
		}
		return stepApply
	case e.Incarnation != 0 && store.GlobalPosition(e.Incarnation) > global,
		e.Incarnation == 0 && e.StreamPosition <= pos && e.GlobalPosition > global:
		return stepRestart
	case e.StreamPosition <= pos, e.GlobalPosition < global:
		return stepSkip
	default:
		return stepApply
	}
}
