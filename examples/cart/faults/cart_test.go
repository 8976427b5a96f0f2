//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/freeport"
)

// buildCart builds the cart binary (without the race detector) into dir.
func buildCart(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "cart")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/troupehq/troupe/examples/cart")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build the cart binary: %s", out)
	return bin
}

// freeAddr picks a free TCP port on 127.0.0.1.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	require.NoError(t, err)
	return addr
}

// cartProc is a running cart binary.
type cartProc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// startCart runs bin on addr against dsn (DATABASE_URL is always set, so
// the binary never starts a PostgreSQL of its own) and waits until it
// serves.
func startCart(t *testing.T, bin, addr, dsn, logPath string) *cartProc {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(bin, "-addr", addr, "-request-timeout", requestTimeout.String(), "-log-level", "warn")
	env := []string{"DATABASE_URL=" + dsn}
	for _, kv := range os.Environ() {
		// No telemetry export, no second database, no port from the caller.
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "PORT=") &&
			!strings.HasPrefix(kv, "REQUEST_TIMEOUT=") && !strings.HasPrefix(kv, "DB_MAX_CONNS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	_ = logFile.Close()
	require.NoError(t, err)
	p := &cartProc{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t) })

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get("http://" + addr + "/api/tenants")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("the cart binary exited before serving:\n%s", p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cart binary did not serve within a minute (last error %v):\n%s", err, p.logTail())
		}
	}
	out, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.NotContains(t, string(out), "starting a throwaway PostgreSQL", "the cart binary started its own server")
	return p
}

// kill sends SIGKILL and waits for the process.
func (p *cartProc) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	waitClosed(t, p.exited, 10*time.Second, "the killed cart binary to be reaped")
}

// stop asks for a graceful shutdown (SIGTERM), then kills.
func (p *cartProc) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(30 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	t.Errorf("the cart binary did not stop within 30s of SIGTERM:\n%s", p.logTail())
}

func (p *cartProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
