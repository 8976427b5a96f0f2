package postgres_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.EventStore {
		s, _ := newStore(t)
		return s
	})
}

func TestConformanceUpcasting(t *testing.T) {
	t.Parallel()
	storetest.RunUpcasting(t, func(t *testing.T, u store.Upcaster) store.EventStore {
		pool := pgtest.NewPool(t)
		require.NoError(t, postgres.Migrate(t.Context(), pool))
		s, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Upcaster: u})
		require.NoError(t, err)
		return s
	})
}
