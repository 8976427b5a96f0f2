package readmodel

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
)

// Delete, returned as the error of an evolve function (Config.Evolve or an
// Evolver made by On), deletes the event's read-model row, as Emmett's
// evolve does by returning null. The row's state goes back to Initial and
// MapToColumns is not called for that event. The row's position is kept
// in the snapshots table (for an InRow read model too, whose row held it),
// so an event at or before it is still skipped, and a later event of the
// stream folds from Initial and writes the row again. errors.Is is used,
// so a wrapped Delete deletes too.
var Delete = errors.New("readmodel: delete the row")

// Evolver is a typed evolve function of one Go event type, made by On,
// for Config.Evolvers.
type Evolver[S any] interface {
	// EventType is the Go type the evolver receives.
	EventType() reflect.Type
	bind(codec store.Codec) (string, func(S, store.Event) (S, error), error)
	isNil() bool
}

// On returns the evolve function of events of Go type E, for
// Config.Evolvers. fn receives the row's state, the event decoded by
// Config.Codec (store.Decode: upcasters included) and the stored event it
// came from; it returns the next state, or Delete to delete the row. S and
// E are usually inferred from fn:
//
//	readmodel.On(func(s CartState, e ItemAdded, _ store.Event) (CartState, error) { … })
func On[S, E any](fn func(state S, e E, ev store.Event) (S, error)) Evolver[S] {
	return evolver[S, E]{fn: fn}
}

type evolver[S, E any] struct {
	fn func(state S, e E, ev store.Event) (S, error)
}

func (v evolver[S, E]) EventType() reflect.Type { return reflect.TypeFor[E]() }

func (v evolver[S, E]) isNil() bool { return v.fn == nil }

func (v evolver[S, E]) bind(codec store.Codec) (string, func(S, store.Event) (S, error), error) {
	name, err := store.TypeNameOf[E](codec)
	if err != nil {
		return "", nil, err
	}
	fn := v.fn
	return name, func(s S, ev store.Event) (S, error) {
		e, err := projection.DecodeAs[E](codec, ev)
		if err != nil {
			return s, err
		}
		return fn(s, e, ev)
	}, nil
}

// bindEvolvers resolves cfg.Evolvers with cfg.Codec into the event types
// and the evolve function dispatching on them.
func bindEvolvers[S any](cfg *Config[S]) ([]string, func(S, store.Event) (S, error), error) {
	switch {
	case cfg.Codec == nil:
		return nil, nil, configError("readmodel.Config.Codec is nil (Evolvers decode events with it)")
	case len(cfg.EventTypes) > 0:
		return nil, nil, configError("readmodel.Config.EventTypes is set together with Evolvers (the event types come from the evolvers' Go types)")
	case cfg.Evolve != nil:
		return nil, nil, configError("readmodel.Config.Evolve is set together with Evolvers (use one of them)")
	}
	byName := make(map[string]func(S, store.Event) (S, error), len(cfg.Evolvers))
	names := make([]string, 0, len(cfg.Evolvers))
	for i, v := range cfg.Evolvers {
		if v == nil || v.isNil() {
			return nil, nil, configError("readmodel.Config.Evolvers[%d] is nil", i)
		}
		name, fn, err := v.bind(cfg.Codec)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: readmodel.Config.Evolvers[%d] (readmodel.On for %v): %w", projection.ErrInvalidConfig, i, v.EventType(), err)
		}
		if _, dup := byName[name]; dup {
			return nil, nil, configError("readmodel.Config.Evolvers[%d]: a second evolver for %v (event type %q)", i, v.EventType(), name)
		}
		byName[name] = fn
		names = append(names, name)
	}
	evolve := func(s S, e store.Event) (S, error) {
		fn, ok := byName[e.Type]
		if !ok {
			return s, fmt.Errorf("no evolver for event type %q", e.Type)
		}
		return fn(s, e)
	}
	return names, evolve, nil
}
