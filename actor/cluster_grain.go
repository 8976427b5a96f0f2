package actor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// streamGrain is the cluster activation of one stream identity on its
// owner. It does not hold the stream's state: it hands every request to the
// host's local path (the stream actor, with its cache, group commit,
// snapshots and command ids) in a goroutine and answers the captured sender
// from there, so it never blocks. It stops after Config.IdleTimeout
// without requests; stopping passivates the local stream actors it served,
// so that a later owner of the stream never leaves a stale copy behind here.
type streamGrain struct {
	r        *clusterRuntime
	identity string
	keys     map[key]struct{}
	idle     bool // stopping because no request came for IdleTimeout
}

func (g *streamGrain) Receive(c protoactor.Context) {
	switch m := c.Message().(type) {
	case *protoactor.Started:
		if idle := g.r.h.cfg.IdleTimeout; idle > 0 {
			c.SetReceiveTimeout(idle)
		}
	case *cluster.ClusterInit:
		g.identity = m.Identity.Identity
		g.r.grainStarted(g.identity)
	case *protoactor.ReceiveTimeout:
		g.idle = true
		c.Stop(c.Self())
	case *protoactor.Stopped:
		reason := otelwire.ReasonEvicted // moved to another member, or the member stops
		if g.idle {
			reason = otelwire.ReasonIdle
		}
		for k := range g.keys {
			g.r.h.passivateKey(k, reason)
		}
		if g.identity != "" {
			g.r.grainStopped(g.identity)
		}
	case *wrapperspb.BytesValue:
		sender := c.Sender()
		if sender == nil {
			return
		}
		var req wireRequest
		if err := json.Unmarshal(m.Value, &req); err != nil {
			g.r.reply(sender, &wireReply{Err: encodeError(store.InvalidArgument("undecodable cluster request: %v", err), nil)})
			return
		}
		k := key{tenant: req.Tenant, kind: req.Kind, stream: req.Stream}
		if g.keys == nil {
			g.keys = map[key]struct{}{}
		}
		g.keys[k] = struct{}{}
		g.r.serve(k, &req, sender)
	}
}

func (r *clusterRuntime) grainStarted(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.activations[id]++
	r.live[id]++
}

func (r *clusterRuntime) grainStopped(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live[id]--; r.live[id] <= 0 {
		delete(r.live, id)
	}
}

// serve runs a request from another member (or this one) on the local
// path, off the grain's loop, and answers sender. Once the member is
// leaving (the requests being served are waited for), a request is
// answered ErrStopped at once, and its caller retries elsewhere. A request
// served while its grain stopped (the stream moved) passivates the stream
// actor it used, which no grain would passivate later.
func (r *clusterRuntime) serve(k key, req *wireRequest, sender *protoactor.PID) {
	r.mu.Lock()
	if r.leaving {
		r.mu.Unlock()
		r.reply(sender, &wireReply{Err: encodeError(fmt.Errorf("actor: member %s is leaving: %w", r.member(), ErrStopped), nil)})
		return
	}
	r.serving.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.serving.Done()
		r.reply(sender, r.handle(k, req))
		r.mu.Lock()
		orphan := r.live[identityOf(k)] == 0
		r.mu.Unlock()
		if orphan {
			r.h.passivateKey(k, otelwire.ReasonEvicted)
		}
	}()
}

func (r *clusterRuntime) handle(k key, req *wireRequest) (rep *wireReply) {
	r.h.kindsMu.RLock()
	rt, ok := r.h.kinds[k.kind]
	r.h.kindsMu.RUnlock()
	if !ok {
		return &wireReply{Err: encodeError(fmt.Errorf("actor: %w: %q is not registered on member %s", ErrUnknownKind, k.kind, r.member()), nil)}
	}
	defer func() {
		if p := recover(); p != nil {
			rep = &wireReply{Err: encodeError(newPanicError("cluster request", p), nil)}
		}
	}()
	// The caller waits at most RequestTimeout for this attempt; a command
	// whose caller has gone is skipped by the stream actor, and the caller
	// retries it with the same command id.
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RequestTimeout)
	defer cancel()
	return rt.serveRemote(ctx, r.h, k, req)
}

func (r *clusterRuntime) reply(to *protoactor.PID, rep *wireReply) {
	b, err := json.Marshal(rep)
	if err != nil {
		b, _ = json.Marshal(&wireReply{Err: encodeError(fmt.Errorf("actor: encode cluster reply: %w", err), nil)})
	}
	r.h.system.Root.Send(to, wrapperspb.Bytes(b))
}

// call sends a request to the owner of k's stream and returns its reply,
// retrying placement failures with ClusterConfig.Retry. A reply whose
// error says the owner is stopping counts as a placement failure too (the
// stream moves to another member). After the last attempt the error
// matches ErrOutcomeUnknown when an attempt of a command timed out (the
// command may have been applied), store.ErrUnavailable otherwise.
func (r *clusterRuntime) call(ctx context.Context, k key, req *wireRequest) (*wireReply, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, store.InvalidArgument("encode %s request: %v", k.kind, err)
	}
	id := identityOf(k)
	pol := r.cfg.Retry
	timedOut := false
	for attempt := 1; ; attempt++ {
		res, err := r.attempt(ctx, streamGrainKind, id, wrapperspb.Bytes(payload))
		var rep *wireReply
		if err == nil {
			rep, err = decodeReply(res)
		}
		if err == nil && rep.Err != nil && isStopping(rep.Err) {
			// The owner refused it (it is leaving): try the next owner,
			// and after the last attempt answer as for any placement
			// failure, outcome unknown when an earlier attempt timed out.
			r.cl.PidCache.Remove(id, streamGrainKind)
			err = &placementError{err: fmt.Errorf("member is leaving: %s", rep.Err.Msg)}
		}
		var pe *placementError
		if !errors.As(err, &pe) {
			return rep, err
		}
		timedOut = timedOut || pe.timedOut
		if attempt >= pol.MaxAttempts {
			if timedOut && req.Op == opSend { // a state read changes nothing
				return nil, fmt.Errorf("%w: owner of %s did not answer after %d attempts: %w", ErrOutcomeUnknown, id, attempt, pe.err)
			}
			return nil, fmt.Errorf("%w: owner of %s unreachable after %d attempts: %w", store.ErrUnavailable, id, attempt, pe.err)
		}
		r.h.log.Debug("actor_cluster_retry", slog.String("identity", id), slog.Int("attempt", attempt), slog.Any("error", pe.err))
		timer := time.NewTimer(pol.Delay(attempt))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-r.h.quit:
			// This host is stopping: no new attempt after the one that
			// failed, so Stop's wait for the calls in flight ends.
			timer.Stop()
			if timedOut && req.Op == opSend {
				return nil, fmt.Errorf("%w: %w: owner of %s did not answer before this host stopped: %w", ErrOutcomeUnknown, ErrStopped, id, pe.err)
			}
			return nil, fmt.Errorf("%w: owner of %s not reached before this host stopped: %w", ErrStopped, id, pe.err)
		}
	}
}

func isStopping(w *wireError) bool {
	for _, m := range w.Matches {
		if m == "stopped" || m == "notStarted" {
			return true
		}
	}
	return false
}

var errNoOwner = errors.New("no member owns the stream (no member known, or its activation failed)")

// attempt is one request (msg) to the grain kind/id, bounded by
// RequestTimeout and ctx; it returns the grain's answer or a
// *placementError.
func (r *clusterRuntime) attempt(ctx context.Context, kind, id string, msg any) (any, error) {
	timeout := r.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	type result struct {
		res any
		err error
	}
	done := make(chan result, 1)
	fl := &inFlight{left: make(chan struct{})}
	r.track(fl, "") // looking the owner up: any member's leave may be the owner's
	defer r.untrack(fl)
	// An attempt that ends while the owner is still being looked up
	// sends nothing afterwards, and only a request that went out can have
	// been applied (timedOut).
	var (
		mu          sync.Mutex
		ended, sent bool
	)
	end := func() (wasSent bool) {
		mu.Lock()
		defer mu.Unlock()
		ended = true
		return sent
	}
	defer end()
	r.calls.Add(1)
	go func() {
		defer r.calls.Done()
		pid, _ := r.cl.PidCache.Get(id, kind)
		if pid == nil {
			pid = r.cl.Get(id, kind)
			if pid == nil {
				done <- result{err: &placementError{err: errNoOwner}}
				return
			}
			r.cl.PidCache.Set(id, kind, pid)
		}
		r.track(fl, pid.Address)
		mu.Lock()
		if ended {
			mu.Unlock()
			return
		}
		sent = true
		mu.Unlock()
		res, err := r.h.system.Root.RequestFuture(pid, msg, timeout).Result()
		if err != nil {
			r.cl.PidCache.RemoveByValue(id, kind, pid)
			timedOut := errors.Is(err, protoactor.ErrTimeout) || errors.Is(err, remote.ErrTimeout)
			done <- result{err: &placementError{err: fmt.Errorf("request to %s: %w", pid.Address, err), timedOut: timedOut}}
			return
		}
		done <- result{res: res}
	}()
	// Finding the owner may take longer than timeout (protoactor's
	// activation request has a timeout of its own): the attempt ends at
	// timeout all the same, and the goroutine finishes in the background.
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-done:
		return res.res, res.err
	case <-timer.C:
		return nil, &placementError{err: fmt.Errorf("no answer from the owner of %s within %v", id, timeout), timedOut: end()}
	case <-fl.left:
		// The owner left the cluster while the request was out: retry
		// now rather than after RequestTimeout.
		return nil, &placementError{err: fmt.Errorf("the owner of %s left the cluster", id), timedOut: end()}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// decodeReply turns a stream grain's answer into a wireReply.
func decodeReply(res any) (*wireReply, error) {
	bv, ok := res.(*wrapperspb.BytesValue)
	if !ok {
		return nil, &placementError{err: fmt.Errorf("unexpected answer %T", res)}
	}
	var rep wireReply
	if err := json.Unmarshal(bv.Value, &rep); err != nil {
		return nil, fmt.Errorf("actor: decode the owner's answer: %w", err)
	}
	return &rep, nil
}

// inFlight is an attempt waiting for a member's answer (addr, "" while
// the owner is being looked up); left is closed when that member leaves
// the cluster.
type inFlight struct {
	addr   string
	left   chan struct{}
	closed bool
}

// track records the member an attempt waits for: "" registers it while
// its owner is looked up; an address updates it unless the attempt is
// over.
func (r *clusterRuntime) track(fl *inFlight, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if addr == "" {
		r.inFlight[fl] = struct{}{}
		return
	}
	if _, ok := r.inFlight[fl]; ok {
		fl.addr = addr
	}
}

func (r *clusterRuntime) untrack(fl *inFlight) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inFlight, fl)
}

// membersLeft fails the attempts waiting for members that left, and
// those still looking their owner up (the lookup may be waiting for a
// member that left).
func (r *clusterRuntime) membersLeft(addrs map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for fl := range r.inFlight {
		if (fl.addr == "" || addrs[fl.addr]) && !fl.closed {
			fl.closed = true
			close(fl.left)
		}
	}
}
