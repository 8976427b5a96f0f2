package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/cli"
)

// troupe is package cli with no projection registered, plus bench.
func TestCommands(t *testing.T) {
	t.Parallel()
	r := ok(t, invocation{}, "--help")
	for _, cmd := range []string{"migrate", "tenants", "streams", "projections", "bench"} {
		require.Regexp(t, `(?m)^  `+cmd+`\b`, r.stdout)
	}
	require.Contains(t, r.stdout, "Usage: troupe <command>")
	r = ok(t, invocation{}, "bench", "-h")
	require.Contains(t, r.stdout, "--quick")
	require.Contains(t, r.stdout, "--database-url")
	r = ok(t, invocation{}, "projections", "rebuild", "--help")
	require.Contains(t, r.stdout, "Registered in this binary: none")

	r = troupe(t, invocation{}, "bench", "--tenants=-1")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "troupe: --tenants must be positive")
	r = troupe(t, invocation{}, "--database-url", "postgres://127.0.0.1:1/x", "projections", "rebuild", "carts")
	require.Equal(t, cli.ExitError, r.code)
	require.Contains(t, r.stderr, `troupe: error: projection "carts" is not registered in this binary (registered: none)`)
}
