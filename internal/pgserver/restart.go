package pgserver

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Restart stops postgres with a fast shutdown (open sessions are
// disconnected; what they committed is kept) and starts it again on the
// same data directory, port and settings, returning once it accepts
// connections again. It is for tests of how clients live through a
// database restart. ctx bounds the start (one minute when it has no
// deadline). Restart must not run concurrently with Stop or another
// Restart; after a failed Restart only Stop may be called.
func (s *Server) Restart(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	began := time.Now()
	if err := s.shutdown(); err != nil {
		return fmt.Errorf("pgserver: restart: %w", err)
	}
	if err := s.launch(ctx, s.opts, s.port, s.cred); err != nil {
		return fmt.Errorf("pgserver: restart: %w", err)
	}
	s.logger.DebugContext(ctx, "pgserver_restarted", slog.Int("port", s.port), slog.Duration("took", time.Since(began)))
	return nil
}
