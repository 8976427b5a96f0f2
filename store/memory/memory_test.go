package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
	"github.com/troupehq/troupe/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.EventStore { return memory.New() })
}

func TestConformanceUpcasting(t *testing.T) {
	storetest.RunUpcasting(t, func(t *testing.T, u store.Upcaster) store.EventStore {
		s, err := memory.NewWithConfig(&memory.Config{Upcaster: u})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
