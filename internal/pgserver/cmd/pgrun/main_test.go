package main

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// childEnv makes this test binary, re-run by pgrun as its command, act as
// the command: connect to DATABASE_URL and exit 0, or exit 1 on failure.
const childEnv = "TROUPE_PGRUN_CHILD"

func TestChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := os.Getenv("DATABASE_URL")
	require.NotEmpty(t, url)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
}

func TestRunGivesTheCommandADatabase(t *testing.T) {
	t.Setenv(childEnv, "1")
	var stderr bytes.Buffer
	code := run([]string{"--", os.Args[0], "-test.run=^TestChild$", "-test.count=1"}, &stderr)
	require.Equal(t, 0, code, stderr.String())
	require.Contains(t, stderr.String(), "PostgreSQL ready on 127.0.0.1:")
}

func TestRunPassesTheExitStatusThrough(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args []string
		want int
	}{
		"success":   {[]string{"-quiet", "--", "true"}, 0},
		"exit code": {[]string{"-quiet", "--", "sh", "-c", "exit 3"}, 3},
		"signal":    {[]string{"-quiet", "--", "sh", "-c", "kill -TERM $$"}, 128 + 15},
		"not found": {[]string{"-quiet", "--", "/nonexistent/command"}, 127},
		"no cmd":    {[]string{"-quiet"}, exitUsage},
		"bad flag":  {[]string{"-nope", "--", "true"}, exitUsage},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			require.Equal(t, tc.want, run(tc.args, &stderr), stderr.String())
		})
	}
}

func TestRunKeepsTheLogWhenAsked(t *testing.T) {
	t.Parallel()
	logPath := t.TempDir() + "/server.log"
	var stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-quiet", "-log", logPath, "--", "true"}, &stderr), stderr.String())
	require.Empty(t, stderr.String(), "-quiet printed something")
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.Contains(t, string(b), "database system is shut down")
}
