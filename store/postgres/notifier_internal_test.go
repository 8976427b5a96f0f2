package postgres

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// With a Notifier, the pool's statements are the usual ones without
// pg_notify, and the transaction's statements keep it.
func TestQuietAppendStatements(t *testing.T) {
	t.Parallel()
	for _, exp := range []store.ExpectedVersion{store.Any, store.NoStream, store.StreamExists, store.Exact(0), store.Exact(3)} {
		opts := store.AppendOptions{ExpectedVersion: exp}
		loud, loudArgs := appendStatementFor(false, false, opts)
		quiet, quietArgs := appendStatementFor(false, true, opts)
		require.Contains(t, loud, "pg_notify", "%v", exp)
		require.NotContains(t, quiet, "pg_notify", "%v", exp)
		require.Equal(t, strings.Replace(loud, appendNotifySQL, appendQuietSQL, 1), quiet, "%v", exp)
		require.Equal(t, loudArgs, quietArgs, "%v", exp)
		inTx, _ := appendStatementFor(true, true, opts)
		require.Contains(t, inTx, "pg_notify", "%v", exp)
	}
}
