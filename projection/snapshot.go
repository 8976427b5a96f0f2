package projection

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// SnapshotStorage says where a snapshot projection keeps each row's state.
type SnapshotStorage int

const (
	// SnapshotInRow keeps the state in the read-model row itself (the
	// seed's original variant). The table has the key columns, snapshot
	// (jsonb, or text), stream_id (text), last_stream_position (bigint),
	// last_global_position (bigint) and the mapped columns, with a unique
	// index on exactly the key columns.
	SnapshotInRow SnapshotStorage = iota
	// SnapshotInTable keeps the state in the shared snapshots table under
	// (Table, SnapshotStreamID(keys)), with the partition of the event
	// applied last (schema v4), which is what tenancy.Manager.Drop erases
	// by; the read-model row holds only the key columns and the mapped
	// columns, with a unique index on exactly the key columns.
	SnapshotInTable
)

func (s SnapshotStorage) String() string {
	switch s {
	case SnapshotInRow:
		return "in-row"
	case SnapshotInTable:
		return "snapshots-table"
	default:
		return fmt.Sprintf("SnapshotStorage(%d)", int(s))
	}
}

// SnapshotsTable is the table SnapshotInTable projections keep their state
// in (created by schema v1).
const SnapshotsTable = "snapshots"

// Columns of a SnapshotInRow read-model table besides keys and mapped
// columns.
const (
	ColumnSnapshot           = "snapshot"
	ColumnStreamID           = "stream_id"
	ColumnLastStreamPosition = "last_stream_position"
	ColumnLastGlobalPosition = "last_global_position"
)

// DefaultSnapshotCacheSize is the default number of row states a snapshot
// projection keeps in memory between batches.
const DefaultSnapshotCacheSize = 10000

// SnapshotConfig configures a snapshot projection: a read model whose rows
// hold the state of folding Evolve over the events of one key, the same
// fold an aggregate does.
type SnapshotConfig[S any] struct {
	// Table is the read-model table, one identifier (quoted, never split on
	// dots). Required.
	Table string
	// Storage says where the state lives. Defaults to SnapshotInRow.
	Storage SnapshotStorage
	// EventTypes are the event types the projection applies. Registry maps
	// them to Handler, and HandleBatch ignores every other type. Required.
	EventTypes []string
	// ExtractKeys returns the key columns of the row an event belongs to
	// and their values; partition is the event's partition. The set of
	// column names is inferred from the first event and must be the same
	// for every event (a *KeySetError otherwise). Each key identifies one
	// stream's fold: stream positions of the events of a key must be
	// increasing. Required.
	ExtractKeys func(e store.Event, partition string) (map[string]any, error)
	// Evolve returns the state after one event. It may modify state in
	// place. Required.
	Evolve func(state S, e store.Event) (S, error)
	// Initial returns the state of a row before its first event. Required.
	Initial func() S
	// MapToColumns returns extra columns derived from the state, written
	// to the read-model row; nil writes none. It is called exactly once per
	// applied event.
	MapToColumns func(state S) map[string]any
	// PartitionColumn is the key column holding the partition, used by a
	// rebuild of a single-partition projection to delete only that
	// partition's rows. Defaults to "partition".
	PartitionColumn string
	// CacheSize is how many row states HandleBatch keeps in memory between
	// batches (an LRU), so a row touched again is not read and decoded
	// again. Defaults to DefaultSnapshotCacheSize; negative disables the
	// cache. The per-event Handler never uses the cache.
	CacheSize int
}

func (c *SnapshotConfig[S]) validate() error {
	switch {
	case c.Table == "":
		return configError("SnapshotConfig.Table is empty")
	case c.Storage != SnapshotInRow && c.Storage != SnapshotInTable:
		return configError("SnapshotConfig.Storage %d is not SnapshotInRow or SnapshotInTable", int(c.Storage))
	case len(c.EventTypes) == 0:
		return configError("SnapshotConfig.EventTypes is empty")
	case c.ExtractKeys == nil:
		return configError("SnapshotConfig.ExtractKeys is nil")
	case c.Evolve == nil:
		return configError("SnapshotConfig.Evolve is nil")
	case c.Initial == nil:
		return configError("SnapshotConfig.Initial is nil")
	}
	for i, t := range c.EventTypes {
		if t == "" {
			return configError("SnapshotConfig.EventTypes[%d] is empty", i)
		}
	}
	return nil
}

// SnapshotProjection is a snapshot projection built from a SnapshotConfig.
// Use Handler or Registry with a per-stream Runner or a Consumer, or pass
// the projection itself as a BatchHandler of a continuous Projection,
// which applies a whole batch with a few multi-row statements and keeps row
// states in memory between batches. It is safe for concurrent use.
//
// Applying an event locks the row (SELECT … FOR UPDATE), skips the event
// when its stream position is not after the stored last position, evolves
// the stored state (or the initial state when there is none), calls
// MapToColumns once and writes the row. A row is never moved to an older
// position, and two transactions inserting the first row of a key at once
// can't both win: the loser's insert affects nothing and its batch fails
// and is retried, then finding the row.
type SnapshotProjection[S any] struct {
	cfg      SnapshotConfig[S]
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
	state S
	pos   store.Version
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

// NewSnapshotProjection checks cfg and returns the projection.
func NewSnapshotProjection[S any](cfg SnapshotConfig[S]) (*SnapshotProjection[S], error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.PartitionColumn == "" {
		cfg.PartitionColumn = "partition"
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultSnapshotCacheSize
	}
	cfg.EventTypes = slices.Clone(cfg.EventTypes)
	p := &SnapshotProjection[S]{
		cfg:      cfg,
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
			return nil, configError("SnapshotConfig.CacheSize: %v", err)
		}
		p.cache = c
	}
	return p, nil
}

// Table returns the read-model table name.
func (p *SnapshotProjection[S]) Table() string { return p.cfg.Table }

// KeyColumns returns the key columns inferred from the first event, sorted;
// nil before the first event.
func (p *SnapshotProjection[S]) KeyColumns() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.keyCols)
}

// Handler returns a per-event handler applying events to the read model
// (no cache). It applies every event it is given, whatever its type.
func (p *SnapshotProjection[S]) Handler() Handler {
	return func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		one := []store.Event{e}
		return p.apply(ctx, tx, one, one, false)
	}
}

// Registry returns a registry mapping each of the configured event types to
// Handler.
func (p *SnapshotProjection[S]) Registry() Registry {
	h := p.Handler()
	r := make(Registry, len(p.cfg.EventTypes))
	for _, t := range p.cfg.EventTypes {
		r[t] = []Handler{h}
	}
	return r
}

// HandleBatch implements BatchHandler: it applies the batch's events of the
// configured types with one round trip to lock and read the rows and one to
// write them, using the in-memory cache.
func (p *SnapshotProjection[S]) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	relevant := make([]store.Event, 0, len(events))
	for _, e := range events {
		if _, ok := p.types[e.Type]; ok {
			relevant = append(relevant, e)
		}
	}
	if len(relevant) == 0 {
		return nil
	}
	return p.apply(ctx, tx, relevant, events, p.cache != nil)
}

// FinishBatch implements BatchFinisher: the row states of a committed batch
// enter the cache; those of a rolled-back batch were already taken out of
// it and stay out.
func (p *SnapshotProjection[S]) FinishBatch(tx pgx.Tx, committed bool) {
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
func (p *SnapshotProjection[S]) ResetReadModel(ctx context.Context, tx pgx.Tx, partition string) error {
	if p.cache != nil {
		p.cache.Purge()
	}
	pcol := pgx.Identifier{p.cfg.PartitionColumn}.Sanitize()
	if p.cfg.Storage == SnapshotInTable {
		var err error
		if partition == AllPartitions {
			_, err = tx.Exec(ctx, `DELETE FROM snapshots WHERE readmodel_table_name = $1`, p.cfg.Table)
		} else {
			// Stream ids are "|"-joined "key:value" pairs with both sides
			// encoded, so the pair is matched exactly within "|id|".
			pattern := "%|" + likeEscape(EncodeURIComponent(p.cfg.PartitionColumn)+":"+EncodeURIComponent(partition)) + "|%"
			_, err = tx.Exec(ctx, `DELETE FROM snapshots WHERE readmodel_table_name = $1 AND ('|' || stream_id || '|') LIKE $2`,
				p.cfg.Table, pattern)
		}
		if err != nil {
			return fmt.Errorf("snapshot projection %q: delete snapshots: %w", p.cfg.Table, err)
		}
	}
	var err error
	if partition == AllPartitions {
		_, err = tx.Exec(ctx, `DELETE FROM `+p.tableSQL)
	} else {
		_, err = tx.Exec(ctx, `DELETE FROM `+p.tableSQL+` WHERE `+pcol+` = $1`, partition)
	}
	if err != nil {
		return fmt.Errorf("snapshot projection %q: delete rows: %w", p.cfg.Table, err)
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
	exists bool          // a row (in-row) or snapshot (in-table) is stored
	pos    store.Version // stored last stream position; 0 when absent
	state  S
	snap   *string       // stored snapshot text, when read
	cached bool          // state came from the cache (valid if pos == cpos)
	cpos   store.Version // position of the cached state

	events []store.Event // the events to apply, in stream order once sorted

	applied bool
	last    store.Event    // last applied event
	cols    map[string]any // mapped columns, merged over the applied events
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
func (p *SnapshotProjection[S]) apply(ctx context.Context, tx pgx.Tx, events, all []store.Event, useCache bool) error {
	rows := make([]*rowState[S], 0, len(events))
	byID := make(map[string]*rowState[S], len(events))
	var sqls *snapshotSQL
	for _, e := range events {
		keys, err := p.cfg.ExtractKeys(e, e.Partition)
		if err != nil {
			return fmt.Errorf("snapshot projection %q: extract keys of %s: %w", p.cfg.Table, e, err)
		}
		if sqls, err = p.checkKeys(keys); err != nil {
			return err
		}
		id := SnapshotStreamID(keys)
		r, ok := byID[id]
		if !ok {
			r = &rowState[S]{id: id, keys: keys}
			if useCache {
				// Take the state out of the cache: until the batch
				// commits, it belongs to this batch only.
				if c, ok := p.cache.Peek(id); ok {
					p.cache.Remove(id)
					r.state, r.cpos, r.cached = c.state, c.pos, true
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
			if e.StreamPosition <= r.pos {
				continue // already applied
			}
			next, err := p.cfg.Evolve(r.state, e)
			if err != nil {
				return fmt.Errorf("snapshot projection %q: evolve %s: %w", p.cfg.Table, e, err)
			}
			r.state, r.pos, r.last, r.applied = next, e.StreamPosition, e, true
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
			states = append(states, pendingState[S]{id: r.id, cachedState: cachedState[S]{state: r.state, pos: r.pos}})
		}
		p.pendMu.Lock()
		p.pending[tx] = append(p.pending[tx], states...)
		p.pendMu.Unlock()
	}
	return nil
}

type streamRef struct {
	partition string
	stream    store.StreamID
}

func refOf(e store.Event) streamRef { return streamRef{e.Partition, e.StreamID} }

// gap is a range of stream positions a row has not seen, to be read
// before the row's event number before.
type gap struct {
	row      int
	before   int
	stream   streamRef
	from, to store.Version
}

// fillGaps sorts each row's events by stream position and inserts the
// events of the configured types that the row misses: stream positions
// after its stored one and before its next event that are not in all.
func (p *SnapshotProjection[S]) fillGaps(ctx context.Context, tx pgx.Tx, rows []*rowState[S], all []store.Event) error {
	present := map[streamRef]map[store.Version]struct{}{}
	for _, e := range all {
		ref := refOf(e)
		if present[ref] == nil {
			present[ref] = map[store.Version]struct{}{}
		}
		present[ref][e.StreamPosition] = struct{}{}
	}
	var gaps []gap
	for ri, r := range rows {
		slices.SortStableFunc(r.events, func(a, b store.Event) int { return cmp.Compare(a.StreamPosition, b.StreamPosition) })
		last := r.pos
		for i, e := range r.events {
			if e.StreamPosition <= last {
				continue
			}
			if from, to := last+1, e.StreamPosition-1; from <= to && !covered(present[refOf(e)], from, to) {
				gaps = append(gaps, gap{row: ri, before: i, stream: refOf(e), from: from, to: to})
			}
			last = e.StreamPosition
		}
	}
	if len(gaps) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, g := range gaps {
		b.Queue(gapReadSQL, g.stream.partition, string(g.stream.stream), int64(g.from), int64(g.to))
	}
	br := tx.SendBatch(ctx, b)
	found := make([][]store.Event, len(gaps))
	for gi, g := range gaps {
		evs, err := p.readGap(br, g)
		if err != nil {
			_ = br.Close()
			return err
		}
		found[gi] = evs
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("snapshot projection %q: read missed events: %w", p.cfg.Table, err)
	}
	for gi := len(gaps) - 1; gi >= 0; gi-- { // from the back, so indexes stay valid
		if len(found[gi]) == 0 {
			continue
		}
		r := rows[gaps[gi].row]
		r.events = slices.Insert(r.events, gaps[gi].before, found[gi]...)
	}
	return nil
}

// covered reports whether every position from..to is in set.
func covered(set map[store.Version]struct{}, from, to store.Version) bool {
	if int64(to-from+1) > int64(len(set)) {
		return false
	}
	for q := from; q <= to; q++ {
		if _, ok := set[q]; !ok {
			return false
		}
	}
	return true
}

const gapReadSQL = `SELECT m.message_id, m.message_type, m.message_data, m.message_metadata, m.message_schema_version,
       s.stream_type, m.stream_position, m.global_position, m.transaction_id, m.created
FROM messages m
JOIN streams s ON s.stream_id = m.stream_id AND s.partition = m.partition AND NOT s.is_archived
WHERE m.partition = $1 AND m.stream_id = $2 AND NOT m.is_archived
  AND m.stream_position >= $3 AND m.stream_position <= $4
ORDER BY m.stream_position`

// readGap reads one gap's events of the configured types.
func (p *SnapshotProjection[S]) readGap(br pgx.BatchResults, g gap) ([]store.Event, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("snapshot projection %q: read missed events of stream %q: %w", p.cfg.Table, g.stream.stream, err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			id, typ, schemaVersion, streamType string
			data, meta                         []byte
			position, global                   int64
			txid                               uint64
			created                            time.Time
		)
		if err := rows.Scan(&id, &typ, &data, &meta, &schemaVersion, &streamType, &position, &global, &txid, &created); err != nil {
			return nil, fmt.Errorf("snapshot projection %q: read missed events of stream %q: %w", p.cfg.Table, g.stream.stream, err)
		}
		if _, ok := p.types[typ]; !ok {
			continue
		}
		md := store.Metadata{}
		if len(meta) > 0 {
			if err := json.Unmarshal(meta, &md); err != nil {
				return nil, fmt.Errorf("snapshot projection %q: decode metadata of event %d of stream %q: %w", p.cfg.Table, position, g.stream.stream, err)
			}
			if md == nil {
				md = store.Metadata{}
			}
		}
		md[store.MetaMessageID] = id
		md[store.MetaStreamID] = string(g.stream.stream)
		md[store.MetaStreamPosition] = store.Version(position)
		md[store.MetaGlobalPosition] = store.GlobalPosition(global)
		md[store.MetaPartition] = g.stream.partition
		out = append(out, store.Event{
			Type: typ, Data: json.RawMessage(data), Metadata: md, MessageID: id,
			StreamID: g.stream.stream, StreamType: streamType, Partition: g.stream.partition,
			StreamPosition: store.Version(position), GlobalPosition: store.GlobalPosition(global),
			TransactionID: txid, Created: created, SchemaVersion: schemaVersion,
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("snapshot projection %q: read missed events of stream %q: %w", p.cfg.Table, g.stream.stream, err)
	}
	return out, nil
}

// checkKeys infers the key set from the first call and checks every later
// key set against it.
func (p *SnapshotProjection[S]) checkKeys(keys map[string]any) (*snapshotSQL, error) {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keyCols == nil {
		if len(names) == 0 {
			return nil, fmt.Errorf("snapshot projection %q: extract keys returned no key columns", p.cfg.Table)
		}
		for _, n := range names {
			if n == "" {
				return nil, fmt.Errorf("snapshot projection %q: extract keys returned an empty column name", p.cfg.Table)
			}
			if p.cfg.Storage == SnapshotInRow && isRowColumn(n) {
				return nil, fmt.Errorf("snapshot projection %q: key column %q is one of the columns the projection writes itself", p.cfg.Table, n)
			}
		}
		p.keyCols = names
		p.sql = p.buildSQL(names)
		return p.sql, nil
	}
	if !slices.Equal(p.keyCols, names) {
		return nil, &KeySetError{Table: p.cfg.Table, Expected: slices.Clone(p.keyCols), Received: names}
	}
	return p.sql, nil
}

func isRowColumn(c string) bool {
	switch c {
	case ColumnSnapshot, ColumnStreamID, ColumnLastStreamPosition, ColumnLastGlobalPosition:
		return true
	}
	return false
}

func (p *SnapshotProjection[S]) buildSQL(keyCols []string) *snapshotSQL {
	s := &snapshotSQL{names: keyCols, keyCols: quoteAll(keyCols)}
	s.conflictKeys = "(" + strings.Join(s.keyCols, ", ") + ")"
	return s
}

// keyArgs returns the key values in key-column order.
func keyArgs(keyCols []string, keys map[string]any) []any {
	args := make([]any, len(keyCols))
	for i, k := range keyCols {
		args[i] = keys[k]
	}
	return args
}

// load locks every row of the batch and sets its stored position and
// state: from the cache when the stored position matches the cached one,
// else decoded from the stored snapshot, else the initial state. Rows are
// locked in id order, so two batches locking the same rows can't deadlock
// each other.
func (p *SnapshotProjection[S]) load(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
	slices.SortFunc(rows, func(a, b *rowState[S]) int { return strings.Compare(a.id, b.id) })
	if err := p.lock(ctx, tx, sqls, rows); err != nil {
		return err
	}
	// Cached states whose row moved (or vanished) are stale: read those
	// rows again, this time with their snapshot.
	var stale []*rowState[S]
	for _, r := range rows {
		if r.cached && (!r.exists || r.pos != r.cpos) {
			r.cached = false
			if r.exists {
				stale = append(stale, r)
			}
		}
	}
	if len(stale) > 0 {
		if err := p.lock(ctx, tx, sqls, stale); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if r.cached {
			continue
		}
		if !r.exists {
			r.state = p.cfg.Initial()
			continue
		}
		s, err := p.parse(r.snap)
		if err != nil {
			return err
		}
		r.state = s
	}
	return nil
}

// lock locks the stored rows (in-row) or snapshots (snapshots table) of
// rows and sets exists, pos and, for rows not served from the cache, the
// stored snapshot text.
func (p *SnapshotProjection[S]) lock(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
	if p.cfg.Storage == SnapshotInRow {
		return p.lockRows(ctx, tx, sqls, rows)
	}
	return p.lockSnapshots(ctx, tx, rows)
}

// lockRows locks the in-row read-model rows of the batch with one
// statement joining the table to arrays of the key values (typed like the
// key columns), and reads their position and, for rows not served from
// the cache, their snapshot. It is planned on every execution, with the
// table's current size and the batch's values, rather than with a generic
// plan made while the table was small.
func (p *SnapshotProjection[S]) lockRows(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
	q, err := p.lockRowsSQL(ctx, tx, sqls)
	if err != nil {
		return err
	}
	idx := make([]int32, len(rows))
	cached := make([]bool, len(rows))
	keys := make([][]any, len(sqls.names))
	for k := range keys {
		keys[k] = make([]any, len(rows))
	}
	for i, r := range rows {
		idx[i], cached[i] = int32(i), r.cached
		r.exists, r.pos, r.snap = false, 0, nil
		for k, name := range sqls.names {
			keys[k][i] = r.keys[name]
		}
	}
	args := []any{pgx.QueryExecModeCacheDescribe, idx, cached}
	for _, k := range keys {
		args = append(args, k)
	}
	res, err := tx.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("snapshot projection %q: lock rows: %w", p.cfg.Table, err)
	}
	defer res.Close()
	for res.Next() {
		var i int32
		var pos int64
		var snap *string
		if err := res.Scan(&i, &pos, &snap); err != nil {
			return fmt.Errorf("snapshot projection %q: lock rows: %w", p.cfg.Table, err)
		}
		if i >= 0 && int(i) < len(rows) {
			rows[i].exists, rows[i].pos, rows[i].snap = true, store.Version(pos), snap
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("snapshot projection %q: lock rows: %w", p.cfg.Table, err)
	}
	return nil
}

// lockRowsSQL returns the in-row lock statement, looking up the key
// columns' types the first time.
func (p *SnapshotProjection[S]) lockRowsSQL(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL) (string, error) {
	p.mu.Lock()
	q := sqls.lockRows
	p.mu.Unlock()
	if q != "" {
		return q, nil
	}
	res, err := tx.Query(ctx, `SELECT a.attname, format_type(a.atttypid, NULL)
FROM pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($2::text[])`,
		p.tableSQL, sqls.names)
	if err != nil {
		return "", fmt.Errorf("snapshot projection %q: look up the key columns: %w", p.cfg.Table, err)
	}
	types := map[string]string{}
	for res.Next() {
		var name, typ string
		if err := res.Scan(&name, &typ); err != nil {
			res.Close()
			return "", fmt.Errorf("snapshot projection %q: look up the key columns: %w", p.cfg.Table, err)
		}
		types[name] = typ
	}
	res.Close()
	if err := res.Err(); err != nil {
		return "", fmt.Errorf("snapshot projection %q: look up the key columns: %w", p.cfg.Table, err)
	}
	arrays := []string{"$1::int4[]", "$2::bool[]"}
	cols := []string{"i", "c"}
	on := make([]string, len(sqls.names))
	for k, name := range sqls.names {
		typ, ok := types[name]
		if !ok {
			return "", fmt.Errorf("snapshot projection %q: the table has no key column %q (or does not exist)", p.cfg.Table, name)
		}
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", k+3, typ))
		cols = append(cols, fmt.Sprintf("k%d", k))
		on[k] = fmt.Sprintf("t.%s = u.k%d", sqls.keyCols[k], k)
	}
	q = `SELECT u.i, t.last_stream_position, CASE WHEN u.c THEN NULL ELSE t.snapshot::text END
FROM unnest(` + strings.Join(arrays, ", ") + `) AS u(` + strings.Join(cols, ", ") + `)
JOIN ` + p.tableSQL + ` t ON ` + strings.Join(on, " AND ") + `
ORDER BY u.i
FOR UPDATE OF t`
	p.mu.Lock()
	sqls.lockRows = q
	p.mu.Unlock()
	return q, nil
}

// lockSnapshots locks the batch's snapshots rows with one statement,
// planned on every execution like lockRows.
func (p *SnapshotProjection[S]) lockSnapshots(ctx context.Context, tx pgx.Tx, rows []*rowState[S]) error {
	ids := make([]string, len(rows))
	cached := make([]bool, len(rows))
	for i, r := range rows {
		ids[i], cached[i] = r.id, r.cached
		r.exists, r.pos, r.snap = false, 0, nil
	}
	res, err := tx.Query(ctx, `SELECT u.i, s.last_stream_position, CASE WHEN u.c THEN NULL ELSE s.snapshot::text END
FROM unnest($2::text[], $3::bool[]) WITH ORDINALITY AS u(id, c, i)
JOIN snapshots s ON s.readmodel_table_name = $1 AND s.stream_id = u.id
ORDER BY u.i
FOR UPDATE OF s`, pgx.QueryExecModeCacheDescribe, p.cfg.Table, ids, cached)
	if err != nil {
		return fmt.Errorf("snapshot projection %q: lock snapshots: %w", p.cfg.Table, err)
	}
	defer res.Close()
	for res.Next() {
		var i int64
		var pos int64
		var snap *string
		if err := res.Scan(&i, &pos, &snap); err != nil {
			return fmt.Errorf("snapshot projection %q: lock snapshots: %w", p.cfg.Table, err)
		}
		if i >= 1 && int(i) <= len(rows) {
			rows[i-1].exists, rows[i-1].pos, rows[i-1].snap = true, store.Version(pos), snap
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("snapshot projection %q: lock snapshots: %w", p.cfg.Table, err)
	}
	return nil
}

// parse decodes a stored snapshot: SQL NULL, an empty value and JSON null
// give the initial state.
func (p *SnapshotProjection[S]) parse(raw *string) (S, error) {
	if raw == nil {
		return p.cfg.Initial(), nil
	}
	t := strings.TrimSpace(*raw)
	if t == "" || t == "null" {
		return p.cfg.Initial(), nil
	}
	var s S
	if err := json.Unmarshal([]byte(t), &s); err != nil {
		return s, newSnapshotParseError(p.cfg.Table, *raw, err)
	}
	return s, nil
}

// maxParams is the most bind parameters put in one statement (PostgreSQL
// allows 65535).
const maxParams = 60000

// write stores the rows that had events applied: new rows are inserted
// (and must not exist: a concurrent insert fails the batch), existing rows,
// locked by load, are updated only forwards.
func (p *SnapshotProjection[S]) write(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
	var fresh, existing []*rowState[S]
	for _, r := range rows {
		if !r.applied {
			continue
		}
		if r.exists {
			existing = append(existing, r)
		} else {
			fresh = append(fresh, r)
		}
	}
	if len(fresh)+len(existing) == 0 {
		return nil
	}
	snaps := make(map[*rowState[S]]string, len(fresh)+len(existing))
	for _, set := range [][]*rowState[S]{fresh, existing} {
		for _, r := range set {
			b, err := json.Marshal(r.state)
			if err != nil {
				return fmt.Errorf("snapshot projection %q: encode state of %s: %w", p.cfg.Table, r.id, err)
			}
			snaps[r] = string(b)
		}
	}

	b := &pgx.Batch{}
	var checks []writeCheck
	if p.cfg.Storage == SnapshotInRow {
		if err := p.queueRowWrites(b, &checks, sqls, fresh, false, snaps); err != nil {
			return err
		}
		if err := p.queueRowWrites(b, &checks, sqls, existing, true, snaps); err != nil {
			return err
		}
	} else {
		p.queueSnapshotWrites(b, &checks, fresh, false, snaps)
		p.queueSnapshotWrites(b, &checks, existing, true, snaps)
		applied := append(slices.Clip(fresh), existing...)
		if err := p.queueReadModelWrites(b, &checks, sqls, applied); err != nil {
			return err
		}
	}
	br := tx.SendBatch(ctx, b)
	for _, c := range checks {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("snapshot projection %q: %s: %w", p.cfg.Table, c.what, err)
		}
		if c.want >= 0 && tag.RowsAffected() != int64(c.want) {
			_ = br.Close()
			return fmt.Errorf("snapshot projection %q: %s: %d of %d rows written: %w",
				p.cfg.Table, c.what, tag.RowsAffected(), c.want, errConcurrentWrite)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("snapshot projection %q: write rows: %w", p.cfg.Table, err)
	}
	return nil
}

// writeCheck is what one queued write statement must affect; want < 0
// means any number of rows.
type writeCheck struct {
	what string
	want int
}

// columnGroup is rows sharing one set of mapped columns, written by one
// statement (per chunk).
type columnGroup[S any] struct {
	cols []string
	rows []*rowState[S]
}

// groupByColumns groups rows by the names of their mapped columns, in a
// deterministic order. It rejects mapped columns that are key columns or
// (in-row) columns the projection writes itself.
func (p *SnapshotProjection[S]) groupByColumns(sqls *snapshotSQL, rows []*rowState[S]) ([]*columnGroup[S], error) {
	keyCols := sqls.names
	groups := map[string]*columnGroup[S]{}
	var order []string
	for _, r := range rows {
		cols := make([]string, 0, len(r.cols))
		for c := range r.cols {
			if slices.Contains(keyCols, c) || (p.cfg.Storage == SnapshotInRow && isRowColumn(c)) || c == "" {
				return nil, fmt.Errorf("snapshot projection %q: map to columns returned column %q, which is a key column or one the projection writes itself", p.cfg.Table, c)
			}
			cols = append(cols, c)
		}
		sort.Strings(cols)
		sig := strings.Join(cols, "\x00")
		g, ok := groups[sig]
		if !ok {
			g = &columnGroup[S]{cols: cols}
			groups[sig] = g
			order = append(order, sig)
		}
		g.rows = append(g.rows, r)
	}
	out := make([]*columnGroup[S], len(order))
	for i, sig := range order {
		out[i] = groups[sig]
	}
	return out, nil
}

// queueRowWrites queues the in-row writes: INSERT … ON CONFLICT DO NOTHING
// for new rows (each must be inserted) and INSERT … ON CONFLICT (keys) DO
// UPDATE … WHERE the stored position is older for existing ones.
func (p *SnapshotProjection[S]) queueRowWrites(b *pgx.Batch, checks *[]writeCheck, sqls *snapshotSQL,
	rows []*rowState[S], update bool, snaps map[*rowState[S]]string) error {
	if len(rows) == 0 {
		return nil
	}
	groups, err := p.groupByColumns(sqls, rows)
	if err != nil {
		return err
	}
	keyCols := sqls.names
	for _, g := range groups {
		names := append(slices.Clone(keyCols), ColumnSnapshot, ColumnStreamID, ColumnLastStreamPosition, ColumnLastGlobalPosition)
		names = append(names, g.cols...)
		quoted := quoteAll(names)
		suffix := ` ON CONFLICT DO NOTHING`
		what := "insert new rows"
		if update {
			set := make([]string, 0, len(quoted)-len(keyCols))
			for _, q := range quoted[len(keyCols):] {
				set = append(set, q+" = EXCLUDED."+q)
			}
			suffix = ` ON CONFLICT ` + sqls.conflictKeys + ` DO UPDATE SET ` + strings.Join(set, ", ") +
				` WHERE ` + p.tableSQL + `.last_stream_position < EXCLUDED.last_stream_position`
			what = "update rows"
		}
		perStmt := max(1, maxParams/len(names))
		for start := 0; start < len(g.rows); start += perStmt {
			chunk := g.rows[start:min(len(g.rows), start+perStmt)]
			args := make([]any, 0, len(chunk)*len(names))
			for _, r := range chunk {
				args = append(args, keyArgs(keyCols, r.keys)...)
				args = append(args, snaps[r], string(r.last.StreamID), int64(r.last.StreamPosition), int64(r.last.GlobalPosition))
				for _, c := range g.cols {
					args = append(args, r.cols[c])
				}
			}
			b.Queue(insertSQL(p.tableSQL, quoted, len(chunk))+suffix, args...)
			*checks = append(*checks, writeCheck{what: what, want: len(chunk)})
		}
	}
	return nil
}

// queueSnapshotWrites queues the snapshots-table writes: an insert of the
// new snapshots (each must be inserted) or a forward-only update of the
// existing ones.
func (p *SnapshotProjection[S]) queueSnapshotWrites(b *pgx.Batch, checks *[]writeCheck, rows []*rowState[S],
	update bool, snaps map[*rowState[S]]string) {
	if len(rows) == 0 {
		return
	}
	ids := make([]string, len(rows))
	poss := make([]int64, len(rows))
	globals := make([]int64, len(rows))
	states := make([]string, len(rows))
	partitions := make([]string, len(rows))
	for i, r := range rows {
		ids[i], poss[i], globals[i], states[i] = r.id, int64(r.last.StreamPosition), int64(r.last.GlobalPosition), snaps[r]
		partitions[i] = store.Partition(r.last.Partition)
	}
	// Each row records the partition of the event applied last, so that
	// erasing a tenant (tenancy.Manager.Drop) deletes its snapshots.
	if update {
		// An upsert rather than UPDATE … FROM: its plan does not depend
		// on statistics. The rows are locked, so each one conflicts and is
		// updated unless its stored position is not older.
		b.Queue(`INSERT INTO snapshots (readmodel_table_name, stream_id, last_stream_position, last_global_position, snapshot, partition)
SELECT $1, u.stream_id, u.pos, u.global, u.snapshot::jsonb, u.partition
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS u(stream_id, pos, global, snapshot, partition)
ON CONFLICT (readmodel_table_name, stream_id) DO UPDATE
SET snapshot = EXCLUDED.snapshot, last_stream_position = EXCLUDED.last_stream_position,
    last_global_position = EXCLUDED.last_global_position, partition = EXCLUDED.partition
WHERE snapshots.last_stream_position < EXCLUDED.last_stream_position`,
			p.cfg.Table, ids, poss, globals, states, partitions)
		*checks = append(*checks, writeCheck{what: "update snapshots", want: len(rows)})
		return
	}
	b.Queue(`INSERT INTO snapshots (readmodel_table_name, stream_id, last_stream_position, last_global_position, snapshot, partition)
SELECT $1, u.stream_id, u.pos, u.global, u.snapshot::jsonb, u.partition
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS u(stream_id, pos, global, snapshot, partition)
ON CONFLICT DO NOTHING`, p.cfg.Table, ids, poss, globals, states, partitions)
	*checks = append(*checks, writeCheck{what: "insert snapshots", want: len(rows)})
}

// queueReadModelWrites queues the snapshots-table variant's read-model
// rows: keys plus mapped columns, upserted when there are mapped columns,
// inserted if missing otherwise. Its order is protected by the snapshots
// rows locked in load.
func (p *SnapshotProjection[S]) queueReadModelWrites(b *pgx.Batch, checks *[]writeCheck, sqls *snapshotSQL, rows []*rowState[S]) error {
	groups, err := p.groupByColumns(sqls, rows)
	if err != nil {
		return err
	}
	keyCols := sqls.names
	for _, g := range groups {
		names := append(slices.Clone(keyCols), g.cols...)
		quoted := quoteAll(names)
		suffix := ` ON CONFLICT DO NOTHING`
		if len(g.cols) > 0 {
			set := make([]string, 0, len(g.cols))
			for _, q := range quoted[len(keyCols):] {
				set = append(set, q+" = EXCLUDED."+q)
			}
			suffix = ` ON CONFLICT ` + sqls.conflictKeys + ` DO UPDATE SET ` + strings.Join(set, ", ")
		}
		perStmt := max(1, maxParams/len(names))
		for start := 0; start < len(g.rows); start += perStmt {
			chunk := g.rows[start:min(len(g.rows), start+perStmt)]
			args := make([]any, 0, len(chunk)*len(names))
			for _, r := range chunk {
				args = append(args, keyArgs(keyCols, r.keys)...)
				for _, c := range g.cols {
					args = append(args, r.cols[c])
				}
			}
			b.Queue(insertSQL(p.tableSQL, quoted, len(chunk))+suffix, args...)
			*checks = append(*checks, writeCheck{what: "write read-model rows", want: -1})
		}
	}
	return nil
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = pgx.Identifier{n}.Sanitize()
	}
	return out
}

// insertSQL returns INSERT INTO table (cols) VALUES (…), … for n rows.
func insertSQL(table string, cols []string, n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(table)
	b.WriteString(" (")
	b.WriteString(strings.Join(cols, ", "))
	b.WriteString(") VALUES ")
	param := 1
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range cols {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", param)
			param++
		}
		b.WriteByte(')')
	}
	return b.String()
}
