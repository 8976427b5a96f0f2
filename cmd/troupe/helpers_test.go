package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/cli"
	"github.com/troupehq/troupe/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// result is what one in-process run of the command produced.
type result struct {
	code   int
	stdout string
	stderr string
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// invocation describes one run: its environment.
type invocation struct {
	env map[string]string
}

// troupe runs the command in-process with args.
func troupe(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	code := run(testCtx(t), args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return inv.env[k] })
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs the command and requires exit status 0.
func ok(t testing.TB, inv invocation, args ...string) result {
	t.Helper()
	r := troupe(t, inv, args...)
	require.Equal(t, cli.ExitOK, r.code, "troupe %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// testCtx returns a context ending with the test (or after two minutes).
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
