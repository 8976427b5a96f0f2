package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/store"
)

// SQLSTATE classes whose errors prove that the failed statement wrote
// nothing and that its input (22, 23) or the statement itself (42) was at
// fault, not the connection: retrying the same statement fails again.
const (
	classIntegrityViolation = "23"
	classSyntaxOrAccess     = "42"
)

// sqlstateClass returns the class (first two characters) of the SQLSTATE
// of the PostgreSQL error inside err, or "".
func sqlstateClass(err error) string {
	pgErr, ok := pgError(err)
	if !ok || len(pgErr.Code) != 5 {
		return ""
	}
	return pgErr.Code[:2]
}

// notSent reports whether err proves that a request never reached
// PostgreSQL: no connection could be made, or pgx failed before sending
// any byte (pgconn.SafeToRetry).
func notSent(err error) bool {
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr) || pgconn.SafeToRetry(err)
}

// unavailable wraps err, an error that proves nothing was sent, so that it
// matches store.ErrUnavailable.
func unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: nothing was sent: %w", what, store.ErrUnavailable, err)
}

// nulEscape reports whether the JSON text b holds the escape \u0000 in a
// string, which PostgreSQL's jsonb can't store (SQLSTATE 22P05).
func nulEscape(b []byte) bool {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character (an escaped backslash among them)
	}
	return false
}
