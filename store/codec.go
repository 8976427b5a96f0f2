package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
)

// Codec maps Go event values to stored type names and bodies and back.
type Codec interface {
	// Encode returns the type name and body of an event value.
	Encode(event any) (typ string, data json.RawMessage, err error)
	// Decode returns the Go value of a stored event. An unregistered type
	// returns an error matching ErrUnknownEventType.
	Decode(typ string, data json.RawMessage) (any, error)
}

// JSONCodec is a Codec that stores events as JSON under explicitly
// registered type names. The zero value is not usable; use NewJSONCodec.
//
// A JSONCodec is also the schema's history (an [Upcaster]): register the
// upcasters, renames, splits and drops of its types on it (RegisterUpcaster,
// RegisterRename, RegisterSplit, RegisterDrop) and give the same codec to
// the store's configuration, so every read sees current types. Encode
// reports the current version of each type, which store.Encode and the
// actor host write with the event.
type JSONCodec struct {
	mu     sync.RWMutex
	byName map[string]reflect.Type
	byType map[reflect.Type]string
	evo    evolution
}

var (
	_ Codec     = (*JSONCodec)(nil)
	_ Upcaster  = (*JSONCodec)(nil)
	_ TypeNamer = (*JSONCodec)(nil)
)

// NewJSONCodec returns an empty JSONCodec.
func NewJSONCodec() *JSONCodec {
	return &JSONCodec{byName: map[string]reflect.Type{}, byType: map[reflect.Type]string{}}
}

// Register maps the Go type of sample to name. sample is a value of the
// event type (a struct, not a pointer); decoding returns values of that
// type. Registering a name or type twice with a different partner is an
// error.
func (c *JSONCodec) Register(name string, sample any) error {
	if name == "" {
		return InvalidArgument("codec: empty type name")
	}
	t := reflect.TypeOf(sample)
	if t == nil {
		return InvalidArgument("codec: nil sample for type %q", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkFree("register", name); err != nil {
		return err
	}
	if old, ok := c.byName[name]; ok && old != t {
		return InvalidArgument("codec: type name %q already registered for %v", name, old)
	}
	if old, ok := c.byType[t]; ok && old != name {
		return InvalidArgument("codec: %v already registered as %q", t, old)
	}
	c.byName[name] = t
	c.byType[t] = name
	return nil
}

// MustRegister is Register for program set-up: it panics on error.
func (c *JSONCodec) MustRegister(name string, sample any) *JSONCodec {
	if err := c.Register(name, sample); err != nil {
		panic(err)
	}
	return c
}

// Encode implements Codec.
func (c *JSONCodec) Encode(event any) (string, json.RawMessage, error) {
	t := reflect.TypeOf(event)
	c.mu.RLock()
	name, ok := c.byType[t]
	c.mu.RUnlock()
	if !ok {
		return "", nil, fmt.Errorf("%w: no name registered for Go type %v", ErrUnknownEventType, t)
	}
	data, err := json.Marshal(event)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s: %w", name, err)
	}
	return name, data, nil
}

// TypeName implements TypeNamer: the name registered for sample's Go type,
// found without encoding sample.
func (c *JSONCodec) TypeName(sample any) (string, error) {
	t := reflect.TypeOf(sample)
	c.mu.RLock()
	name, ok := c.byType[t]
	c.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("%w: no name registered for Go type %v", ErrUnknownEventType, t)
	}
	return name, nil
}

// Decode implements Codec.
func (c *JSONCodec) Decode(typ string, data json.RawMessage) (any, error) {
	c.mu.RLock()
	t, ok := c.byName[typ]
	c.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownEventType, typ)
	}
	p := reflect.New(t)
	if err := json.Unmarshal(data, p.Interface()); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	return p.Elem().Interface(), nil
}

// Encode turns event values into EventData with codec, in order. When
// codec is an [Upcaster] (a JSONCodec is), each event's SchemaVersion is
// the current version of its type.
func Encode(codec Codec, events ...any) ([]EventData, error) {
	out := make([]EventData, len(events))
	for i, e := range events {
		typ, data, err := codec.Encode(e)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		out[i] = EventData{Type: typ, Data: data}
		if u, ok := codec.(Upcaster); ok {
			out[i].SchemaVersion = u.SchemaVersion(typ)
		}
	}
	return out, nil
}

// Decode decodes a stored event with codec. When codec is an [Upcaster]
// (a JSONCodec is), an event not at the current version of its type (read
// from a store without the upcaster configured) is upcast first; one that
// reads as several events or none is an error then. Errors name the
// stream, partition, position, type and schema version of the event; an
// unregistered type is an *UnknownEventTypeError, an event that can't be
// upcast an *UpcastError.
func Decode(codec Codec, e Event) (any, error) {
	e, err := upcastOne(codec, e)
	if err != nil {
		return nil, err
	}
	v, err := codec.Decode(e.Type, e.Data)
	if err != nil {
		if errors.Is(err, ErrUnknownEventType) {
			return nil, &UnknownEventTypeError{Type: e.Type, SchemaVersion: e.SchemaVersion, Stream: e.StreamID,
				Partition: e.Partition, Position: e.StreamPosition}
		}
		return nil, fmt.Errorf("decode event %s version %q at position %d of stream %q in partition %q: %w",
			e.Type, e.SchemaVersion, e.StreamPosition, e.StreamID, e.Partition, err)
	}
	return v, nil
}
