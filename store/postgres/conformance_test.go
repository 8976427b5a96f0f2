package postgres_test

import (
	"testing"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.EventStore {
		s, _ := newStore(t)
		return s
	})
}
