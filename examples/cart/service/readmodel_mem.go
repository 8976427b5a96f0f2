package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

type cartKey struct{ tenant, cart string }

// memReadModel is the in-memory read model of -store=memory: the same fold
// as the carts projection, applied by one goroutine that reads the
// in-memory log in commit order and wakes on each commit. An event it
// cannot decode is logged and skipped.
type memReadModel struct {
	es     *memory.Store
	codec  store.Codec
	tel    *otelwire.Telemetry
	name   string
	logger *slog.Logger

	mu         sync.Mutex
	carts      map[cartKey]cart.State
	checkpoint store.Position
	changed    chan struct{} // closed and replaced when checkpoint moves
	cancel     context.CancelFunc
	done       chan struct{}
}

func newMemReadModel(es *memory.Store, codec store.Codec, tel *otelwire.Telemetry, name string, logger *slog.Logger) *memReadModel {
	return &memReadModel{es: es, codec: codec, tel: tel, name: name, logger: logger,
		carts: map[cartKey]cart.State{}, changed: make(chan struct{})}
}

func (m *memReadModel) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done != nil {
		return errors.New("memory read model already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel, m.done = cancel, make(chan struct{})
	go m.run(runCtx, m.done)
	return nil
}

func (m *memReadModel) stop(ctx context.Context) error {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop the memory read model: %w", ctx.Err())
	}
}

func (m *memReadModel) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		wake := m.es.Changed()
		m.mu.Lock()
		after := m.checkpoint
		m.mu.Unlock()
		res, err := m.es.ReadAll(ctx, store.ReadAllOptions{After: after, Limit: defaultProjectionBatch})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.logger.ErrorContext(ctx, "memory_read_model_read_failed", slog.String("error", err.Error()))
		} else if len(res.Events) > 0 {
			m.apply(ctx, res)
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// apply folds one batch into the carts and moves the checkpoint.
func (m *memReadModel) apply(ctx context.Context, res store.ReadAllResult) {
	events := res.Events
	bctx, span := m.tel.StartProjectionBatch(ctx, batchOf(m.name, "", events))
	m.mu.Lock()
	applied := 0
	for _, e := range events {
		if e.StreamType != cart.StreamType {
			continue
		}
		k := cartKey{tenant: e.Partition, cart: string(e.StreamID)}
		s, ok := m.carts[k]
		if !ok {
			s = cart.InitialState()
		}
		next, err := evolveStored(m.codec, s, e)
		if err != nil {
			m.logger.ErrorContext(bctx, "memory_read_model_event_skipped", slog.String("event", e.String()),
				slog.String("error", err.Error()))
			continue
		}
		m.carts[k] = next
		applied++
	}
	m.checkpoint = res.Next
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	span.End(bctx, applied, nil)
}

// batchOf describes a batch of events for its span.
func batchOf(name, tenant string, events []store.Event) otelwire.Batch {
	b := otelwire.Batch{Name: name, Tenant: tenant, Size: len(events),
		Metadata: func(i int) map[string]any { return events[i].Metadata }}
	if len(events) > 0 {
		b.FirstPosition = int64(events[0].GlobalPosition)
		b.LastPosition = int64(events[len(events)-1].GlobalPosition)
	}
	return b
}

func (m *memReadModel) waitFor(ctx context.Context, pos store.Position) error {
	for {
		m.mu.Lock()
		cp, changed := m.checkpoint, m.changed
		m.mu.Unlock()
		if !cp.Less(pos) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for the memory read model to reach %s (at %s): %w",
				FormatPosition(pos), FormatPosition(cp), ctx.Err())
		}
	}
}

func (m *memReadModel) get(_ context.Context, tenant, cartID string) (CartView, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.carts[cartKey{tenant: tenant, cart: cartID}]
	if !ok || s.Status == cart.StatusInit {
		return CartView{}, false, nil
	}
	return viewOf(tenant, cartID, s), true, nil
}

func (m *memReadModel) list(_ context.Context, tenant string) ([]CartView, error) {
	m.mu.Lock()
	views := []CartView{}
	for k, s := range m.carts {
		if k.tenant == tenant && s.Status != cart.StatusInit {
			views = append(views, viewOf(k.tenant, k.cart, s))
		}
	}
	m.mu.Unlock()
	slices.SortFunc(views, func(a, b CartView) int { return strings.Compare(a.CartID, b.CartID) })
	return views, nil
}
