package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/store"
)

// provoke makes the handler's transaction fail with a real database error
// (or succeed once the cause is gone).
type provoke func(t *testing.T, pool *pgxpool.Pool) (fail func(ctx context.Context, tx pgx.Tx) error, clear func())

// raising fails with code, raised by PL/pgSQL.
func raising(code string) provoke {
	return func(t *testing.T, pool *pgxpool.Pool) (func(context.Context, pgx.Tx) error, func()) {
		_, err := pool.Exec(projtest.Ctx(t), `CREATE FUNCTION raise_sqlstate(code text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'provoked %', code USING ERRCODE = code; END $$`)
		require.NoError(t, err)
		return func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `SELECT raise_sqlstate($1)`, code)
			return err
		}, func() {}
	}
}

// tableHeld fails with lock_not_available: another connection holds a
// lock on the table the handler locks with NOWAIT, until clear. (A table
// lock, not a row lock: a row lock would give the holder a transaction id
// and hold back the log for every reader of the server.)
func tableHeld(t *testing.T, pool *pgxpool.Pool) (func(context.Context, pgx.Tx) error, func()) {
	ctx := projtest.Ctx(t)
	_, err := pool.Exec(ctx, `CREATE TABLE contended (id int PRIMARY KEY)`)
	require.NoError(t, err)
	holder, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = holder.Exec(ctx, `LOCK TABLE contended IN SHARE MODE`)
	require.NoError(t, err)
	var once sync.Once
	release := func() { once.Do(func() { _ = holder.Rollback(ctx) }) }
	t.Cleanup(release)
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `LOCK TABLE contended IN EXCLUSIVE MODE NOWAIT`)
		return err
	}, release
}

// statementTimeout fails with query_canceled: the statement outlives the
// transaction's statement_timeout.
func statementTimeout(*testing.T, *pgxpool.Pool) (func(context.Context, pgx.Tx) error, func()) {
	return func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '20ms'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_sleep(10)`)
		return err
	}, func() {}
}

// terminated fails with admin_shutdown: the handler's own backend is
// terminated under it.
func terminated(*testing.T, *pgxpool.Pool) (func(context.Context, pgx.Tx) error, func()) {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
		return err
	}, func() {}
}

// TestProjectionTransientHandlerErrorsAreNotAttempts: a handler that hits
// deadlocks, serialization failures, lock and statement timeouts or a
// terminated connection a few times is retried until they clear and the
// event is applied once; none of it counts toward MaxAttempts (1 here),
// so nothing is dead-lettered.
func TestProjectionTransientHandlerErrorsAreNotAttempts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		code    string
		provoke provoke
	}{
		{"serialization-failure", "40001", raising("40001")},
		{"deadlock", "40P01", raising("40P01")},
		{"lock-not-available", "55P03", tableHeld},
		{"statement-timeout", "57014", statementTimeout},
		{"admin-shutdown", "57P01", terminated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			projtest.CreateAppliedTable(t, pool)
			fail, clear := tc.provoke(t, pool)
			projtest.SeedCarts(t, es, "", 3, 1) // 6 events
			events := projtest.ReadAllEvents(t, pool, es, "")
			target := events[3]

			const failures = 3
			var calls atomic.Int64
			codes := make(chan string, failures)
			h := func(ctx context.Context, tx pgx.Tx, e store.Event) error {
				if e.MessageID == target.MessageID {
					if n := calls.Add(1); n <= failures {
						err := fail(ctx, tx)
						var pgErr *pgconn.PgError
						switch {
						case err == nil:
							codes <- fmt.Sprintf("call %d did not fail", n)
							return fmt.Errorf("call %d did not fail", n)
						case errors.As(err, &pgErr):
							codes <- pgErr.Code
						default:
							codes <- err.Error()
						}
						return fmt.Errorf("update the read model: %w", err)
					}
					clear()
				}
				return projtest.CountHandler("p")(ctx, tx, e)
			}
			cfg := projtest.FastConfig("transient")
			cfg.Retry.MaxAttempts = 1
			cfg.OnFailure = projection.FailSkip
			cfg.Handlers = projection.Registry{projtest.TypeOpened: {h}, projtest.TypeAdded: {h}}
			p := projtest.NewProjection(t, pool, cfg)
			projtest.Start(t, p)
			projtest.WaitFor(t, p, events[len(events)-1].Position())

			require.EqualValues(t, failures+1, calls.Load(), "handler calls")
			for range failures {
				require.Equal(t, tc.code, <-codes)
			}
			projtest.RequireAppliedOnce(t, pool, es, "")
			var dead int
			require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT count(*) FROM projection_dead_letters`).Scan(&dead))
			require.Zero(t, dead, "dead-lettered events")
			st, err := p.Status(projtest.Ctx(t))
			require.NoError(t, err)
			require.Equal(t, projection.StateRunning, st.State)
		})
	}
}

// TestProjectionRecurringDatabaseErrorIsAnAttempt: a database error the
// handler causes itself (a unique violation) is the handler's failure: it
// counts, and with MaxAttempts 1 and FailSkip the event is dead-lettered.
func TestProjectionRecurringDatabaseErrorIsAnAttempt(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	projtest.CreateAppliedTable(t, pool)
	_, err := pool.Exec(projtest.Ctx(t), `CREATE TABLE once (id int PRIMARY KEY)`)
	require.NoError(t, err)
	projtest.SeedCarts(t, es, "", 2, 1)
	events := projtest.ReadAllEvents(t, pool, es, "")
	target := events[2]
	var calls atomic.Int64
	h := func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		if e.MessageID == target.MessageID {
			calls.Add(1)
			if _, err := tx.Exec(ctx, `INSERT INTO once VALUES (1), (1)`); err != nil {
				return err
			}
		}
		return projtest.CountHandler("p")(ctx, tx, e)
	}
	cfg := projtest.FastConfig("recurring")
	cfg.Retry.MaxAttempts = 1
	cfg.OnFailure = projection.FailSkip
	cfg.BatchSize = 1
	cfg.Handlers = projection.Registry{projtest.TypeOpened: {h}, projtest.TypeAdded: {h}}
	p := projtest.NewProjection(t, pool, cfg)
	projtest.Start(t, p)
	projtest.WaitFor(t, p, events[len(events)-1].Position())

	require.EqualValues(t, 1, calls.Load())
	var id, msg string
	var attempts int
	require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT message_id, error, attempts FROM projection_dead_letters`).
		Scan(&id, &msg, &attempts))
	require.Equal(t, target.MessageID, id)
	require.Contains(t, msg, "23505")
	require.Equal(t, 1, attempts)
}
