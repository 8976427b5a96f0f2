package actor

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// EvictTenant passivates every cached stream actor of tenant (a partition;
// "" means store.DefaultPartition) and waits until they have stopped, or
// until ctx ends (its error is returned; the actors still stop). Each
// actor first handles the commands already in its mailbox. Actors of other
// tenants stay cached.
//
// Call it in every process after dropping the tenant (tenancy.Manager.Drop)
// so that no cached state of the tenant is served afterwards, State
// included. Commands that arrive for the tenant meanwhile are handled as
// usual, by a new activation that loads the stream from the store: once the
// drop has committed their appends fail with an error matching
// store.ErrTenantDropped. Without EvictTenant, an actor of a dropped tenant
// passivates itself the first time one of its appends fails that way.
func (h *Host) EvictTenant(ctx context.Context, tenant string) error {
	p, err := store.ValidatePartition(tenant)
	if err != nil {
		return fmt.Errorf("actor: evict tenant: %w", err)
	}
	h.mu.Lock()
	for _, k := range h.cache.Keys() {
		if k.tenant == p {
			h.evict(otelwire.ReasonEvicted, func() { h.cache.Remove(k) })
		}
	}
	var stopping []<-chan struct{}
	for k, act := range h.passivating {
		if k.tenant == p {
			stopping = append(stopping, act.stopped)
		}
	}
	h.mu.Unlock()
	for _, stopped := range stopping {
		select {
		case <-stopped:
		case <-ctx.Done():
			return fmt.Errorf("actor: evict tenant %q: %w", p, ctx.Err())
		}
	}
	return nil
}

// passivate takes act out of the cache and sends it a passivate message
// (after the messages already in its mailbox), unless it is no longer the
// cached activation of its stream (being passivated already).
func (h *Host) passivate(act *activation, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur, ok := h.cache.Peek(act.key); ok && cur == act {
		h.evict(reason, func() { h.cache.Remove(act.key) })
	}
}

// onTenantDropped settles a batch whose append was refused because its
// tenant was dropped (store.ErrTenantDropped): nothing was written. Every
// command of the batch fails with that error; the state, which belongs to
// the erased tenant, is forgotten together with the command ids; and the
// actor is passivated. Commands still pending load the stream again before
// they are decided: they fail the same way, or, when the tenant was
// created again meanwhile, apply to the new, empty stream.
func (a *streamActor[C, E, S]) onTenantDropped(b *batch[C, E, S], err error) {
	// Out of the cache before any caller hears of the drop: a State or a
	// command sent after the failed command's reply never reaches this
	// actor's state.
	var zero S
	a.state, a.version, a.exists = zero, 0, false
	a.loaded, a.dirty = false, false
	a.ids = newCommandWindow[E, S](a.h.cfg.CommandIDWindow)
	a.h.passivate(a.act, otelwire.ReasonEvicted)
	a.h.log.Info("actor_tenant_dropped", slog.String("kind", a.key.kind),
		slog.String("tenant_id", a.key.tenant), slog.String("stream_id", string(a.key.stream)))
	for _, e := range b.entries {
		a.failEntry(e, fmt.Errorf("actor: append %s events to stream %q: %w", a.key.kind, a.key.stream, err))
	}
}
