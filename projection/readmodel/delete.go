package readmodel

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// lockTombstones locks the snapshots-table rows that keep the position of
// deleted in-row rows (see Delete) among rows, and sets their position.
// Such a row reads as absent with the kept position: it folds from the
// initial state, and events at or before the position are skipped.
func (p *Projection[S]) lockTombstones(ctx context.Context, tx pgx.Tx, rows []*rowState[S]) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	res, err := tx.Query(ctx, `SELECT u.i, s.last_stream_position, s.last_global_position
FROM unnest($2::text[]) WITH ORDINALITY AS u(id, i)
JOIN snapshots s ON s.readmodel_table_name = $1 AND s.stream_id = u.id
ORDER BY u.i
FOR UPDATE OF s`, pgx.QueryExecModeCacheDescribe, p.cfg.Table, ids)
	if err != nil {
		return fmt.Errorf("read model %q: lock the positions of deleted rows: %w", p.cfg.Table, err)
	}
	defer res.Close()
	for res.Next() {
		var i, pos, global int64
		if err := res.Scan(&i, &pos, &global); err != nil {
			return fmt.Errorf("read model %q: lock the positions of deleted rows: %w", p.cfg.Table, err)
		}
		if i >= 1 && int(i) <= len(rows) {
			rows[i-1].pos, rows[i-1].global = store.Version(pos), store.GlobalPosition(global)
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("read model %q: lock the positions of deleted rows: %w", p.cfg.Table, err)
	}
	return nil
}

// queueReadModelDeletes queues the deletion of the read-model rows whose
// last applied event's evolve returned Delete (a row that is not there is
// fine: it may never have been written).
func (p *Projection[S]) queueReadModelDeletes(b *pgx.Batch, checks *[]writeCheck, sqls *snapshotSQL, rows []*rowState[S]) {
	if len(rows) == 0 {
		return
	}
	keyCols := sqls.names
	perStmt := max(1, maxParams/len(keyCols))
	for start := 0; start < len(rows); start += perStmt {
		chunk := rows[start:min(len(rows), start+perStmt)]
		var q strings.Builder
		q.WriteString("DELETE FROM " + p.tableSQL + " WHERE (" + strings.Join(sqls.keyCols, ", ") + ") IN (")
		writeTuples(&q, len(chunk), len(keyCols))
		q.WriteByte(')')
		args := make([]any, 0, len(chunk)*len(keyCols))
		for _, r := range chunk {
			args = append(args, keyArgs(keyCols, r.keys)...)
		}
		b.Queue(q.String(), args...)
		*checks = append(*checks, writeCheck{what: "delete read-model rows", want: -1})
	}
}
