package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
)

// Upcaster brings stored events to the current schema of their types. A
// store configured with one (postgres.Config.Upcaster,
// memory.Config.Upcaster) applies it to every event it reads, so actors,
// projections, rebuilds and the command line only ever see current
// types. [JSONCodec] is an Upcaster: the types, versions and upcasters
// registered on it are the schema.
//
// An upcaster changes what readers see, never what is stored: the
// messages table keeps every event as it was written.
type Upcaster interface {
	// Upcast appends to out what the stored event e reads as today and
	// returns the extended slice: usually one event (e itself when it is
	// current), none when its type was dropped, several when it was split.
	// Every event returned shares e's positions, message id, metadata and
	// stream; only Type, SchemaVersion and Data differ, and the events of a
	// split carry their place in it under MetaSplitPart (in a copy of the
	// metadata). An event that
	// can't be brought up to date returns an error matching ErrUpcast (an
	// *UpcastError naming the stream, position, type and version) and out
	// unchanged.
	Upcast(e Event, out []Event) ([]Event, error)
	// SchemaVersion returns the version new events of typ are written at.
	SchemaVersion(typ string) string
	// StoredTypes returns the stored type names whose events may read as
	// one of types (types included), so a read filtered by type can
	// filter what is stored.
	StoredTypes(types []string) []string
}

// UpcastEvent is one event a split returns: its type, the schema version
// of that type its body is at (0 means 1) and its body. It is upcast
// further when it is not at its type's current version.
type UpcastEvent struct {
	Type    string
	Version int
	Data    json.RawMessage
}

var (
	// ErrUpcast matches every *UpcastError: a stored event that could not
	// be brought to the current schema of its type.
	ErrUpcast = errors.New("upcast failed")
	// ErrUnknownSchemaVersion matches an upcast error whose event is at a
	// schema version the reader has no way from: newer than the current
	// version of its type (written by a newer build than the reader), not
	// a positive integer, or older with no upcaster registered from it.
	ErrUnknownSchemaVersion = errors.New("unknown schema version")
)

// UpcastError names a stored event an Upcaster could not bring up to date
// and why (Err). errors.Is(err, ErrUpcast) matches it.
type UpcastError struct {
	// Type and SchemaVersion are the event's, as stored.
	Type          string
	SchemaVersion string
	Stream        StreamID
	Partition     string
	Position      Version
	// GlobalPosition is the event's position in the global log.
	GlobalPosition GlobalPosition
	Err            error
}

func (e *UpcastError) Error() string {
	return fmt.Sprintf("upcast event %s version %q at position %d of stream %q in partition %q (global position %d): %v",
		e.Type, e.SchemaVersion, e.Position, e.Stream, e.Partition, e.GlobalPosition, e.Err)
}

// Is reports whether target is ErrUpcast.
func (e *UpcastError) Is(target error) bool { return target == ErrUpcast }

// Unwrap returns the cause.
func (e *UpcastError) Unwrap() error { return e.Err }

func upcastError(e Event, err error) error {
	return &UpcastError{Type: e.Type, SchemaVersion: e.SchemaVersion, Stream: e.StreamID, Partition: e.Partition,
		Position: e.StreamPosition, GlobalPosition: e.GlobalPosition, Err: err}
}

// maxUpcastSteps bounds the steps one stored event may take (a guard
// against splits that feed each other forever).
const maxUpcastSteps = 1000

// upcastStep is the way from one version of a type: a body upcaster to the
// next version, or a split into other events.
type upcastStep struct {
	body  func(json.RawMessage) (json.RawMessage, error)
	split func(json.RawMessage) ([]UpcastEvent, error)
	into  map[string]bool
}

// evolution is the schema part of a JSONCodec. Guarded by the codec's mutex.
type evolution struct {
	steps   map[string]map[int]upcastStep // type -> from version -> step
	current map[string]int                // type -> current version (absent: 1)
	renames map[string]string             // old name -> new name
	drops   map[string]bool
	// sources maps a type to the stored types whose events may read as it
	// (renamed from, split into it).
	sources map[string][]string
}

func (ev *evolution) init() {
	if ev.steps == nil {
		ev.steps = map[string]map[int]upcastStep{}
		ev.current = map[string]int{}
		ev.renames = map[string]string{}
		ev.drops = map[string]bool{}
		ev.sources = map[string][]string{}
	}
}

// parseSchemaVersion reads a stored schema version: empty is 1.
func parseSchemaVersion(s string) (int, error) {
	if s == "" {
		return 1, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%w: %q is not a positive integer", ErrUnknownSchemaVersion, s)
	}
	return v, nil
}

func (c *JSONCodec) currentVersion(typ string) int {
	if v, ok := c.evo.current[typ]; ok {
		return v
	}
	return 1
}

// checkFree refuses a name that a rename or drop already claims.
func (c *JSONCodec) checkFree(what, typ string) error {
	if n, ok := c.evo.renames[typ]; ok {
		return InvalidArgument("codec: %s %q: the type was renamed to %q; register under the new name", what, typ, n)
	}
	if c.evo.drops[typ] {
		return InvalidArgument("codec: %s %q: the type is dropped", what, typ)
	}
	return nil
}

// RegisterUpcaster registers fn as the way from version from of type typ
// to version from+1: it gets a stored body at version from and returns it
// at version from+1. The current version of typ, which new events are
// written at, is one more than the highest version an upcaster or split is
// registered from (1 when none is). Register each step once: v1 -> v2,
// v2 -> v3, and a v1 event is brought to v3 through both.
func (c *JSONCodec) RegisterUpcaster(typ string, from int, fn func(data json.RawMessage) (json.RawMessage, error)) error {
	if fn == nil {
		return InvalidArgument("codec: upcaster of %q from version %d is nil", typ, from)
	}
	return c.addStep(typ, from, upcastStep{body: fn}, "upcaster")
}

// RegisterSplit registers fn as what events of type typ at version reads
// as: the events fn returns, in order (none drops the event), each at the
// version of its type that its body has (UpcastEvent.Version), and upcast
// further from there. into names every type fn may return; another is an
// upcast error. Split events share the stored event's stream position,
// global position and message id.
func (c *JSONCodec) RegisterSplit(typ string, version int, into []string, fn func(data json.RawMessage) ([]UpcastEvent, error)) error {
	if fn == nil {
		return InvalidArgument("codec: split of %q at version %d is nil", typ, version)
	}
	set := map[string]bool{}
	for i, t := range into {
		if t == "" {
			return InvalidArgument("codec: split of %q at version %d: into[%d] is empty", typ, version, i)
		}
		set[t] = true
	}
	return c.addStep(typ, version, upcastStep{split: fn, into: set}, "split")
}

func (c *JSONCodec) addStep(typ string, from int, st upcastStep, what string) error {
	if typ == "" {
		return InvalidArgument("codec: %s of an empty type name", what)
	}
	if from < 1 {
		return InvalidArgument("codec: %s of %q from version %d: versions start at 1", what, typ, from)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evo.init()
	if err := c.checkFree(what, typ); err != nil {
		return err
	}
	if _, dup := c.evo.steps[typ][from]; dup {
		return InvalidArgument("codec: %s of %q from version %d: a step from that version is already registered", what, typ, from)
	}
	if c.evo.steps[typ] == nil {
		c.evo.steps[typ] = map[int]upcastStep{}
	}
	c.evo.steps[typ][from] = st
	c.evo.current[typ] = max(c.currentVersion(typ), from+1)
	for t := range st.into {
		c.addSource(t, typ)
	}
	return nil
}

func (c *JSONCodec) addSource(to, from string) {
	for _, s := range c.evo.sources[to] {
		if s == from {
			return
		}
	}
	c.evo.sources[to] = append(c.evo.sources[to], from)
}

// RegisterRename reads events stored under the type name old as events of
// type to, at the same version with the same body; upcasters of the type
// are registered under its new name. old must not be registered as a Go
// type any more (new events are written under the new name).
func (c *JSONCodec) RegisterRename(old, to string) error {
	if old == "" || to == "" {
		return InvalidArgument("codec: rename %q to %q: empty type name", old, to)
	}
	if old == to {
		return InvalidArgument("codec: rename %q to itself", old)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evo.init()
	if err := c.checkFree("rename", old); err != nil {
		return err
	}
	if gt, ok := c.byName[old]; ok {
		return InvalidArgument("codec: rename %q to %q: %q is still registered for %v", old, to, old, gt)
	}
	if _, ok := c.evo.steps[old]; ok {
		return InvalidArgument("codec: rename %q to %q: %q has upcasters; register them under %q", old, to, old, to)
	}
	for n, ok := to, true; ok; n, ok = c.evo.renames[n] {
		if n == old {
			return InvalidArgument("codec: rename %q to %q: the renames form a cycle", old, to)
		}
	}
	c.evo.renames[old] = to
	c.addSource(to, old)
	return nil
}

// RegisterDrop makes events stored under type typ, at any version, read as
// nothing. They stay stored; readers skip them (their positions are then
// gaps in a stream).
func (c *JSONCodec) RegisterDrop(typ string) error {
	if typ == "" {
		return InvalidArgument("codec: drop of an empty type name")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evo.init()
	if err := c.checkFree("drop", typ); err != nil {
		return err
	}
	if gt, ok := c.byName[typ]; ok {
		return InvalidArgument("codec: drop %q: it is registered for %v", typ, gt)
	}
	if _, ok := c.evo.steps[typ]; ok {
		return InvalidArgument("codec: drop %q: it has upcasters", typ)
	}
	c.evo.drops[typ] = true
	return nil
}

// MustRegisterUpcaster is RegisterUpcaster for program set-up: it panics on
// error.
func (c *JSONCodec) MustRegisterUpcaster(typ string, from int, fn func(data json.RawMessage) (json.RawMessage, error)) *JSONCodec {
	return must(c, c.RegisterUpcaster(typ, from, fn))
}

// MustRegisterSplit is RegisterSplit for program set-up: it panics on
// error.
func (c *JSONCodec) MustRegisterSplit(typ string, version int, into []string, fn func(data json.RawMessage) ([]UpcastEvent, error)) *JSONCodec {
	return must(c, c.RegisterSplit(typ, version, into, fn))
}

// MustRegisterRename is RegisterRename for program set-up: it panics on
// error.
func (c *JSONCodec) MustRegisterRename(old, to string) *JSONCodec {
	return must(c, c.RegisterRename(old, to))
}

// MustRegisterDrop is RegisterDrop for program set-up: it panics on error.
func (c *JSONCodec) MustRegisterDrop(typ string) *JSONCodec {
	return must(c, c.RegisterDrop(typ))
}

func must(c *JSONCodec, err error) *JSONCodec {
	if err != nil {
		panic(err)
	}
	return c
}

// SchemaVersion implements Upcaster: the current version of typ.
func (c *JSONCodec) SchemaVersion(typ string) string {
	c.mu.RLock()
	v := c.currentVersion(typ)
	c.mu.RUnlock()
	if v == 1 {
		return DefaultSchemaVersion
	}
	return strconv.Itoa(v)
}

// StoredTypes implements Upcaster.
func (c *JSONCodec) StoredTypes(types []string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.evo.sources) == 0 {
		return types
	}
	seen := make(map[string]bool, len(types))
	out := make([]string, 0, len(types))
	var visit func(t string)
	visit = func(t string) {
		if seen[t] {
			return
		}
		seen[t] = true
		out = append(out, t)
		for _, s := range c.evo.sources[t] {
			visit(s)
		}
	}
	for _, t := range types {
		visit(t)
	}
	return out
}

// current reports whether e needs no upcasting: its type is neither
// renamed, dropped nor evolved past e's version. Stored types the codec
// knows nothing of are current (they pass through).
func (c *JSONCodec) current(e Event) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if _, renamed := c.evo.renames[e.Type]; renamed || c.evo.drops[e.Type] {
		return false
	}
	if _, known := c.byName[e.Type]; !known && c.evo.steps[e.Type] == nil {
		return true
	}
	cur := c.currentVersion(e.Type)
	if e.SchemaVersion == "" {
		return cur == 1
	}
	return e.SchemaVersion == strconv.Itoa(cur)
}

// Upcast implements Upcaster. Types the codec knows nothing about (neither
// registered, renamed, dropped nor upcast) pass through unchanged, to fail
// in Decode if anything decodes them; a known type at a version newer than
// its current one, at a version no upcaster leads from, or whose upcaster
// fails (or panics, or returns invalid JSON) is an *UpcastError.
func (c *JSONCodec) Upcast(e Event, out []Event) ([]Event, error) {
	if c.current(e) {
		return append(out, e), nil
	}
	n := len(out)
	steps := 0
	var walk func(u UpcastEvent) error
	walk = func(u UpcastEvent) error {
		for {
			if steps++; steps > maxUpcastSteps {
				return fmt.Errorf("more than %d upcast steps: do the splits feed each other?", maxUpcastSteps)
			}
			act, st, err := c.plan(&u)
			switch {
			case err != nil:
				return err
			case act == upcastDrop:
				return nil
			case act == upcastEmit:
				ne := e
				ne.Type, ne.Data = u.Type, u.Data
				if u.Version == 1 {
					ne.SchemaVersion = DefaultSchemaVersion
				} else {
					ne.SchemaVersion = strconv.Itoa(u.Version)
				}
				out = append(out, ne)
				return nil
			}
			if st.body != nil {
				data, err := callUpcaster(func() (json.RawMessage, error) { return st.body(u.Data) })
				if err != nil {
					return fmt.Errorf("upcaster of %s from version %d: %w", u.Type, u.Version, err)
				}
				if !json.Valid(data) {
					return fmt.Errorf("upcaster of %s from version %d returned invalid JSON", u.Type, u.Version)
				}
				u.Version, u.Data = u.Version+1, data
				continue
			}
			var parts []UpcastEvent
			_, err = callUpcaster(func() (json.RawMessage, error) {
				var err error
				parts, err = st.split(u.Data)
				return nil, err
			})
			if err != nil {
				return fmt.Errorf("split of %s at version %d: %w", u.Type, u.Version, err)
			}
			for i, p := range parts {
				if !st.into[p.Type] {
					return fmt.Errorf("split of %s at version %d returned event %d of type %q, which is not among the types it was registered into",
						u.Type, u.Version, i, p.Type)
				}
				if p.Version == 0 {
					p.Version = 1
				}
				if p.Version < 0 || !json.Valid(p.Data) {
					return fmt.Errorf("split of %s at version %d returned event %d (%s) with version %d or invalid JSON",
						u.Type, u.Version, i, p.Type, p.Version)
				}
				if err := walk(p); err != nil {
					return err
				}
			}
			return nil
		}
	}
	v, err := parseSchemaVersion(e.SchemaVersion)
	if err == nil {
		err = walk(UpcastEvent{Type: e.Type, Version: v, Data: e.Data})
	}
	if err != nil {
		clear(out[n:])
		return out[:n], upcastError(e, err)
	}
	if len(out)-n > 1 {
		// The events of a split share the stored event's metadata map:
		// each gets a copy naming its place in the split.
		for i := range out[n:] {
			md := maps.Clone(out[n+i].Metadata)
			if md == nil {
				md = Metadata{}
			}
			md[MetaSplitPart] = i
			out[n+i].Metadata = md
		}
	}
	return out, nil
}

type upcastAction int

const (
	upcastEmit  upcastAction = iota // u is current (or of a type the codec does not know)
	upcastDrop                      // u reads as nothing
	upcastApply                     // apply the step returned
)

// plan resolves u's renames (in place) and tells what to do with it next.
// It holds the read lock only while looking up: user functions run
// outside it, so an upcaster may use the codec.
func (c *JSONCodec) plan(u *UpcastEvent) (upcastAction, upcastStep, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for {
		if c.evo.drops[u.Type] {
			return upcastDrop, upcastStep{}, nil
		}
		to, ok := c.evo.renames[u.Type]
		if !ok {
			break
		}
		u.Type = to // renames never form a cycle (RegisterRename)
	}
	cur := c.currentVersion(u.Type)
	_, known := c.byName[u.Type]
	if u.Version == cur || !known && c.evo.steps[u.Type] == nil {
		return upcastEmit, upcastStep{}, nil
	}
	if u.Version > cur {
		return 0, upcastStep{}, fmt.Errorf("%w: version %d of %s is newer than %d, the current version this reader knows (was it written by a newer build?)",
			ErrUnknownSchemaVersion, u.Version, u.Type, cur)
	}
	st, ok := c.evo.steps[u.Type][u.Version]
	if !ok {
		return 0, upcastStep{}, fmt.Errorf("%w: no upcaster or split of %s from version %d (current version %d)",
			ErrUnknownSchemaVersion, u.Type, u.Version, cur)
	}
	return upcastApply, st, nil
}

// callUpcaster runs a user upcaster, turning a panic into an error.
func callUpcaster(fn func() (json.RawMessage, error)) (data json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panicked: %v", r)
		}
	}()
	return fn()
}

// upcastOne brings e up to date with codec when codec is an Upcaster, for
// Decode: an event read from a store that has no upcaster configured is
// upcast here. An event that reads as several events or none can't be
// decoded as one.
func upcastOne(codec Codec, e Event) (Event, error) {
	u, ok := codec.(Upcaster)
	if !ok {
		return e, nil
	}
	if jc, ok := u.(*JSONCodec); ok && jc.current(e) {
		return e, nil
	}
	var buf [1]Event
	outs, err := u.Upcast(e, buf[:0])
	if err != nil {
		return e, err
	}
	if len(outs) != 1 {
		return e, upcastError(e, fmt.Errorf("it reads as %d events (a split or a drop): read it through a store configured with the upcaster", len(outs)))
	}
	return outs[0], nil
}
