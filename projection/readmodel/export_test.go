package readmodel

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// Parse exposes parse to the tests.
func (p *Projection[S]) Parse(raw *string) (S, error) { return p.parse(raw) }

// ErrConcurrentWrite exposes errConcurrentWrite to the tests.
var ErrConcurrentWrite = errConcurrentWrite

// WriteStale writes a row of keys stored at position 1 with state and
// last as its last applied event, through write, in tx: a write of an
// older position than the one stored, if any.
func (p *Projection[S]) WriteStale(ctx context.Context, tx pgx.Tx, keys map[string]any, state S, last store.Event, cols map[string]any) error {
	stale := &rowState[S]{id: RowID(keys), keys: keys, exists: true, pos: 1, state: state, applied: true, last: last, cols: cols}
	return p.write(ctx, tx, p.sql, []*rowState[S]{stale})
}
