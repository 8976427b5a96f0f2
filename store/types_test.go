package store

import "testing"

func TestPositionLess(t *testing.T) {
	t.Parallel()
	cases := []struct {
		p, q Position
		want bool
	}{
		{Position{}, Position{}, false},
		{Position{}, Position{TransactionID: 1, GlobalPosition: 1}, true},
		{Position{1, 5}, Position{1, 6}, true},
		{Position{1, 6}, Position{1, 5}, false},
		{Position{1, 5}, Position{1, 5}, false},
		// The transaction id decides first: an event committed by an older
		// transaction comes first even with a larger global position.
		{Position{1, 9}, Position{2, 3}, true},
		{Position{2, 3}, Position{1, 9}, false},
		{Position{0, 9}, Position{1, 0}, true},
	}
	for _, tc := range cases {
		if got := tc.p.Less(tc.q); got != tc.want {
			t.Errorf("%+v.Less(%+v) = %v, want %v", tc.p, tc.q, got, tc.want)
		}
	}
}

func TestEventAndResultPositions(t *testing.T) {
	t.Parallel()
	e := Event{Type: "Added", StreamID: "cart-1", Partition: "t1", StreamPosition: 3, GlobalPosition: 17, TransactionID: 9}
	if got, want := e.Position(), (Position{TransactionID: 9, GlobalPosition: 17}); got != want {
		t.Errorf("Event.Position() = %+v, want %+v", got, want)
	}
	if got, want := e.String(), "Added@t1/cart-1#3"; got != want {
		t.Errorf("Event.String() = %q, want %q", got, want)
	}
	r := AppendResult{NextExpectedVersion: 4, LastGlobalPosition: 20, TransactionID: 10}
	if got, want := r.LastPosition(), (Position{TransactionID: 10, GlobalPosition: 20}); got != want {
		t.Errorf("AppendResult.LastPosition() = %+v, want %+v", got, want)
	}
	if !e.Position().Less(r.LastPosition()) {
		t.Error("the event should come before the append's last position")
	}
}
