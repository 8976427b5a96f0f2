package projection

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/troupehq/troupe/store"
)

// The lag tracker's arithmetic, step by step.
func TestLagTracker(t *testing.T) {
	t.Parallel()
	var l lagTracker
	now := time.Now()
	_, _, ok := l.lag(now)
	assert.False(t, ok, "inactive: nothing reported")

	l.start(10, 0, time.Time{}, false)
	events, behind, ok := l.lag(now)
	require.True(t, ok)
	assert.Zero(t, events)
	assert.Zero(t, behind)

	t0 := now.Add(-3 * time.Second)
	l.noteHead(15, t0) // a notification
	events, behind, _ = l.lag(now)
	assert.Equal(t, int64(5), events)
	assert.Equal(t, 3*time.Second, behind)

	t1 := now.Add(-4 * time.Second)
	l.noteRead([]store.Event{{GlobalPosition: 11, Created: t1}, {GlobalPosition: 12, Created: now}})
	_, behind, _ = l.lag(now)
	assert.Equal(t, 4*time.Second, behind, "the first event read is the oldest unapplied")

	t2 := now.Add(-time.Second)
	l.noteApplied(12, t2)
	events, behind, _ = l.lag(now)
	assert.Equal(t, int64(3), events)
	assert.Equal(t, time.Second, behind)

	l.noteApplied(15, now)
	events, behind, _ = l.lag(now)
	assert.Zero(t, events)
	assert.Zero(t, behind)

	l.stop()
	_, _, ok = l.lag(now)
	assert.False(t, ok)

	// Taking the lease with the head of the log known.
	l.start(15, 40, t1, true)
	events, behind, ok = l.lag(now)
	require.True(t, ok)
	assert.Equal(t, int64(25), events)
	assert.Equal(t, 4*time.Second, behind)
	// A reset (rebuild) puts everything behind again.
	l.noteApplied(0, time.Time{})
	events, _, _ = l.lag(now)
	assert.Equal(t, int64(40), events)
}
