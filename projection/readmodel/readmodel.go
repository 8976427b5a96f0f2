package readmodel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
)

// Storage says where a read model keeps each row's state.
type Storage int

const (
	// InRow keeps the state in the read-model row itself (the
	// seed's original variant). The table has the key columns, snapshot
	// (jsonb, or text), stream_id (text), last_stream_position (bigint),
	// last_global_position (bigint) and the mapped columns, with a unique
	// index on exactly the key columns.
	InRow Storage = iota
	// InTable keeps the state in the shared snapshots table under
	// (Table, RowID(keys)), with the partition of the event
	// applied last (schema v4), which is what tenancy.Manager.Drop erases
	// by; the read-model row holds only the key columns and the mapped
	// columns, with a unique index on exactly the key columns.
	InTable
)

func (s Storage) String() string {
	switch s {
	case InRow:
		return "in-row"
	case InTable:
		return "snapshots-table"
	default:
		return fmt.Sprintf("Storage(%d)", int(s))
	}
}

// SnapshotsTable is the table InTable projections keep their state
// in (created by schema v1).
const SnapshotsTable = "snapshots"

// Columns of a InRow read-model table besides keys and mapped
// columns.
const (
	ColumnSnapshot           = "snapshot"
	ColumnStreamID           = "stream_id"
	ColumnLastStreamPosition = "last_stream_position"
	ColumnLastGlobalPosition = "last_global_position"
)

// DefaultCacheSize is the default number of row states a read model keeps
// in memory between batches.
const DefaultCacheSize = 10000

// Config configures a read model whose rows hold the state of folding
// Evolve over the events of one key, the same fold an aggregate does.
type Config[S any] struct {
	// Table is the read-model table, one identifier (quoted, never split on
	// dots). Required.
	Table string
	// Storage says where the state lives. Defaults to InRow.
	Storage Storage
	// Evolvers are typed evolve functions, one per Go event type (made by
	// On): each event is decoded by Codec and given to the evolver of its
	// type. The event types the projection applies are the names Codec
	// gives those Go types, so a Go type Codec does not know is a
	// configuration error naming it. Use either Evolvers (with Codec) or
	// EventTypes and Evolve.
	Evolvers []Evolver[S]
	// Codec decodes events for Evolvers. Required with Evolvers.
	Codec store.Codec
	// EventTypes are the event types the projection applies, for Evolve.
	// Registry maps them to Handler, and HandleBatch ignores every other
	// type. Required unless Evolvers is set.
	EventTypes []string
	// ExtractKeys returns the key columns of the row an event belongs to
	// and their values; partition is the event's partition. The set of
	// column names is inferred from the first event and must be the same
	// for every event (a *KeySetError otherwise). Each key identifies one
	// stream's fold: stream positions of the events of a key must be
	// increasing. Required.
	ExtractKeys func(e store.Event, partition string) (map[string]any, error)
	// Evolve returns the state after one stored event (decoding it is up
	// to it; Evolvers decode for you), or Delete to delete the row. It may
	// modify state in place. Required unless Evolvers is set.
	Evolve func(state S, e store.Event) (S, error)
	// Initial returns the state of a row before its first event. Required.
	Initial func() S
	// MapToColumns returns extra columns derived from the state, written
	// to the read-model row; nil writes none. It is called exactly once per
	// applied event, except an event whose evolve returned Delete.
	MapToColumns func(state S) map[string]any
	// PartitionColumn is the key column holding the partition, used by a
	// rebuild of a single-partition projection to delete only that
	// partition's rows. Defaults to "partition".
	PartitionColumn string
	// ReadHook, when set, is applied to the events the read model reads
	// with its own SQL rather than through its projection's store (the
	// events of a gap: positions of a row's stream that its batch lacks),
	// so they reach Evolve as the store's own reads would hand them over.
	// With a store wrapped by store/shred, set it to the Shredder's
	// Decrypt; without it, a gap event holding encrypted values fails the
	// batch with an error saying so.
	ReadHook func(ctx context.Context, events []store.Event) ([]store.Event, error)
	// CacheSize is how many row states HandleBatch keeps in memory between
	// batches (an LRU), so a row touched again is not read and decoded
	// again. Defaults to DefaultCacheSize; negative disables the
	// cache. The per-event Handler never uses the cache.
	CacheSize int
	// Upcaster upcasts the events the read model reads itself: a row's
	// events that a batch lacks are read from the messages table (see
	// Projection), and must be brought to the current schema like the
	// events the projection's store hands over. Set it to the upcaster
	// the store is configured with (postgres.Config.Upcaster) whenever
	// that is set. Defaults to Codec when Codec is an Upcaster (a
	// store.JSONCodec is), else nil: those events are used as stored.
	Upcaster store.Upcaster
}

func (c *Config[S]) validate() error {
	switch {
	case c.Table == "":
		return configError("readmodel.Config.Table is empty")
	case c.Storage != InRow && c.Storage != InTable:
		return configError("readmodel.Config.Storage %d is not InRow or InTable", int(c.Storage))
	case len(c.Evolvers) == 0 && len(c.EventTypes) == 0:
		return configError("readmodel.Config.EventTypes is empty (and no Evolvers are set)")
	case c.ExtractKeys == nil:
		return configError("readmodel.Config.ExtractKeys is nil")
	case len(c.Evolvers) == 0 && c.Evolve == nil:
		return configError("readmodel.Config.Evolve is nil (and no Evolvers are set)")
	case c.Initial == nil:
		return configError("readmodel.Config.Initial is nil")
	}
	for i, t := range c.EventTypes {
		if t == "" {
			return configError("readmodel.Config.EventTypes[%d] is empty", i)
		}
	}
	return nil
}

// Projection is a read model built from a Config. Use Handler or Registry
// with a perstream.Runner or a consumer.Consumer, or pass the projection
// itself as a BatchHandler of a continuous projection.Projection, which
// applies a whole batch with a few multi-row statements and keeps row
// states in memory between batches. It is safe for concurrent use.
//
// Applying an event locks the row (SELECT … FOR UPDATE), skips the event
// when its stream position is not after the stored last position (unless
// it belongs to a later incarnation of the stream: archived and started
// again, when the row restarts from the initial state), evolves
// the stored state (or the initial state when there is none), calls
// MapToColumns once and writes the row. A row is never moved to an older
// position, and two transactions inserting the first row of a key at once
// can't both win: the loser's insert affects nothing and its batch fails
// and is retried, then finding the row.
type Projection[S any] struct {
	cfg      Config[S]
	typed    bool // built from Evolvers: Handler ignores other types
	types    map[string]struct{}
	tableSQL string

	mu      sync.Mutex
	keyCols []string // inferred from the first event, sorted
	sql     *snapshotSQL

	cache   *lru.Cache[string, cachedState[S]] // nil when disabled
	pendMu  sync.Mutex
	pending map[pgx.Tx][]pendingState[S]
}

type cachedState[S any] struct {
	state  S
	pos    store.Version
	global store.GlobalPosition
}

type pendingState[S any] struct {
	id string
	cachedState[S]
}

// snapshotSQL are the statements that depend on the inferred key set.
type snapshotSQL struct {
	names        []string // key columns, sorted
	keyCols      []string // quoted
	lockRows     string   // in-row: lock a batch of rows; built once the key types are known
	conflictKeys string   // ("k1", "k2")
}

// New checks cfg and returns the projection. cfg is copied; a nil cfg is
// rejected (Table, EventTypes and Evolve or Evolvers and Codec,
// ExtractKeys and Initial have no default).
func New[S any](cfg *Config[S]) (*Projection[S], error) {
	if cfg == nil {
		cfg = &Config[S]{}
	}
	c := *cfg
	cfg = &c
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	typed := len(cfg.Evolvers) > 0
	if typed {
		types, evolve, err := bindEvolvers(cfg)
		if err != nil {
			return nil, err
		}
		cfg.EventTypes, cfg.Evolve = types, evolve
	}
	if cfg.PartitionColumn == "" {
		cfg.PartitionColumn = "partition"
	}
	if u, ok := cfg.Codec.(store.Upcaster); ok && cfg.Upcaster == nil {
		cfg.Upcaster = u
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	cfg.EventTypes = slices.Clone(cfg.EventTypes)
	p := &Projection[S]{
		cfg:      *cfg,
		typed:    typed,
		types:    make(map[string]struct{}, len(cfg.EventTypes)),
		tableSQL: pgx.Identifier{cfg.Table}.Sanitize(),
		pending:  map[pgx.Tx][]pendingState[S]{},
	}
	for _, t := range cfg.EventTypes {
		p.types[t] = struct{}{}
	}
	if cfg.CacheSize > 0 {
		c, err := lru.New[string, cachedState[S]](cfg.CacheSize)
		if err != nil {
			return nil, configError("readmodel.Config.CacheSize: %v", err)
		}
		p.cache = c
	}
	return p, nil
}

// Table returns the read-model table name.
func (p *Projection[S]) Table() string { return p.cfg.Table }

// KeyColumns returns the key columns inferred from the first event, sorted;
// nil before the first event.
func (p *Projection[S]) KeyColumns() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.keyCols)
}

// Handler returns a per-event handler applying events to the read model
// (no cache). Built from EventTypes and Evolve, it applies every event it
// is given, whatever its type; built from Evolvers, it ignores events of
// other types than theirs. With Config.Upcaster, an event handed over as
// stored is upcast first.
//
// A row keeps one position per stored event, and the events of a split
// share it. So given any event of a split (store.MetaSplitPart), Handler
// reads the stored event back, upcasts it with Config.Upcaster (required
// then) and applies every event of the split of the configured types at
// once; the split's other events then find the row at their position and
// are skipped.
func (p *Projection[S]) Handler() projection.Handler {
	return func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		one := []store.Event{e}
		var relevant []store.Event
		var err error
		if _, split := e.Metadata[store.MetaSplitPart]; split {
			relevant, err = p.wholeSplit(ctx, tx, e) // upcast and of the configured types already
		} else {
			relevant, err = p.relevant(one, !p.typed)
		}
		if err != nil || len(relevant) == 0 {
			return err
		}
		return p.apply(ctx, tx, relevant, one, false)
	}
}

// relevant returns the events of the configured types among events (all
// of them when all is set), upcast with Config.Upcaster when it is set: a
// store without an Upcaster hands events over as stored; an upcasting
// store's are current already and pass through unchanged.
func (p *Projection[S]) relevant(events []store.Event, all bool) ([]store.Event, error) {
	if all && p.cfg.Upcaster == nil {
		return events, nil
	}
	out := make([]store.Event, 0, len(events))
	for _, e := range events {
		var err error
		if out, err = p.appendRelevant(out, e, all); err != nil {
			return nil, fmt.Errorf("read model %q: %w", p.cfg.Table, err)
		}
	}
	return out, nil
}

// appendRelevant appends to out what e reads as (upcast with
// Config.Upcaster when it is set) of the configured types, or all of it.
func (p *Projection[S]) appendRelevant(out []store.Event, e store.Event, all bool) ([]store.Event, error) {
	n := len(out)
	if p.cfg.Upcaster == nil {
		out = append(out, e)
	} else {
		var err error
		if out, err = p.cfg.Upcaster.Upcast(e, out); err != nil {
			return out, err
		}
	}
	kept := out[:n]
	for _, x := range out[n:] {
		if _, ok := p.types[x.Type]; ok || all {
			kept = append(kept, x)
		}
	}
	return kept, nil
}

// Registry returns a registry mapping each of the configured event types to
// Handler.
func (p *Projection[S]) Registry() projection.Registry {
	h := p.Handler()
	r := make(projection.Registry, len(p.cfg.EventTypes))
	for _, t := range p.cfg.EventTypes {
		r[t] = []projection.Handler{h}
	}
	return r
}

// HandleBatch implements BatchHandler: it applies the batch's events of the
// configured types with one round trip to lock and read the rows and one to
// write them, using the in-memory cache.
func (p *Projection[S]) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	relevant, err := p.relevant(events, false)
	if err != nil || len(relevant) == 0 {
		return err
	}
	return p.apply(ctx, tx, relevant, events, p.cache != nil)
}

// FinishBatch implements BatchFinisher: the row states of a committed batch
// enter the cache; those of a rolled-back batch were already taken out of
// it and stay out.
func (p *Projection[S]) FinishBatch(tx pgx.Tx, committed bool) {
	p.pendMu.Lock()
	states := p.pending[tx]
	delete(p.pending, tx)
	p.pendMu.Unlock()
	if !committed || p.cache == nil {
		return
	}
	for _, s := range states {
		p.cache.Add(s.id, s.cachedState)
	}
}

// ResetReadModel implements Resetter: it deletes the projection's rows (and
// snapshots) of partition, or all of them for AllPartitions, and empties
// the cache.
func (p *Projection[S]) ResetReadModel(ctx context.Context, tx pgx.Tx, partition string) error {
	if p.cache != nil {
		p.cache.Purge()
	}
	pcol := pgx.Identifier{p.cfg.PartitionColumn}.Sanitize()
	// The snapshots table holds the states of an InTable read model and
	// the kept positions of an InRow one's deleted rows.
	var err error
	if partition == projection.AllPartitions {
		_, err = tx.Exec(ctx, `DELETE FROM snapshots WHERE readmodel_table_name = $1`, p.cfg.Table)
	} else {
		// Stream ids are "|"-joined "key:value" pairs with both sides
		// encoded, so the pair is matched exactly within "|id|".
		pattern := "%|" + likeEscape(encodeURIComponent(p.cfg.PartitionColumn)+":"+encodeURIComponent(partition)) + "|%"
		_, err = tx.Exec(ctx, `DELETE FROM snapshots WHERE readmodel_table_name = $1 AND ('|' || stream_id || '|') LIKE $2`,
			p.cfg.Table, pattern)
	}
	if err != nil {
		return fmt.Errorf("read model %q: delete snapshots: %w", p.cfg.Table, err)
	}
	if partition == projection.AllPartitions {
		_, err = tx.Exec(ctx, `DELETE FROM `+p.tableSQL)
	} else {
		_, err = tx.Exec(ctx, `DELETE FROM `+p.tableSQL+` WHERE `+pcol+` = $1`, partition)
	}
	if err != nil {
		return fmt.Errorf("read model %q: delete rows: %w", p.cfg.Table, err)
	}
	return nil
}

// likeEscape escapes the LIKE wildcards of s with the default escape
// character, backslash.
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// rowState is one key's row during a batch.
type rowState[S any] struct {
	id     string
	keys   map[string]any
	exists bool                 // a row (in-row) or snapshot (in-table) is stored
	pos    store.Version        // stored last stream position; 0 when absent
	global store.GlobalPosition // stored last global position; 0 when absent
	state  S
	snap   *string       // stored snapshot text, when read
	cached bool          // state came from the cache (valid if pos, global == cpos, cglobal)
	cpos   store.Version // positions of the cached state
	cglob  store.GlobalPosition

	events []store.Event // the events to apply, in stream order once sorted

	applied bool
	deleted bool           // the last applied event's evolve returned Delete
	last    store.Event    // last applied event
	cols    map[string]any // mapped columns, merged over the applied events
}

// splitOf reports whether e is a later event of the split (one stored
// event upcast to several, sharing its positions) whose earlier event the
// row applied last in this batch. A batch never cuts a split apart, so a
// row that applied part of one in an earlier batch applied all of it.
func splitOf[S any](r *rowState[S], e store.Event) bool {
	return r.applied && r.last.GlobalPosition == e.GlobalPosition && r.last.StreamPosition == e.StreamPosition &&
		r.last.MessageID == e.MessageID && r.last.Incarnation == e.Incarnation
}

// apply applies events within tx. all is every event the caller has in
// hand (the whole batch, events included), used to tell which stream
// positions a row skips on purpose (events of other types).
//
// Each row's events are folded in stream order. The global log is in
// commit order, which can put a stream's later event before an earlier one
// (a transaction that took its id first but waited for the stream's lock
// commits the later position); so when a row's next event is not the one
// after its stored position and the batch does not hold the events in
// between, those are read from the stream (they are committed: the later
// position could only be taken after them) and applied first. The earlier
// event, when it comes, is then skipped as already applied.
//
// A row whose stream was archived and started again restarts: an event of
// a later incarnation than the row's last applied event (see stepFor) is
// applied to the initial state, whatever its stream position, and events
// of an earlier incarnation are skipped.
func (p *Projection[S]) apply(ctx context.Context, tx pgx.Tx, events, all []store.Event, useCache bool) error {
	rows := make([]*rowState[S], 0, len(events))
	byID := make(map[string]*rowState[S], len(events))
	var sqls *snapshotSQL
	for _, e := range events {
		keys, err := p.cfg.ExtractKeys(e, e.Partition)
		if err != nil {
			return fmt.Errorf("read model %q: extract keys of %s: %w", p.cfg.Table, e, err)
		}
		if sqls, err = p.checkKeys(keys); err != nil {
			return err
		}
		id := RowID(keys)
		r, ok := byID[id]
		if !ok {
			r = &rowState[S]{id: id, keys: keys}
			if useCache {
				// Take the state out of the cache: until the batch
				// commits, it belongs to this batch only.
				if c, ok := p.cache.Peek(id); ok {
					p.cache.Remove(id)
					r.state, r.cpos, r.cglob, r.cached = c.state, c.pos, c.global, true
				}
			}
			byID[id] = r
			rows = append(rows, r)
		}
		r.events = append(r.events, e)
	}

	if err := p.load(ctx, tx, sqls, rows); err != nil {
		return err
	}
	if err := p.fillGaps(ctx, tx, rows, all); err != nil {
		return err
	}

	for _, r := range rows {
		for _, e := range r.events {
			switch stepFor(r.pos, r.global, e) {
			case stepSkip:
				if !splitOf(r, e) {
					continue // already applied, or of an earlier incarnation
				}
			case stepRestart:
				r.state, r.cols = p.cfg.Initial(), nil
			}
			next, err := p.cfg.Evolve(r.state, e)
			if err != nil && errors.Is(err, Delete) {
				// The row goes; its position stays in the snapshots
				// table with the initial state, so a later event of the
				// stream folds from Initial and writes the row again.
				r.state, r.cols, r.deleted = p.cfg.Initial(), nil, true
				r.pos, r.global, r.last, r.applied = e.StreamPosition, e.GlobalPosition, e, true
				continue
			}
			if err != nil {
				return fmt.Errorf("read model %q: evolve %s: %w", p.cfg.Table, e, err)
			}
			r.deleted = false
			r.state, r.pos, r.global, r.last, r.applied = next, e.StreamPosition, e.GlobalPosition, e, true
			if p.cfg.MapToColumns != nil {
				cols := p.cfg.MapToColumns(next)
				if r.cols == nil {
					r.cols = make(map[string]any, len(cols))
				}
				for k, v := range cols {
					r.cols[k] = v
				}
			}
		}
	}

	if err := p.write(ctx, tx, sqls, rows); err != nil {
		return err
	}
	if useCache {
		states := make([]pendingState[S], 0, len(rows))
		for _, r := range rows {
			states = append(states, pendingState[S]{id: r.id, cachedState: cachedState[S]{state: r.state, pos: r.pos, global: r.global}})
		}
		p.pendMu.Lock()
		p.pending[tx] = append(p.pending[tx], states...)
		p.pendMu.Unlock()
	}
	return nil
}
