package bench

import (
	"context"
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

// The log's last position is the highest transaction id, compared as a
// number: 10000 comes after 9999 (as text it would not).
func TestLastPositionOrdersNumerically(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, pool))
	_, err := pool.Exec(ctx, `INSERT INTO streams (stream_id, partition, stream_type, stream_position) VALUES ('s', 'default_partition', 'cart', 2);
INSERT INTO messages (stream_id, stream_position, partition, message_data, message_type, message_id, global_position, transaction_id)
VALUES ('s', 1, 'default_partition', '{}', 'T', 'a', 7, '9999'), ('s', 2, 'default_partition', '{}', 'T', 'b', 8, '10000')`)
	require.NoError(t, err)
	pos, n, err := lastPosition(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	require.Equal(t, store.Position{TransactionID: 10000, GlobalPosition: 8}, pos)
}

// The group-commit ceiling's script, run by pgbench for real: every
// transaction appends one event to each of 10 consecutive streams, at the
// next position of each, and concurrent clients on overlapping streams
// neither deadlock nor skip a position.
func TestPgbenchGroupScript(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := findPgbench(ctx)
	require.NoError(t, err, "pgbench ships with the PostgreSQL server packages the tests run on")
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	require.NoError(t, postgres.Migrate(ctx, pool))
	_, err = pool.Exec(ctx, `INSERT INTO streams (stream_id, partition, stream_type, stream_position)
SELECT 'pgb-' || g, 'default_partition', 'cart', 0 FROM generate_series(1, $1::int) AS g`, pgbenchStreams)
	require.NoError(t, err)
	body, err := pgbenchBody()
	require.NoError(t, err)

	const clients, perClient = 4, 25
	tps, err := runPgbench(ctx, bin, url, groupScript(body), clients, 2, "-t", perClient)
	require.NoError(t, err)
	require.Positive(t, tps)

	var messages, streams, gaps int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT stream_id) FROM messages`).Scan(&messages, &streams))
	require.Equal(t, int64(clients*perClient*pgbenchGroupStreams), messages, "10 events per transaction")
	require.LessOrEqual(t, streams, int64(pgbenchStreams))
	// Each stream's positions are 1..n with its row at n.
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM streams s
WHERE s.stream_position <> (SELECT count(*) FROM messages m WHERE m.stream_id = s.stream_id)
   OR s.stream_position <> coalesce((SELECT max(stream_position) FROM messages m WHERE m.stream_id = s.stream_id), 0)`).Scan(&gaps))
	require.Zero(t, gaps, "every stream's positions are contiguous and its row is at its last position")
}
