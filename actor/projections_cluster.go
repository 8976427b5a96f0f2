package actor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// In cluster mode a projection runs on one member at a time, placed like a
// stream: by protoactor's identity placement of the grain kind
// "troupe.projection" with the projection's registered name as identity.
// Every member that registered the projection asks its grain, every
// ProjectionOptions.EnsureInterval and at once when the membership
// changes, to make sure it runs (an ensure request: a few bytes each way).
// The grain, activated on the owner, has
// the owner's projection actor run the runner, supervised as in a single
// process. A grain that receives no ensure request for
// ensureMisses·EnsureInterval (the members route to another owner), or
// that protoactor stops because its identity moved, stops the runner. The
// projection's lease, not the placement, guarantees a single writer: while
// ownership moves two members may both run it, and one stands by.

// projectionGrainKind is the protoactor cluster kind of projections.
const projectionGrainKind = "troupe.projection"

// ensureMisses is how many ensure intervals a projection grain waits for
// a request before it stops its runner.
const ensureMisses = 5

// DefaultEnsureInterval is how often, in cluster mode, every member asks
// the owner of each projection it registered to run it, when
// ProjectionOptions.EnsureInterval is zero.
const DefaultEnsureInterval = time.Second

// ensureReply is the JSON answer of a projection grain, in a
// wrapperspb.BytesValue.
type ensureReply struct {
	Member string `json:"member"`
	Error  string `json:"error,omitempty"`
}

// addProjectionKind declares the projection grain kind on a cluster
// member (before it joins: every member must have the kind to be a
// placement candidate). Called by New.
func (h *Host) addProjectionKind() {
	if h.cluster == nil {
		return
	}
	kind := cluster.NewKind(projectionGrainKind, protoactor.PropsFromProducer(func() protoactor.Actor { return &projGrain{h: h} }))
	h.cluster.cl.Config.Kinds[projectionGrainKind] = kind
}

// projGrain is the cluster activation of one projection on its owner. It
// holds nothing but the activation: it has the local projection actor run
// the runner while it lives, and stop it when it stops.
type projGrain struct {
	h    *Host
	name string
	e    *projEntry
}

func (g *projGrain) Receive(c protoactor.Context) {
	switch m := c.Message().(type) {
	case *cluster.ClusterInit:
		g.name = m.Identity.Identity
	case *protoactor.ReceiveTimeout:
		g.h.log.Info("projection_grain_idle", slog.String("projection", g.name))
		c.Stop(c.Self())
	case *protoactor.Stopped:
		if g.e != nil {
			g.h.post(g.e.pid, &projDeactivate{grain: g})
		}
	case *wrapperspb.BytesValue:
		rep := ensureReply{Member: g.h.Member()}
		if g.e == nil {
			g.h.mu.Lock()
			e, ok := g.h.projections.byName[g.name]
			g.h.mu.Unlock()
			if ok {
				g.e = e
				c.SetReceiveTimeout(ensureMisses * e.ensure)
			}
		}
		if g.e == nil {
			// Not registered here (yet): stop, so that a later request
			// activates a grain that looks again.
			rep.Error = fmt.Sprintf("projection %q is not registered on member %s", g.name, rep.Member)
			c.Stop(c.Self())
		} else {
			g.h.post(g.e.pid, &projActivate{grain: g})
		}
		if c.Sender() != nil {
			b, _ := json.Marshal(rep)
			c.Respond(wrapperspb.Bytes(b))
		}
	}
}

// ensureLoop asks the owner of e's projection to run it, every ensure
// interval, until the host stops. It runs in cluster mode, from Start or
// the registration of a projection on a running host; it records the
// owner it hears from in e.
func (h *Host) ensureLoop(e *projEntry) {
	defer h.projections.wg.Done()
	r := h.cluster
	payload := wrapperspb.Bytes([]byte(`{"op":"ensure"}`))
	t := time.NewTimer(0)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-h.quit:
			return
		case <-t.C:
		case <-e.kick:
		}
		start := time.Now()
		owner, err := h.ensure(r, e.name, payload, e.ensure)
		h.mu.Lock()
		e.placed, e.placeErr = owner, err
		h.mu.Unlock()
		switch {
		case err != nil && !failing:
			// Logged once per run of failures: they last while the
			// cluster notices a lost member.
			failing = true
			h.log.Warn("projection_ensure_failed", slog.String("projection", e.name), slog.Any("error", err))
		case err == nil && failing:
			failing = false
			h.log.Info("projection_ensure_recovered", slog.String("projection", e.name), slog.String("owner", owner))
		}
		next := e.ensure
		if err != nil {
			next = max(e.ensure/5, 10*time.Millisecond) // try the new owner soon
		}
		t.Reset(max(next-time.Since(start), 0))
	}
}

// watchTopology makes every ensure loop send its next request at once when
// the membership changes, so a projection's new owner hears about it
// without waiting for the ensure interval. Called by Start with h.mu held.
// The handler runs on protoactor's goroutines and takes no lock of the
// host's: it reads the kick channels from a copy-on-write list.
func (h *Host) watchTopology() {
	h.projections.topology = h.system.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*cluster.ClusterTopology); !ok {
			return
		}
		kicks := h.projections.kicks.Load()
		if kicks == nil {
			return
		}
		for _, k := range *kicks {
			select {
			case k <- struct{}{}:
			default:
			}
		}
	})
}

// ensure sends one ensure request for the projection called name and
// returns the member that answered.
func (h *Host) ensure(r *clusterRuntime, name string, payload *wrapperspb.BytesValue, timeout time.Duration) (string, error) {
	pid, _ := r.cl.PidCache.Get(name, projectionGrainKind)
	if pid == nil {
		pid = r.cl.Get(name, projectionGrainKind)
		if pid == nil {
			return "", errNoOwner
		}
		r.cl.PidCache.Set(name, projectionGrainKind, pid)
	}
	res, err := h.system.Root.RequestFuture(pid, payload, timeout).Result()
	if err != nil {
		r.cl.PidCache.RemoveByValue(name, projectionGrainKind, pid)
		return "", fmt.Errorf("ensure request to %s: %w", pid.Address, err)
	}
	var rep ensureReply
	bv, ok := res.(*wrapperspb.BytesValue)
	if !ok || json.Unmarshal(bv.Value, &rep) != nil {
		r.cl.PidCache.RemoveByValue(name, projectionGrainKind, pid)
		return "", fmt.Errorf("ensure request to %s: unexpected answer %T", pid.Address, res)
	}
	if rep.Error != "" {
		r.cl.PidCache.RemoveByValue(name, projectionGrainKind, pid)
		return rep.Member, fmt.Errorf("ensure request to %s: %s", rep.Member, rep.Error)
	}
	return rep.Member, nil
}
