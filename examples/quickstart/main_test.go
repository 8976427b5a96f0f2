package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), pgtest.NewDatabase(t), &out))
	require.Equal(t, "deposit 30: stream version 1\n"+
		"deposit 12: stream version 2\n"+
		"deposit -5: rejected: amount must be positive, got -5\n"+
		"read model: acc-1 total=42 deposits=2\n", out.String())
}
