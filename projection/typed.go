package projection

import (
	"context"
	"fmt"
	"reflect"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/projection/internal/cfgerr"
	"github.com/troupehq/troupe/store"
)

// TypedHandler is a handler of one Go event type, made by On. NewRegistry
// turns typed handlers into a Registry keyed by the type names their codec
// gives those Go types, so the types a projection handles come from the
// Go types it names, never from a hand-kept list of strings.
type TypedHandler interface {
	// EventType is the Go type the handler receives.
	EventType() reflect.Type
	// bind returns the stored type name of the handler's Go type in codec
	// and the Handler decoding each event with codec.
	bind(codec store.Codec) (string, Handler, error)
	isNil() bool
}

// On returns a handler of events of Go type E, for NewRegistry. fn receives
// the event decoded by the registry's codec (store.Decode: the same path,
// upcasters included, as every other reader) and the stored event it came
// from (stream, positions, metadata); tx is the batch's transaction, as for
// a Handler. E is usually inferred from fn:
//
//	projection.On(func(ctx context.Context, tx pgx.Tx, e CartCreated, ev store.Event) error { … })
func On[E any](fn func(ctx context.Context, tx pgx.Tx, e E, ev store.Event) error) TypedHandler {
	return typedHandler[E]{fn: fn}
}

type typedHandler[E any] struct {
	fn func(ctx context.Context, tx pgx.Tx, e E, ev store.Event) error
}

func (h typedHandler[E]) EventType() reflect.Type { return reflect.TypeFor[E]() }

func (h typedHandler[E]) bind(codec store.Codec) (string, Handler, error) {
	name, err := store.TypeNameOf[E](codec)
	if err != nil {
		return "", nil, err
	}
	fn := h.fn
	return name, func(ctx context.Context, tx pgx.Tx, ev store.Event) error {
		e, err := DecodeAs[E](codec, ev)
		if err != nil {
			return err
		}
		return fn(ctx, tx, e, ev)
	}, nil
}

// DecodeAs decodes a stored event with codec (store.Decode) and returns it
// as a value of Go type E. An event that decodes to another type is an
// error naming both, the event's type and its place in its stream.
func DecodeAs[E any](codec store.Codec, ev store.Event) (E, error) {
	var zero E
	v, err := store.Decode(codec, ev)
	if err != nil {
		return zero, err
	}
	e, ok := v.(E)
	if !ok {
		return zero, fmt.Errorf("event %s at position %d of stream %q in partition %q decoded to %T, not %v",
			ev.Type, ev.StreamPosition, ev.StreamID, ev.Partition, v, reflect.TypeFor[E]())
	}
	return e, nil
}

// NewRegistry returns the registry of typed handlers: each handler is
// registered under the type name codec gives its Go type, in argument
// order (several handlers of one type run in that order). A Go type the
// codec does not know is a configuration error (matching ErrInvalidConfig)
// naming the Go type, as is a nil codec or handler. Merge the result with
// string-keyed registries with MergeRegistries.
//
// The registry is keyed by the current type names: a projection whose
// events include renamed, split or dropped types must read from a store
// that upcasts (postgres.Config.Upcaster), which hands every event over
// under its current name; from a plain store an event stored under an old
// name reaches no handler.
func NewRegistry(codec store.Codec, handlers ...TypedHandler) (Registry, error) {
	if codec == nil {
		return nil, cfgerr.Errorf("projection.NewRegistry: codec is nil")
	}
	r := Registry{}
	for i, h := range handlers {
		if h == nil {
			return nil, cfgerr.Errorf("projection.NewRegistry: handler %d is nil", i)
		}
		if h.isNil() {
			return nil, cfgerr.Errorf("projection.NewRegistry: handler %d (projection.On[%v]) has a nil function", i, h.EventType())
		}
		name, fn, err := h.bind(codec)
		if err != nil {
			return nil, fmt.Errorf("%w: projection.NewRegistry: handler %d (projection.On[%v]): %w", ErrInvalidConfig, i, h.EventType(), err)
		}
		r[name] = append(r[name], fn)
	}
	return r, nil
}

func (h typedHandler[E]) isNil() bool { return h.fn == nil }

// MustRegistry is NewRegistry for program set-up: it panics on error.
func MustRegistry(codec store.Codec, handlers ...TypedHandler) Registry {
	r, err := NewRegistry(codec, handlers...)
	if err != nil {
		panic(err)
	}
	return r
}
