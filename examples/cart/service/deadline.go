package service

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// withDeadline bounds the request's context by Config.RequestTimeout, so
// every database call a handler makes (tenant look-up, command, read-model
// read or wait) gives up at the same deadline.
func (s *Service) withDeadline(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

// unavailability says why err means the database could not serve the
// request, or "" when it is some other failure: "deadline" when the
// request's deadline passed (or the database timed out), "unreachable" when
// no connection could be made or the one in use broke (PostgreSQL stopped,
// restarting, refusing connections or out of connection slots).
func unavailability(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		pgconn.Timeout(err) || ctx.Err() != nil {
		return "deadline"
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		pgconn.SafeToRetry(err):
		return "unreachable"
	case errors.As(err, &pgErr):
		// Class 08: connection exception; 57P01-03: the server is shutting
		// down, crashed or is starting up; 53300: no connection slot left.
		if strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "53300" {
			return "unreachable"
		}
	}
	return ""
}

// unavailable is the 503 answer for a request the database could not
// serve; why is what unavailability returned.
func (s *Service) unavailable(why, what string) *apiError {
	if why == "deadline" {
		return errorf(http.StatusServiceUnavailable, "%s did not finish within the request deadline (%s); try again", what, s.cfg.RequestTimeout)
	}
	return errorf(http.StatusServiceUnavailable, "the database is unreachable (while %s); try again", what)
}
