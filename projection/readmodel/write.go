package readmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// checkKeys infers the key set from the first call and checks every later
// key set against it.
func (p *Projection[S]) checkKeys(keys map[string]any) (*snapshotSQL, error) {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keyCols == nil {
		if len(names) == 0 {
			return nil, fmt.Errorf("read model %q: extract keys returned no key columns", p.cfg.Table)
		}
		for _, n := range names {
			if n == "" {
				return nil, fmt.Errorf("read model %q: extract keys returned an empty column name", p.cfg.Table)
			}
			if p.cfg.Storage == InRow && isRowColumn(n) {
				return nil, fmt.Errorf("read model %q: key column %q is one of the columns the projection writes itself", p.cfg.Table, n)
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

func (p *Projection[S]) buildSQL(keyCols []string) *snapshotSQL {
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
func (p *Projection[S]) load(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
	slices.SortFunc(rows, func(a, b *rowState[S]) int { return strings.Compare(a.id, b.id) })
	if err := p.lock(ctx, tx, sqls, rows); err != nil {
		return err
	}
	// Cached states whose row moved (or vanished) are stale: read those
	// rows again, this time with their snapshot.
	var stale []*rowState[S]
	for _, r := range rows {
		if r.cached && (!r.exists || r.pos != r.cpos || r.global != r.cglob) {
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
	if p.cfg.Storage == InRow {
		var missing []*rowState[S]
		for _, r := range rows {
			if !r.exists {
				missing = append(missing, r)
			}
		}
		if err := p.lockTombstones(ctx, tx, missing); err != nil {
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
func (p *Projection[S]) lock(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
	if p.cfg.Storage == InRow {
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
func (p *Projection[S]) lockRows(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
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
		r.exists, r.pos, r.global, r.snap = false, 0, 0, nil
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
		return fmt.Errorf("read model %q: lock rows: %w", p.cfg.Table, err)
	}
	defer res.Close()
	for res.Next() {
		var i int32
		var pos, global int64
		var snap *string
		if err := res.Scan(&i, &pos, &global, &snap); err != nil {
			return fmt.Errorf("read model %q: lock rows: %w", p.cfg.Table, err)
		}
		if i >= 0 && int(i) < len(rows) {
			rows[i].exists, rows[i].pos, rows[i].global, rows[i].snap = true, store.Version(pos), store.GlobalPosition(global), snap
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("read model %q: lock rows: %w", p.cfg.Table, err)
	}
	return nil
}

// lockRowsSQL returns the in-row lock statement, looking up the key
// columns' types the first time.
func (p *Projection[S]) lockRowsSQL(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL) (string, error) {
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
		return "", fmt.Errorf("read model %q: look up the key columns: %w", p.cfg.Table, err)
	}
	types := map[string]string{}
	for res.Next() {
		var name, typ string
		if err := res.Scan(&name, &typ); err != nil {
			res.Close()
			return "", fmt.Errorf("read model %q: look up the key columns: %w", p.cfg.Table, err)
		}
		types[name] = typ
	}
	res.Close()
	if err := res.Err(); err != nil {
		return "", fmt.Errorf("read model %q: look up the key columns: %w", p.cfg.Table, err)
	}
	arrays := []string{"$1::int4[]", "$2::bool[]"}
	cols := []string{"i", "c"}
	on := make([]string, len(sqls.names))
	for k, name := range sqls.names {
		typ, ok := types[name]
		if !ok {
			return "", fmt.Errorf("read model %q: the table has no key column %q (or does not exist)", p.cfg.Table, name)
		}
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", k+3, typ))
		cols = append(cols, fmt.Sprintf("k%d", k))
		on[k] = fmt.Sprintf("t.%s = u.k%d", sqls.keyCols[k], k)
	}
	q = `SELECT u.i, t.last_stream_position, coalesce(t.last_global_position, 0), CASE WHEN u.c THEN NULL ELSE t.snapshot::text END
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
func (p *Projection[S]) lockSnapshots(ctx context.Context, tx pgx.Tx, rows []*rowState[S]) error {
	ids := make([]string, len(rows))
	cached := make([]bool, len(rows))
	for i, r := range rows {
		ids[i], cached[i] = r.id, r.cached
		r.exists, r.pos, r.global, r.snap = false, 0, 0, nil
	}
	res, err := tx.Query(ctx, `SELECT u.i, s.last_stream_position, s.last_global_position, CASE WHEN u.c THEN NULL ELSE s.snapshot::text END
FROM unnest($2::text[], $3::bool[]) WITH ORDINALITY AS u(id, c, i)
JOIN snapshots s ON s.readmodel_table_name = $1 AND s.stream_id = u.id
ORDER BY u.i
FOR UPDATE OF s`, pgx.QueryExecModeCacheDescribe, p.cfg.Table, ids, cached)
	if err != nil {
		return fmt.Errorf("read model %q: lock snapshots: %w", p.cfg.Table, err)
	}
	defer res.Close()
	for res.Next() {
		var i int64
		var pos, global int64
		var snap *string
		if err := res.Scan(&i, &pos, &global, &snap); err != nil {
			return fmt.Errorf("read model %q: lock snapshots: %w", p.cfg.Table, err)
		}
		if i >= 1 && int(i) <= len(rows) {
			rows[i-1].exists, rows[i-1].pos, rows[i-1].global, rows[i-1].snap = true, store.Version(pos), store.GlobalPosition(global), snap
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("read model %q: lock snapshots: %w", p.cfg.Table, err)
	}
	return nil
}

// parse decodes a stored snapshot: SQL NULL, an empty value and JSON null
// give the initial state.
func (p *Projection[S]) parse(raw *string) (S, error) {
	if raw == nil {
		return p.cfg.Initial(), nil
	}
	t := strings.TrimSpace(*raw)
	if t == "" || t == "null" {
		return p.cfg.Initial(), nil
	}
	var s S
	if err := json.Unmarshal([]byte(t), &s); err != nil {
		return s, newStateParseError(p.cfg.Table, *raw, err)
	}
	return s, nil
}

// maxParams is the most bind parameters put in one statement (PostgreSQL
// allows 65535).
const maxParams = 60000

// write stores the rows that had events applied: new rows are inserted
// (and must not exist: a concurrent insert fails the batch), existing rows,
// locked by load, are updated only forwards: to a later stream position,
// or to a later global position (a row restarted for a new incarnation of
// its stream; within one incarnation both rise together).
func (p *Projection[S]) write(ctx context.Context, tx pgx.Tx, sqls *snapshotSQL, rows []*rowState[S]) error {
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
			if r.deleted {
				// JSON null reads back as the initial state.
				snaps[r] = "null"
				continue
			}
			b, err := json.Marshal(r.state)
			if err != nil {
				return fmt.Errorf("read model %q: encode state of %s: %w", p.cfg.Table, r.id, err)
			}
			snaps[r] = string(b)
		}
	}

	b := &pgx.Batch{}
	var checks []writeCheck
	if p.cfg.Storage == InRow {
		// A deleted row goes from the table, and its position is kept in
		// the snapshots table (a row that was absent already just gets
		// its kept position moved on).
		var deleted, deletedExisting []*rowState[S]
		fresh = slices.DeleteFunc(fresh, func(r *rowState[S]) bool {
			if r.deleted {
				deleted = append(deleted, r)
			}
			return r.deleted
		})
		existing = slices.DeleteFunc(existing, func(r *rowState[S]) bool {
			if r.deleted {
				deleted = append(deleted, r)
				deletedExisting = append(deletedExisting, r)
			}
			return r.deleted
		})
		if err := p.queueRowWrites(b, &checks, sqls, fresh, false, snaps); err != nil {
			return err
		}
		if err := p.queueRowWrites(b, &checks, sqls, existing, true, snaps); err != nil {
			return err
		}
		p.queueReadModelDeletes(b, &checks, sqls, deletedExisting)
		p.queueSnapshotWrites(b, &checks, deleted, true, snaps)
	} else {
		p.queueSnapshotWrites(b, &checks, fresh, false, snaps)
		p.queueSnapshotWrites(b, &checks, existing, true, snaps)
		var kept, deleted []*rowState[S]
		for _, set := range [][]*rowState[S]{fresh, existing} {
			for _, r := range set {
				if r.deleted {
					deleted = append(deleted, r)
				} else {
					kept = append(kept, r)
				}
			}
		}
		if err := p.queueReadModelWrites(b, &checks, sqls, kept); err != nil {
			return err
		}
		p.queueReadModelDeletes(b, &checks, sqls, deleted)
	}
	br := tx.SendBatch(ctx, b)
	for _, c := range checks {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("read model %q: %s: %w", p.cfg.Table, c.what, err)
		}
		if c.want >= 0 && tag.RowsAffected() != int64(c.want) {
			_ = br.Close()
			return fmt.Errorf("read model %q: %s: %d of %d rows written: %w",
				p.cfg.Table, c.what, tag.RowsAffected(), c.want, errConcurrentWrite)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("read model %q: write rows: %w", p.cfg.Table, err)
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
func (p *Projection[S]) groupByColumns(sqls *snapshotSQL, rows []*rowState[S]) ([]*columnGroup[S], error) {
	keyCols := sqls.names
	groups := map[string]*columnGroup[S]{}
	var order []string
	for _, r := range rows {
		cols := make([]string, 0, len(r.cols))
		for c := range r.cols {
			if slices.Contains(keyCols, c) || (p.cfg.Storage == InRow && isRowColumn(c)) || c == "" {
				return nil, fmt.Errorf("read model %q: map to columns returned column %q, which is a key column or one the projection writes itself", p.cfg.Table, c)
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
func (p *Projection[S]) queueRowWrites(b *pgx.Batch, checks *[]writeCheck, sqls *snapshotSQL,
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
				` WHERE ` + p.tableSQL + `.last_stream_position < EXCLUDED.last_stream_position OR ` +
				p.tableSQL + `.last_global_position < EXCLUDED.last_global_position`
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
func (p *Projection[S]) queueSnapshotWrites(b *pgx.Batch, checks *[]writeCheck, rows []*rowState[S],
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
WHERE snapshots.last_stream_position < EXCLUDED.last_stream_position
   OR snapshots.last_global_position < EXCLUDED.last_global_position`,
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
func (p *Projection[S]) queueReadModelWrites(b *pgx.Batch, checks *[]writeCheck, sqls *snapshotSQL, rows []*rowState[S]) error {
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
	writeTuples(&b, n, len(cols))
	return b.String()
}

// writeTuples writes n parenthesised tuples of width parameters each,
// numbered from $1: ($1, $2), ($3, $4), ….
func writeTuples(b *strings.Builder, n, width int) {
	param := 1
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := 0; j < width; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(param))
			param++
		}
		b.WriteByte(')')
	}
}
