package bench

import (
	"context"
	"os"
	"testing"
	"time"

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
