package progress

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCount(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 12345: "12,345",
		1234567: "1,234,567", -4321: "-4,321"} {
		require.Equal(t, want, Count(in), "Count(%d)", in)
	}
}

func TestLine(t *testing.T) {
	t.Parallel()
	require.Equal(t, "rebuild [#####.....]  50%  500/1,000 events  1.2s",
		Line("rebuild", "events", 10, 500, 1000, 1234*time.Millisecond))
	require.Equal(t, "rebuild [..........]   0%  0/10 events  0s", Line("rebuild", "events", 10, 0, 10, 0))
	require.Equal(t, "rebuild [##########] 100%  12/10 events  0s", Line("rebuild", "events", 10, 12, 10, 0))
	require.Equal(t, "scan  42 rows  0s", Line("scan", "rows", 10, 42, 0, 0))
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestBarThrottlesAndAlwaysDrawsEnds(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	clock := &fakeClock{t: time.Unix(0, 0)}
	b := New(&out, "rebuild carts", "events")
	b.now = clock.now
	b.Width = 10

	b.Update(0, 100) // first: drawn
	b.Update(10, 100)
	b.Update(20, 100) // within the interval: not drawn
	clock.t = clock.t.Add(150 * time.Millisecond)
	b.Update(30, 100) // interval passed: drawn
	b.Update(100, 100)
	b.Update(100, 100) // completion drawn once
	b.Finish()
	b.Update(50, 100) // after Finish: nothing

	frames := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\r")[1:]
	require.Len(t, frames, 3, "frames: %q", frames)
	require.Contains(t, frames[0], "  0%  0/100 events")
	require.Contains(t, frames[1], " 30%  30/100 events")
	require.Contains(t, frames[2], "100%  100/100 events")
	require.True(t, strings.HasSuffix(out.String(), "\n"))
}

func TestFinishWithoutUpdateWritesNothing(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	b := New(&out, "x", "")
	b.Finish()
	require.Empty(t, out.String())
}
