package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is the database handle Troupe's PostgreSQL code accepts: a
// *pgxpool.Pool, a *pgx.Conn or a pgx.Tx all satisfy it. A pool may be used
// by many goroutines at once; a connection or a transaction, like pgx's own,
// by one at a time. Begin on a transaction opens a savepoint.
//
// Components that hold connections of their own for as long as they run (a
// projection's lease and its notifications, a Notifier) need a pool; they
// say so when handed something else.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ DB = (*pgxpool.Pool)(nil)
	_ DB = (*pgx.Conn)(nil)
	_ DB = (pgx.Tx)(nil)
)

// IsNil reports whether db is nil, also as a nil *pgxpool.Pool or *pgx.Conn
// in a non-nil interface: what a constructor taking a DB refuses.
func IsNil(db DB) bool {
	switch d := db.(type) {
	case nil:
		return true
	case *pgxpool.Pool:
		return d == nil
	case *pgx.Conn:
		return d == nil
	}
	return false
}
