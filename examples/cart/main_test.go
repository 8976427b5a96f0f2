package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// onWrite, when set, sees every write.
	onWrite func(p []byte)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(p)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkDemoOutput checks what every demo prints: the scenario's answers,
// the read model and the trace tree command → append → projection write.
func checkDemoOutput(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{
		"← 201 {\"message\":\"Checked out\"",
		`"total":40,`,
		"← 409 {\"error\":\"Cart is not active\"}",
		"== The read model",
		`"isCheckedOut":true,"isCancelled":false,"total":40,"orderId":"`,
		`"currency":"EUR","items":[{"sku":"SKU-789","name":"Item 789","unitPrice":9.99,"quantity":3}],"isCheckedOut":false,"isCancelled":true}`,
		"== The trace of one command",
		"Demo finished.",
	} {
		require.Contains(t, out, want)
	}
	// The tree: the HTTP span at the root, the command under it, the
	// append and the projection batch under the command.
	require.Regexp(t, regexp.MustCompile(`(?m)^PUT /api/tenants/\{tenantId\}/carts/\{cartId\}/items \[server\].*status_code=201$`), out)
	require.Regexp(t, regexp.MustCompile(`(?m)^└── cart\.AddItem .*outcome=ok  events=1$`), out)
	require.Regexp(t, regexp.MustCompile(`(?m)^    ├── append cart .*outcome=ok  events=1  version=2  expected_version=1$`), out)
	require.Regexp(t, regexp.MustCompile(`(?m)^    └── projection carts \[consumer\] .*outcome=ok  events=1`), out)
}

func TestDemoOnPostgres(t *testing.T) {
	t.Parallel()
	var out, errOut syncBuffer
	err := run(testCtx(t), []string{"-demo"}, &out, &errOut, env(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)}))
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	checkDemoOutput(t, out.String())
	require.Contains(t, out.String(), "store: PostgreSQL at DATABASE_URL")
	// The carts table itself, and the SQL under the append and the
	// projection write.
	require.Regexp(t, regexp.MustCompile(`(?m)^cart_id\s+currency\s+total\s+order_id\s+is_checked_out\s+is_cancelled\s+items_json$`), out.String())
	require.Regexp(t, regexp.MustCompile(`(?m)^[0-9a-f-]{36}\s+USD\s+40\s+[0-9a-f-]{36}\s+true\s+false\s+\[\{"sku": "SKU-123"`), out.String())
	require.Regexp(t, regexp.MustCompile(`(?m)^    │   └── WITH \[client\]`), out.String())
	// The projection batch covers the read-model writes and the checkpoint.
	require.Regexp(t, regexp.MustCompile(`(?m)^        [├└]── batch start \[client\]`), out.String())
	// The checkpoint's UPDATE goes with the lease check in one batch.
	require.Regexp(t, regexp.MustCompile(`(?m)^        │   [├└]── UPDATE \[client\]`), out.String())
	require.Regexp(t, regexp.MustCompile(`(?m)^        └── COMMIT \[client\]`), out.String())
	require.Empty(t, errOut.String(), "the demo logs nothing at its default level")
}

func TestDemoInMemory(t *testing.T) {
	t.Parallel()
	var out, errOut syncBuffer
	err := run(testCtx(t), []string{"-demo", "-store=memory"}, &out, &errOut, env(nil))
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	checkDemoOutput(t, out.String())
	require.NotContains(t, out.String(), "Table carts")
	require.Empty(t, errOut.String())
}

// `make demo` on a machine with no database running: the demo starts a
// throwaway PostgreSQL and removes it.
func TestDemoStartsThrowawayPostgres(t *testing.T) {
	t.Parallel()
	var out, errOut syncBuffer
	err := run(testCtx(t), []string{"-demo"}, &out, &errOut, env(nil))
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	require.Contains(t, out.String(), "DATABASE_URL is not set: starting a throwaway PostgreSQL")
	m := regexp.MustCompile(`PostgreSQL is up on 127\.0\.0\.1:(\d+)`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	checkDemoOutput(t, out.String())
	// Stopped on exit: nothing listens on its port any more.
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	var d net.Dialer
	_, err = d.DialContext(ctx, "tcp", "127.0.0.1:"+m[1])
	require.Error(t, err, "the throwaway server still accepts connections")
}

// Serving: the banner names the address (from PORT) and the curl lines;
// cancelling the context (what SIGINT and SIGTERM do) shuts down cleanly.
func TestServeAndShutdown(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "postgres"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"PORT": "0"}
			if store == "postgres" {
				vars["DATABASE_URL"] = pgtest.NewDatabase(t)
			}
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			var out, errOut syncBuffer
			done := make(chan error, 1)
			go func() { done <- run(ctx, []string{"-store=" + store, "-log-level=warn"}, &out, &errOut, env(vars)) }()

			urlRE := regexp.MustCompile(`listening on (http://localhost:\d+)\n`)
			var base string
			deadline := time.Now().Add(time.Minute)
			for base == "" {
				if m := urlRE.FindStringSubmatch(out.String()); m != nil {
					base = m[1]
					break
				}
				select {
				case err := <-done:
					t.Fatalf("run returned early: %v\n%s\n%s", err, out.String(), errOut.String())
				case <-time.After(10 * time.Millisecond):
				}
				require.True(t, time.Now().Before(deadline), "no banner after a minute: %s", out.String())
			}
			require.Contains(t, out.String(), "curl -s -X POST "+base+`/api/tenants -d '{"tenantId":"acme","name":"Acme Inc."}'`)
			require.Contains(t, out.String(), "Stop with Ctrl+C.")

			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/tenants", strings.NewReader(`{"tenantId":"acme","name":"Acme"}`))
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", body)
			tr.CloseIdleConnections()

			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, errOut.String())
			case <-time.After(time.Minute):
				t.Fatal("run did not return after cancel")
			}
			require.Contains(t, out.String(), "Shutting down…")
			require.Empty(t, errOut.String())
		})
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-store=mysql"}, {"-log-level=loud"}, {"-nope"}, {"extra"}} {
		var out, errOut syncBuffer
		err := run(testCtx(t), args, &out, &errOut, env(nil))
		require.True(t, errors.Is(err, errUsage), "%v: %v", args, err)
		require.NotEmpty(t, errOut.String(), "%v says what is wrong", args)
	}
	var out, errOut syncBuffer
	err := run(testCtx(t), []string{"-h"}, &out, &errOut, env(nil))
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, errOut.String(), "-demo")
}
