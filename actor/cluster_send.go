package actor

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/telemetry"
)

// sendCluster sends a command to its stream's owner (maybe this member) and
// decodes the outcome. A command without an id gets one, so placement
// retries are idempotent.
func (a *Aggregate[C, E, S]) sendCluster(ctx context.Context, k key, cmd C, o SendOptions) (Result[E, S], error) {
	var zero Result[E, S]
	wrap := func(err error) error {
		return fmt.Errorf("actor: send %s command to stream %q: %w", k.kind, k.stream, err)
	}
	if err := ctx.Err(); err != nil {
		return zero, wrap(err)
	}
	if err := a.h.beginClusterCall(); err != nil {
		return zero, wrap(err)
	}
	defer a.h.cluster.callers.Done()
	if o.CommandID == "" {
		o.CommandID = uuid.NewString()
	}
	typ, data, err := a.encodeCommand(cmd)
	if err != nil {
		return zero, wrap(err)
	}
	req := &wireRequest{Op: opSend, Kind: k.kind, Tenant: k.tenant, Stream: k.stream, CmdType: typ, Cmd: data,
		CommandID: o.CommandID, ReturnState: o.ReturnState, Meta: commandMetadata(ctx, o)}
	rep, err := a.h.cluster.call(ctx, k, req)
	if err != nil {
		return zero, wrap(err)
	}
	if rep.Err != nil {
		return zero, rep.Err.decode(a.rt.Errors)
	}
	res := Result[E, S]{Version: rep.Version, GlobalPosition: rep.GlobalPosition, Position: rep.Position, Duplicate: rep.Duplicate}
	for i, ev := range rep.Events {
		v, err := a.rt.codec.Decode(ev.Type, ev.Data)
		if err != nil {
			return zero, wrap(fmt.Errorf("decode event %d (%s) of the owner's result: %w", i, ev.Type, err))
		}
		e, ok := v.(E)
		if !ok {
			return zero, wrap(fmt.Errorf("event %d of the owner's result decoded to %T, which is not the aggregate's event type", i, v))
		}
		res.Events = append(res.Events, e)
	}
	if o.ReturnState {
		if res.State, err = a.rt.decodeState(rep.State); err != nil {
			return zero, wrap(fmt.Errorf("decode the owner's state: %w", err))
		}
	}
	return res, nil
}

// stateCluster reads a stream's state on its owner.
func (a *Aggregate[C, E, S]) stateCluster(ctx context.Context, k key) (S, store.Version, error) {
	var zero S
	wrap := func(err error) error {
		return fmt.Errorf("actor: read %s state of stream %q: %w", k.kind, k.stream, err)
	}
	if err := ctx.Err(); err != nil {
		return zero, 0, wrap(err)
	}
	if err := a.h.beginClusterCall(); err != nil {
		return zero, 0, wrap(err)
	}
	defer a.h.cluster.callers.Done()
	rep, err := a.h.cluster.call(ctx, k, &wireRequest{Op: opState, Kind: k.kind, Tenant: k.tenant, Stream: k.stream})
	if err != nil {
		return zero, 0, wrap(err)
	}
	if rep.Err != nil {
		return zero, 0, rep.Err.decode(a.rt.Errors)
	}
	s, err := a.rt.decodeState(rep.State)
	if err != nil {
		return zero, 0, wrap(fmt.Errorf("decode the owner's state: %w", err))
	}
	return s, rep.Version, nil
}

// encodeCommand encodes a command with the kind's codec, which must have
// the command's type registered.
func (a *Aggregate[C, E, S]) encodeCommand(cmd C) (typ string, data json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError("encode command", r)
		}
	}()
	typ, data, err = a.rt.codec.Encode(cmd)
	if err != nil {
		return "", nil, fmt.Errorf("%w: encode command %T with the kind's codec (in cluster mode commands must be registered in the codec too): %w",
			store.ErrInvalidArgument, cmd, err)
	}
	return typ, data, nil
}

func (k *kindRuntime[C, E, S]) encodeState(s S) (json.RawMessage, error) {
	if k.Snapshot != nil {
		return encodeSnapshot(k.Snapshot, s)
	}
	return json.Marshal(s)
}

func (k *kindRuntime[C, E, S]) decodeState(b json.RawMessage) (s S, err error) {
	if len(b) == 0 {
		return s, nil
	}
	if k.Snapshot != nil {
		return decodeSnapshot(k.Snapshot, b)
	}
	err = json.Unmarshal(b, &s)
	return s, err
}

// serveRemote runs a request received by the stream's grain on the local
// path, exactly as a local Send or State would.
func (k *kindRuntime[C, E, S]) serveRemote(ctx context.Context, h *Host, key key, req *wireRequest) *wireReply {
	fail := func(err error) *wireReply { return &wireReply{Err: encodeError(err, k.Errors)} }
	switch req.Op {
	case opState:
		m := &queryMsg[S]{reply: make(chan stateReply[S], 1)}
		if err := h.deliver(ctx, key, k, m); err != nil {
			return fail(fmt.Errorf("actor: read %s state of stream %q: %w", key.kind, key.stream, err))
		}
		select {
		case r := <-m.reply:
			if r.err != nil {
				return fail(r.err)
			}
			st, err := k.encodeState(r.state)
			if err != nil {
				return fail(fmt.Errorf("actor: encode %s state of stream %q: %w", key.kind, key.stream, err))
			}
			return &wireReply{Version: r.version, State: st}
		case <-ctx.Done():
			return fail(fmt.Errorf("actor: read %s state of stream %q: %w", key.kind, key.stream, ctx.Err()))
		}
	case opSend:
	default:
		return fail(store.InvalidArgument("unknown cluster request %q", req.Op))
	}
	v, err := k.codec.Decode(req.CmdType, req.Cmd)
	if err != nil {
		return fail(fmt.Errorf("actor: decode %s command %s: %w: %w", key.kind, req.CmdType, store.ErrInvalidArgument, err))
	}
	cmd, ok := v.(C)
	if !ok {
		return fail(store.InvalidArgument("%s command type %s decoded to %T, which is not the kind's command type", key.kind, req.CmdType, v))
	}
	sc, _ := telemetry.SpanContextFromMetadata(req.Meta)
	m := &commandMsg[C, E, S]{
		cmd:   cmd,
		opts:  SendOptions{CommandID: req.CommandID, ReturnState: req.ReturnState},
		reply: make(chan outcome[E, S], 1),
		done:  ctx.Done(),
		meta:  req.Meta,
		sc:    sc,
	}
	if m.meta == nil {
		m.meta = store.Metadata{}
	}
	if err := h.deliver(ctx, key, k, m); err != nil {
		return fail(fmt.Errorf("actor: send %s command to stream %q: %w", key.kind, key.stream, err))
	}
	var out outcome[E, S]
	select {
	case out = <-m.reply:
	case <-ctx.Done():
		return fail(fmt.Errorf("actor: send %s command to stream %q: %w", key.kind, key.stream, ctx.Err()))
	}
	if out.err != nil {
		return fail(out.err)
	}
	rep := &wireReply{Version: out.res.Version, GlobalPosition: out.res.GlobalPosition, Position: out.res.Position, Duplicate: out.res.Duplicate}
	for i, e := range out.res.Events {
		typ, data, err := k.codec.Encode(e)
		if err != nil {
			return fail(fmt.Errorf("actor: encode event %d of %s command for stream %q: %w", i, key.kind, key.stream, err))
		}
		rep.Events = append(rep.Events, wireEvent{Type: typ, Data: data})
	}
	if req.ReturnState {
		if rep.State, err = k.encodeState(out.res.State); err != nil {
			return fail(fmt.Errorf("actor: encode %s state of stream %q: %w", key.kind, key.stream, err))
		}
	}
	return rep
}

// accepting returns nil while the host serves Send and State, otherwise
// ErrNotStarted or ErrStopped.
// beginClusterCall registers a Send or State of this host in cluster
// mode (end it with h.cluster.callers.Done), or says why the host takes
// none. Stop waits for the registered calls before leaving the cluster.
func (h *Host) beginClusterCall() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.acceptingLocked(); err != nil {
		return err
	}
	h.cluster.callers.Add(1)
	return nil
}

func (h *Host) acceptingLocked() error {
	switch h.state {
	case hostNew:
		return ErrNotStarted
	case hostStopping, hostStopped:
		return ErrStopped
	}
	return nil
}
