package store

import "testing"

func TestExpectedVersionAllows(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expected ExpectedVersion
		exists   bool
		current  Version
		want     bool
	}{
		{Any, false, 0, true},
		{Any, true, 5, true},
		{ExpectedVersion{}, false, 0, true}, // the zero value is Any
		{ExpectedVersion{}, true, 3, true},
		{StreamExists, false, 0, false},
		{StreamExists, true, 1, true},
		{NoStream, false, 0, true},
		{NoStream, true, 1, false},
		{Exact(0), false, 0, true},
		{Exact(0), true, 1, false},
		{Exact(1), false, 0, false},
		{Exact(1), true, 1, true},
		{Exact(2), true, 1, false},
		{Exact(1), true, 2, false},
		{Exact(-1), false, 0, false},
		{Exact(-1), true, 1, false},
	}
	for _, tc := range cases {
		if got := tc.expected.Allows(tc.exists, tc.current); got != tc.want {
			t.Errorf("%s.Allows(exists=%v, current=%d) = %v, want %v", tc.expected, tc.exists, tc.current, got, tc.want)
		}
	}
}

func TestExpectedVersionAccessors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		e     ExpectedVersion
		str   string
		isAny bool
		n     Version
		exact bool
	}{
		{Any, "any", true, 0, false},
		{ExpectedVersion{}, "any", true, 0, false},
		{StreamExists, "stream exists", false, 0, false},
		{NoStream, "no stream", false, 0, false},
		{Exact(0), "0", false, 0, true},
		{Exact(42), "42", false, 42, true},
	}
	for _, tc := range cases {
		if got := tc.e.String(); got != tc.str {
			t.Errorf("String() = %q, want %q", got, tc.str)
		}
		if got := tc.e.IsAny(); got != tc.isAny {
			t.Errorf("%s.IsAny() = %v, want %v", tc.e, got, tc.isAny)
		}
		if n, exact := tc.e.Exact(); n != tc.n || exact != tc.exact {
			t.Errorf("%s.Exact() = %d, %v, want %d, %v", tc.e, n, exact, tc.n, tc.exact)
		}
	}
	if Exact(0) == NoStream {
		t.Error("Exact(0) and NoStream must stay distinguishable (errors report what was asked)")
	}
}
