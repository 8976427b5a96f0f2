package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// With Config.RowLevelSecurity on, every statement the store runs for a
// partition is preceded, in the same pgx.Batch, by a statement scoping the
// transaction to that partition ([SetTenantSQL]). A batch sent on the
// pool is one implicit transaction (one Sync), so the transaction-local
// setting covers exactly the statement that follows it, at no extra round
// trip; sent on a transaction, it stays in force until the transaction
// ends or the store's next operation scopes it again.
const (
	scopeSQL = SetTenantSQL

	// scopeCustomPlanSQL also makes PostgreSQL plan the following
	// statement for its actual parameters rather than reuse a generic plan
	// of the prepared statement (see ReadAll). Only used in implicit
	// transactions, where the setting ends with the batch.
	scopeCustomPlanSQL = `SELECT set_config('` + TenantSettingName + `', $1, true), set_config('plan_cache_mode', 'force_custom_plan', true)`
)

// scopedBatch sends scope (with partition as its argument) and then the
// statement sql on q, as one batch, and returns the results with the scope
// statement's result already consumed. The caller reads the statement's
// result and closes the batch.
func scopedBatch(ctx context.Context, q querier, scope, partition, sql string, args ...any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.Queue(scope, partition)
	b.Queue(sql, args...)
	br := q.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, err
	}
	return br, nil
}

// queryRow runs sql on q for partition: as is when row-level security is
// off, scoped to the partition when it is on.
func (s *Store) queryRow(ctx context.Context, q querier, partition, sql string, args ...any) pgx.Row {
	if !s.rls {
		return q.QueryRow(ctx, sql, args...)
	}
	br, err := scopedBatch(ctx, q, scopeSQL, partition, sql, args...)
	if err != nil {
		return errRow{err}
	}
	return &batchRow{row: br.QueryRow(), br: br}
}

// query runs sql on q for partition, like queryRow.
func (s *Store) query(ctx context.Context, q querier, partition, sql string, args ...any) (pgx.Rows, error) {
	if !s.rls {
		return q.Query(ctx, sql, args...)
	}
	return scopedQuery(ctx, q, scopeSQL, partition, sql, args...)
}

// exec runs sql on q for partition, like queryRow.
func (s *Store) exec(ctx context.Context, q querier, partition, sql string, args ...any) (pgconn.CommandTag, error) {
	if !s.rls {
		return q.Exec(ctx, sql, args...)
	}
	br, err := scopedBatch(ctx, q, scopeSQL, partition, sql, args...)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	return tag, err
}

// scopedQuery sends scope and sql as one batch and returns sql's rows;
// closing them (or reading them to the end) closes the batch.
func scopedQuery(ctx context.Context, q querier, scope, partition, sql string, args ...any) (pgx.Rows, error) {
	br, err := scopedBatch(ctx, q, scope, partition, sql, args...)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		rows.Close()
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// batchRows are the rows of a batch's last statement; they close the
// batch (releasing a pooled connection) when they are closed or read to
// the end.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	if err := r.br.Close(); err != nil {
		r.err = err
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// batchRow is the single row of a batch's last statement; Scan closes the
// batch.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r *batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if closeErr := r.br.Close(); closeErr != nil && (err == nil || errors.Is(err, pgx.ErrNoRows)) {
		return closeErr
	}
	return err
}

// errRow is a pgx.Row whose Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
