package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// newStore returns a store on a fresh, migrated database and its pool.
func newStore(t testing.TB) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(context.Background(), pool))
	s, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return s, pool
}

// events returns n events of type typ with bodies {"n":1}, {"n":2}, ….
func events(typ string, n int) []store.EventData {
	out := make([]store.EventData, n)
	for i := range out {
		out[i] = store.EventData{Type: typ, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i+1))}
	}
	return out
}

// withIDs gives events the message ids prefix-1, prefix-2, ….
func withIDs(prefix string, evs []store.EventData) []store.EventData {
	for i := range evs {
		evs[i].MessageID = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return evs
}

// requireConflict checks that err is a *store.VersionConflictError with
// the given fields, and the stream's incarnation when it exists.
func requireConflict(t testing.TB, err error, stream store.StreamID, partition string, expected store.ExpectedVersion, actual store.Version, exists bool) {
	t.Helper()
	require.ErrorIs(t, err, store.ErrVersionConflict)
	var vc *store.VersionConflictError
	require.ErrorAs(t, err, &vc)
	got := *vc
	require.Equal(t, exists, got.ActualIncarnation != 0, "the conflict reports the incarnation of an existing stream")
	got.ActualIncarnation = 0
	require.Equal(t, store.VersionConflictError{Stream: stream, Partition: partition, Expected: expected, Actual: actual, ActualExists: exists}, got)
}

// requireConsistent checks a stream's rows directly: its version equals its
// number of live messages, at positions 1..version, and returns the version.
func requireConsistent(t testing.TB, pool *pgxpool.Pool, stream store.StreamID, partition string) store.Version {
	t.Helper()
	var version, count, minPos, maxPos int64
	err := pool.QueryRow(context.Background(), `
SELECT coalesce((SELECT stream_position FROM streams WHERE stream_id = $1 AND partition = $2 AND NOT is_archived), 0),
       count(*), coalesce(min(stream_position), 0), coalesce(max(stream_position), 0)
FROM messages WHERE stream_id = $1 AND partition = $2 AND NOT is_archived`, string(stream), partition).
		Scan(&version, &count, &minPos, &maxPos)
	require.NoError(t, err)
	require.Equal(t, version, count, "stream %q: version vs live messages", stream)
	if count > 0 {
		require.Equal(t, int64(1), minPos, "stream %q: first position", stream)
		require.Equal(t, count, maxPos, "stream %q: positions are not contiguous", stream)
	}
	return store.Version(version)
}

// waitFor polls cond every few milliseconds until it returns true or the
// deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// lockWaiters returns how many sessions of the pool's database wait for a
// lock.
func lockWaiters(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	require.NoError(t, err)
	return n
}

// isConflict reports whether err is a version conflict.
func isConflict(err error) bool { return errors.Is(err, store.ErrVersionConflict) }
