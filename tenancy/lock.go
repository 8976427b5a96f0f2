package tenancy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/store"
)

// run runs fn in a transaction holding the tenant's advisory lock, with
// lock_timeout set, and retries the whole transaction when a lock could not
// be taken in time or PostgreSQL broke a deadlock by aborting it.
func (m *Manager) run(ctx context.Context, op string, id store.TenantID, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := m.attempt(ctx, id, fn)
		if err == nil {
			return nil
		}
		if !lockFailure(err) {
			return err
		}
		if attempt >= m.cfg.Retry.MaxAttempts {
			return fmt.Errorf("%w: gave up after %d attempts: %w", ErrBusy, attempt, err)
		}
		m.log.DebugContext(ctx, "tenant tables busy, retrying", "tenant_id", string(id), "operation", op, "attempt", attempt, "error", err)
		if err := m.cfg.Retry.Wait(ctx, attempt); err != nil {
			return fmt.Errorf("%w: waiting to retry: %w", ErrBusy, err)
		}
	}
}

func (m *Manager) attempt(ctx context.Context, id store.TenantID, fn func(pgx.Tx) error) (err error) {
	tx, err := m.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('troupe.tenancy:' || $1, 0))`, string(id)); err != nil {
		return fmt.Errorf("lock tenant: %w", err)
	}
	ms := fmt.Sprintf("%dms", m.cfg.LockTimeout.Milliseconds())
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, ms); err != nil {
		return fmt.Errorf("set lock_timeout: %w", err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// lockFailure reports whether err is a lock timeout or a deadlock abort,
// after which the transaction can simply be run again.
func lockFailure(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "55P03", "40P01": // lock_not_available, deadlock_detected
		return true
	}
	return false
}

// quoteLiteral quotes s as an SQL string literal. Tenant ids are validated
// before they get here; the quoting is a second line of defence.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
