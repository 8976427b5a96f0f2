package actor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/telemetry"
)

// Kind describes an aggregate kind: its decider and how a command names
// its stream. C is the command type, E the event type and S the state type
// of the decider.
type Kind[C, E, S any] struct {
	// Name identifies the kind on the host (and in deterministic message
	// ids). Required, unique per host.
	Name string
	// StreamType is recorded on streams this kind creates. Defaults to
	// Name.
	StreamType string
	// Decider is the aggregate's behaviour. Required. Decide and Evolve
	// must be pure: Evolve must not modify the state it is given in a way
	// visible through that value (commands are decided against speculative
	// states that are discarded when an append fails).
	Decider decider.Decider[C, E, S]
	// Route returns the tenant (partition) and stream id a command is
	// for. It may leave the tenant empty: Send then takes the tenant
	// carried by its context (store.WithTenant, e.g. set once by an HTTP
	// middleware from the request), and store.DefaultPartition when the
	// context carries none. A tenant Route names wins over the context's.
	// Aggregate.State resolves an empty tenant argument the same way.
	// Required.
	Route func(cmd C) (tenant string, stream store.StreamID)
	// CommandName names a command in telemetry (the command span is
	// "<kind>.<name>", and the name is a metric attribute, so keep the set
	// small). Defaults to the Go type name of the command's dynamic type.
	CommandName func(cmd C) string
	// Codec encodes and decodes the kind's events; every event value the
	// decider produces must be registered. Defaults to Config.Codec. When
	// it is a store.Upcaster (a store.JSONCodec is), new events are written
	// at the current schema version of their type; configure the host's
	// store with the same codec (postgres.Config.Upcaster) so replays read
	// old events upcast (see docs/evolution.md).
	Codec store.Codec
	// Snapshot, when set, makes the kind save aggregate snapshots; the
	// host's store must implement store.SnapshotStore.
	Snapshot *SnapshotConfig[S]
	// Errors are the kind's sentinel domain errors. In cluster mode a
	// rejection whose error matches one of them (errors.Is) arrives on a
	// caller on another member matching both decider.ErrRejected and that
	// sentinel; other rejections match decider.ErrRejected and keep their
	// message.
	Errors []error
}

// SnapshotConfig makes a kind write its state to the snapshot store every
// Every events, so a cold start reads the snapshot plus the tail instead
// of the whole stream.
type SnapshotConfig[S any] struct {
	// Every is the snapshot interval in events: a snapshot is saved after
	// each append that crosses a multiple of Every. Required, positive.
	Every int
	// Name tells this kind's snapshots apart from others of the same
	// stream. Defaults to the kind's name.
	Name string
	// Version is the version of the state's shape (its encoding). Raise
	// it when the state changes in a way old snapshots can't be decoded
	// into, or when Evolve changes so that old snapshots hold a state the
	// events no longer fold to: a snapshot saved at another version is
	// ignored and the state is folded from the events (and saved again at
	// this version at the next multiple of Every). Defaults to 0, the
	// version of snapshots saved before kinds had one. Must not be
	// negative.
	Version int
	// Encode turns a state into JSON. Defaults to json.Marshal.
	Encode func(S) (json.RawMessage, error)
	// Decode turns JSON back into a state. Defaults to json.Unmarshal into
	// a zero S. A snapshot that fails to decode is logged and ignored: the
	// stream is replayed from its start.
	Decode func(json.RawMessage) (S, error)
}

// SendOptions are the options of one Send.
type SendOptions struct {
	// CommandID makes the command idempotent per stream: re-sending a
	// command id already applied to the stream returns the original result
	// without appending again. The events get deterministic message ids
	// derived from it, and it is stored in their metadata under
	// MetaCommandID, so this holds across restarts and processes: the
	// stream actor remembers the last Config.CommandIDWindow ids it applied
	// or replayed, and the store recognises a re-sent append of the same
	// message ids. Result.Duplicate is set when the actor recognised the id;
	// when the store did (another process applied the command at the very
	// position this one would), the result is the same but Duplicate is
	// false. Re-sending an id older than the window appends nothing and
	// fails with an error wrapping store.ErrDuplicateMessageID. Decide must
	// be deterministic for all this to hold.
	CommandID string
	// ReturnState asks for the state after the command in Result.State.
	ReturnState bool
	// CorrelationID and CausationID are stored in the events' metadata.
	CorrelationID string
	CausationID   string
	// Metadata is stored with every event the command produces. The keys
	// set by the host (command id, correlation, causation, trace context)
	// take precedence.
	Metadata store.Metadata
}

// MetaCommandID is the event metadata key under which the id of the
// command that produced an event is stored.
const MetaCommandID = "commandId"

// Result is the outcome of a successful Send.
type Result[E, S any] struct {
	// Version is the stream's version after the command: the position of
	// its last event (or the current version if it produced none).
	Version store.Version
	// GlobalPosition is the global position of the last event of the append
	// that carried the command. Under group commit that append may hold
	// later commands' events too, so it is at or after the command's own
	// last event; waiting for it is always enough to see the command.
	// Zero when the command produced no events.
	GlobalPosition store.GlobalPosition
	// Position is the commit-safe position projections must reach to have
	// seen the command's events (same batch rule as GlobalPosition).
	Position store.Position
	// Events are the events the command produced.
	Events []E
	// State is the state after the command, when SendOptions.ReturnState
	// was set.
	State S
	// Duplicate reports that the command id had already been applied and
	// this is the original result (see SendOptions.CommandID).
	Duplicate bool
}

// Aggregate is the typed handle of a registered kind. It is safe for
// concurrent use.
type Aggregate[C, E, S any] struct {
	h  *Host
	rt *kindRuntime[C, E, S]
}

// kindRuntime is a registered kind with its defaults resolved.
type kindRuntime[C, E, S any] struct {
	Kind[C, E, S]
	codec     store.Codec
	snapshots store.SnapshotStore // set when Kind.Snapshot is
}

// kindRuntime's non-generic face, used by the host.
type anyKind interface {
	name() string
	newActor(h *Host, act *activation, parent trace.SpanContext) protoactor.Actor
	serveRemote(ctx context.Context, h *Host, k key, req *wireRequest) *wireReply
}

func (k *kindRuntime[C, E, S]) name() string { return k.Name }

func (k *kindRuntime[C, E, S]) newActor(h *Host, act *activation, parent trace.SpanContext) protoactor.Actor {
	return newStreamActor(h, k, act, parent)
}

// Register adds an aggregate kind to the host and returns its typed
// handle. Kinds may be registered before or after Start.
func Register[C, E, S any](h *Host, k Kind[C, E, S]) (*Aggregate[C, E, S], error) {
	rt := &kindRuntime[C, E, S]{Kind: k, codec: k.Codec}
	if rt.codec == nil {
		rt.codec = h.cfg.Codec
	}
	switch {
	case k.Name == "":
		return nil, invalidConfig("Kind.Name is empty")
	case k.Route == nil:
		return nil, invalidConfig("kind %q: Kind.Route is nil", k.Name)
	case rt.codec == nil:
		return nil, invalidConfig("kind %q: Kind.Codec is nil and Config.Codec is nil", k.Name)
	}
	if err := k.Decider.Validate(); err != nil {
		return nil, invalidConfig("kind %q: Kind.Decider: %v", k.Name, err)
	}
	if rt.StreamType == "" {
		rt.StreamType = k.Name
	}
	if rt.CommandName == nil {
		rt.CommandName = func(cmd C) string { return commandTypeName(cmd) }
	}
	if k.Snapshot != nil {
		if k.Snapshot.Every <= 0 {
			return nil, invalidConfig("kind %q: Kind.Snapshot.Every is %d, must be positive", k.Name, k.Snapshot.Every)
		}
		if k.Snapshot.Version < 0 {
			return nil, invalidConfig("kind %q: Kind.Snapshot.Version is %d, must not be negative", k.Name, k.Snapshot.Version)
		}
		if h.snapshots == nil {
			return nil, invalidConfig("kind %q: Kind.Snapshot is set but the host's store (%T) does not implement store.SnapshotStore", k.Name, h.store)
		}
		sc := *k.Snapshot
		if sc.Name == "" {
			sc.Name = k.Name
		}
		if sc.Encode == nil {
			sc.Encode = func(s S) (json.RawMessage, error) { return json.Marshal(s) }
		}
		if sc.Decode == nil {
			sc.Decode = func(b json.RawMessage) (S, error) {
				var s S
				err := json.Unmarshal(b, &s)
				return s, err
			}
		}
		rt.Snapshot = &sc
		rt.snapshots = h.snapshots
	}
	h.kindsMu.Lock()
	defer h.kindsMu.Unlock()
	if _, ok := h.kinds[k.Name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrKindExists, k.Name)
	}
	h.kinds[k.Name] = rt
	return &Aggregate[C, E, S]{h: h, rt: rt}, nil
}

// Lookup returns the handle of a kind registered under name with these
// type parameters, or an error matching ErrUnknownKind.
func Lookup[C, E, S any](h *Host, name string) (*Aggregate[C, E, S], error) {
	h.kindsMu.RLock()
	k, ok := h.kinds[name]
	h.kindsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, name)
	}
	rt, ok := k.(*kindRuntime[C, E, S])
	if !ok {
		return nil, fmt.Errorf("%w: %q is registered with other command, event or state types", ErrUnknownKind, name)
	}
	return &Aggregate[C, E, S]{h: h, rt: rt}, nil
}

// Name returns the kind's name.
func (a *Aggregate[C, E, S]) Name() string { return a.rt.Name }

// route resolves and validates a command's stream, recovering from a
// panicking Route. An empty tenant is ctx's (see key).
func (a *Aggregate[C, E, S]) route(ctx context.Context, cmd C) (k key, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError("route", r)
		}
	}()
	tenant, stream := a.rt.Route(cmd)
	return a.key(ctx, tenant, stream)
}

// key validates a stream's key. An empty tenant is the one ctx carries
// (store.TenantFromContext), else store.DefaultPartition.
func (a *Aggregate[C, E, S]) key(ctx context.Context, tenant string, stream store.StreamID) (key, error) {
	if tenant == "" {
		if t, ok := store.TenantFromContext(ctx); ok {
			tenant = string(t)
		}
	}
	p, err := store.ValidatePartition(tenant)
	if err != nil {
		return key{}, err
	}
	if err := store.ValidateStreamID(stream); err != nil {
		return key{}, err
	}
	return key{tenant: p, kind: a.rt.Name, stream: stream}, nil
}

// Send handles one command on its stream's actor and returns its outcome.
// At most one SendOptions may be given.
//
// Errors: a domain error from Decide is returned as it is, marked with
// decider.Rejected (errors.Is matches both decider.ErrRejected and the
// domain's own errors); a conflict that survives Config.Retry returns an
// error wrapping the store's *store.VersionConflictError; an append whose
// outcome is unknown returns ErrOutcomeUnknown; a panic in user code
// returns a *PanicError; ctx's cancellation returns an error wrapping
// ctx.Err() promptly; a stopping or stopped host returns ErrStopped.
func (a *Aggregate[C, E, S]) Send(ctx context.Context, cmd C, opts ...SendOptions) (Result[E, S], error) {
	var res Result[E, S]
	if len(opts) > 1 {
		return res, store.InvalidArgument("send %s command: %d SendOptions given, at most one allowed", a.rt.Name, len(opts))
	}
	var o SendOptions
	if len(opts) == 1 {
		o = opts[0]
	}
	k, err := a.route(ctx, cmd)
	if err != nil {
		return res, fmt.Errorf("actor: send %s command: %w", a.rt.Name, err)
	}
	ctx, span := a.h.tel.StartCommand(ctx, streamOf(k), a.commandName(cmd))
	if a.h.cluster != nil {
		res, err = a.sendCluster(ctx, k, cmd, o)
	} else {
		res, err = a.send(ctx, k, cmd, o, span)
	}
	span.End(ctx, outcomeOf(err), len(res.Events), err)
	return res, err
}

func (a *Aggregate[C, E, S]) commandName(cmd C) (name string) {
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	return a.rt.CommandName(cmd)
}

func (a *Aggregate[C, E, S]) send(ctx context.Context, k key, cmd C, o SendOptions, span *otelwire.CommandSpan) (Result[E, S], error) {
	var zero Result[E, S]
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("actor: send %s command to stream %q: %w", k.kind, k.stream, err)
	}
	m := &commandMsg[C, E, S]{
		cmd:   cmd,
		opts:  o,
		reply: make(chan outcome[E, S], 1),
		done:  ctx.Done(),
		meta:  commandMetadata(ctx, o),
		span:  span,
		sc:    trace.SpanContextFromContext(ctx),
	}
	if err := a.h.deliver(ctx, k, a.rt, m); err != nil {
		return zero, fmt.Errorf("actor: send %s command to stream %q: %w", k.kind, k.stream, err)
	}
	select {
	case out := <-m.reply:
		return out.res, out.err
	case <-ctx.Done():
		return zero, fmt.Errorf("actor: send %s command to stream %q: %w", k.kind, k.stream, ctx.Err())
	}
}

// commandMetadata is the metadata every event of a command carries: the
// caller's, then the correlation and causation ids, the command id and the
// trace context of the command span.
func commandMetadata(ctx context.Context, o SendOptions) store.Metadata {
	md := make(store.Metadata, len(o.Metadata)+4)
	maps.Copy(md, o.Metadata)
	delete(md, store.MetaTraceParent)
	delete(md, store.MetaTraceState)
	if o.CorrelationID != "" {
		md[store.MetaCorrelationID] = o.CorrelationID
	}
	if o.CausationID != "" {
		md[store.MetaCausationID] = o.CausationID
	}
	if o.CommandID != "" {
		md[MetaCommandID] = o.CommandID
	} else {
		delete(md, MetaCommandID)
	}
	return telemetry.InjectMetadata(ctx, md)
}

// State returns a stream's current state and version without a command.
// A stream with no events has the decider's initial state and version 0.
// The state includes every command answered before State was called.
func (a *Aggregate[C, E, S]) State(ctx context.Context, tenant string, stream store.StreamID) (S, store.Version, error) {
	var zero S
	k, err := a.key(ctx, tenant, stream)
	if err != nil {
		return zero, 0, fmt.Errorf("actor: read %s state: %w", a.rt.Name, err)
	}
	if a.h.cluster != nil {
		return a.stateCluster(ctx, k)
	}
	if err := ctx.Err(); err != nil {
		return zero, 0, fmt.Errorf("actor: read %s state of stream %q: %w", k.kind, k.stream, err)
	}
	m := &queryMsg[S]{reply: make(chan stateReply[S], 1)}
	if err := a.h.deliver(ctx, k, a.rt, m); err != nil {
		return zero, 0, fmt.Errorf("actor: read %s state of stream %q: %w", k.kind, k.stream, err)
	}
	select {
	case r := <-m.reply:
		if r.err != nil {
			return zero, 0, r.err
		}
		return r.state, r.version, nil
	case <-ctx.Done():
		return zero, 0, fmt.Errorf("actor: read %s state of stream %q: %w", k.kind, k.stream, ctx.Err())
	}
}

// commandMsg carries one command to its stream actor. It holds what the
// actor needs of the caller's context (its done channel, the command span
// and the metadata built from it), never the context itself.
type commandMsg[C, E, S any] struct {
	cmd   C
	opts  SendOptions
	reply chan outcome[E, S] // buffered 1; answered exactly once
	done  <-chan struct{}    // the caller's ctx.Done()
	meta  store.Metadata     // copied into every event of the command
	span  *otelwire.CommandSpan
	sc    trace.SpanContext // the command span

	attempts   int  // appends tried (conflicts so far)
	dupRetried bool // reloaded once after a duplicate message id
	answered   bool
}

type outcome[E, S any] struct {
	res Result[E, S]
	err error
}

// gone reports whether the caller has stopped waiting.
func (m *commandMsg[C, E, S]) gone() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// answer replies to the caller; only the stream actor's loop calls it.
func (m *commandMsg[C, E, S]) answer(log *slog.Logger, res Result[E, S], err error) {
	if m.answered {
		return
	}
	m.answered = true
	if !m.opts.ReturnState {
		var zero S
		res.State = zero
	}
	select {
	case m.reply <- outcome[E, S]{res: res, err: err}:
	default:
		log.Error("actor_command_answered_twice")
	}
}

// queryMsg asks a stream actor for its state.
type queryMsg[S any] struct {
	reply chan stateReply[S]
}

type stateReply[S any] struct {
	state   S
	version store.Version
	err     error
}
