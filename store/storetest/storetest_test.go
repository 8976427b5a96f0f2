package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunOnMemory(t *testing.T) {
	Run(t, func(t *testing.T) store.EventStore { return memory.New() })
}

// The suite passes a store whose global read holds back the tail of the
// log now and then, even events it has returned before, as PostgreSQL's
// visibility guard may.
func TestRunOnStoreHoldingBack(t *testing.T) {
	Run(t, func(t *testing.T) store.EventStore {
		s := memory.New()
		var calls atomic.Int64
		return &wrapper{Store: s, readAll: func(ctx context.Context, o store.ReadAllOptions) (store.ReadAllResult, error) {
			r, err := s.ReadAll(ctx, o)
			if err != nil || calls.Add(1)%2 == 0 {
				return r, err
			}
			r.Events = r.Events[:rand.IntN(len(r.Events)+1)]
			r.Next = o.After
			if len(r.Events) > 0 {
				r.Next = r.Events[len(r.Events)-1].Position()
			}
			return r, nil
		}}
	})
}

// broken stores: a correct memory store with one behaviour of the contract
// broken, to show the suite notices.
var broken = map[string]func(s *memory.Store) store.EventStore{
	"ignores_expected_version": func(s *memory.Store) store.EventStore {
		return &wrapper{Store: s, append: func(ctx context.Context, id store.StreamID, evs []store.EventData, o store.AppendOptions) (store.AppendResult, error) {
			o.ExpectedVersion = store.Any
			return s.AppendToStream(ctx, id, evs, o)
		}}
	},
	"untyped_conflicts": func(s *memory.Store) store.EventStore {
		return &wrapper{Store: s, append: func(ctx context.Context, id store.StreamID, evs []store.EventData, o store.AppendOptions) (store.AppendResult, error) {
			r, err := s.AppendToStream(ctx, id, evs, o)
			if errors.Is(err, store.ErrVersionConflict) {
				err = fmt.Errorf("conflict: %s", err.Error())
			}
			return r, err
		}}
	},
	"drops_metadata": func(s *memory.Store) store.EventStore {
		return &wrapper{Store: s, append: func(ctx context.Context, id store.StreamID, evs []store.EventData, o store.AppendOptions) (store.AppendResult, error) {
			evs = append([]store.EventData(nil), evs...)
			for i := range evs {
				evs[i].Metadata = nil
			}
			return s.AppendToStream(ctx, id, evs, o)
		}}
	},
	"read_all_skips": func(s *memory.Store) store.EventStore {
		return &wrapper{Store: s, readAll: func(ctx context.Context, o store.ReadAllOptions) (store.ReadAllResult, error) {
			r, err := s.ReadAll(ctx, o)
			if len(r.Events) > 3 {
				r.Events = append(r.Events[:1], r.Events[2:]...)
			}
			return r, err
		}}
	},
	"sessions_without_transaction": func(s *memory.Store) store.EventStore {
		w := &wrapper{Store: s}
		w.session = func(ctx context.Context, fn func(context.Context, store.EventStore) error) error { return fn(ctx, w) }
		return w
	},
	"archive_does_nothing": func(s *memory.Store) store.EventStore {
		return &wrapper{Store: s, archive: func(context.Context, store.StreamID, store.ArchiveOptions) error { return nil }}
	},
}

// TestSuiteCatchesBrokenStores runs the suite on each broken store in a
// child process and expects it to fail.
func TestSuiteCatchesBrokenStores(t *testing.T) {
	if name := os.Getenv("STORETEST_BROKEN"); name != "" {
		visibilityWait = time.Second // a broken ReadAll never catches up
		t.Run("broken", func(t *testing.T) {
			Run(t, func(t *testing.T) store.EventStore { return broken[name](memory.New()) })
		})
		return
	}
	for name := range broken {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSuiteCatchesBrokenStores$", "-test.count=1")
			cmd.Env = append(os.Environ(), "STORETEST_BROKEN="+name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed a store that %s (err %v):\n%s", strings.ReplaceAll(name, "_", " "), err, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestSuiteCatchesBrokenStores/broken/") {
				t.Fatalf("the child failed without a suite failure:\n%s", out)
			}
		})
	}
}

// wrapper is a memory store with some methods replaced.
type wrapper struct {
	*memory.Store
	append  func(context.Context, store.StreamID, []store.EventData, store.AppendOptions) (store.AppendResult, error)
	readAll func(context.Context, store.ReadAllOptions) (store.ReadAllResult, error)
	archive func(context.Context, store.StreamID, store.ArchiveOptions) error
	session func(context.Context, func(context.Context, store.EventStore) error) error
}

func (w *wrapper) AppendToStream(ctx context.Context, id store.StreamID, evs []store.EventData, o store.AppendOptions) (store.AppendResult, error) {
	if w.append != nil {
		return w.append(ctx, id, evs, o)
	}
	return w.Store.AppendToStream(ctx, id, evs, o)
}

func (w *wrapper) ReadAll(ctx context.Context, o store.ReadAllOptions) (store.ReadAllResult, error) {
	if w.readAll != nil {
		return w.readAll(ctx, o)
	}
	return w.Store.ReadAll(ctx, o)
}

func (w *wrapper) ArchiveStream(ctx context.Context, id store.StreamID, o store.ArchiveOptions) error {
	if w.archive != nil {
		return w.archive(ctx, id, o)
	}
	return w.Store.ArchiveStream(ctx, id, o)
}

func (w *wrapper) WithSession(ctx context.Context, fn func(context.Context, store.EventStore) error) error {
	if w.session != nil {
		return w.session(ctx, fn)
	}
	return w.Store.WithSession(ctx, fn)
}
