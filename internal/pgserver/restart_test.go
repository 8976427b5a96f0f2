package pgserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgserver"
)

// Restart keeps the data and the address: a table created before is there
// after, on the same port, and the old sessions are gone.
func TestRestartKeepsDataAndPort(t *testing.T) {
	t.Parallel()
	s := startServer(t, pgserver.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := connect(t, s.ConnString())
	_, err := before.Exec(ctx, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
	require.NoError(t, err)
	port := s.Port()

	require.NoError(t, s.Restart(ctx))
	require.Equal(t, port, s.Port())
	require.Error(t, before.Ping(ctx), "sessions of the old process are closed")
	after := connect(t, s.ConnString())
	var n int
	require.NoError(t, after.QueryRow(ctx, "SELECT n FROM kept").Scan(&n))
	require.Equal(t, 42, n)
	require.NoError(t, after.Close(ctx))
	require.NoError(t, s.Stop())
}
