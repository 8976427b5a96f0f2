package projection

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// transientCodes are the SQLSTATEs (besides class 08, connection
// exception) of database errors that go away when the same transaction is
// simply tried again later: they come from contention, load or the server's
// availability, not from what the handler asked for.
var transientCodes = map[string]bool{
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
	"55P03": true, // lock_not_available: NOWAIT, lock_timeout
	"57014": true, // query_canceled: statement_timeout (a cancelled context is the runner's own)
	"57P01": true, // admin_shutdown: the backend was terminated
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: the server is starting up
	"53000": true, // insufficient_resources
	"53100": true, // disk_full
	"53200": true, // out_of_memory
	"53300": true, // too_many_connections
}

// transient reports whether err, returned by a handler, is a database
// failure that is not the handler's making: a transient SQLSTATE (see
// transientCodes and class 08) or a lost or unreachable connection. Such
// errors are retried like any infrastructure error and never count as an
// attempt of the event. Any other error — the handler's own, or a database
// error that would recur (a constraint violation, a type error, a missing
// table) — does.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || transientCodes[pgErr.Code]
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		pgconn.SafeToRetry(err)
}
