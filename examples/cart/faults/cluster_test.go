//go:build faults

package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgserver"
)

// cluster is a throwaway PostgreSQL on 127.0.0.1 that the suite can stop
// and start again on the same data directory and port, or freeze.
type cluster struct {
	srv     *pgserver.Server
	dataDir string
	// restarted is the postmaster this suite started after a restart (nil
	// while the one pgserver started is running), and exited is closed
	// once it has been reaped.
	restarted *exec.Cmd
	exited    chan struct{}
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{MaxConnections: 100})
	require.NoError(t, err)
	c := &cluster{srv: srv, dataDir: filepath.Join(srv.Dir(), "data")}
	t.Cleanup(func() {
		c.thaw() // in case a test failed while the cluster was frozen
		if c.restarted != nil {
			c.stopRestarted(t)
		}
		if err := srv.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return c
}

// connString names the "postgres" database as the superuser.
func (c *cluster) connString() string { return c.srv.ConnString() }

// postmasterPID reads the running postmaster's pid from postmaster.pid.
func (c *cluster) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// restart stops PostgreSQL with a fast shutdown (sessions are
// disconnected), waits for it to exit, and starts it again with the same
// command line (data directory, port, settings) and user.
func (c *cluster) restart(t *testing.T) {
	t.Helper()
	pid, err := c.postmasterPID()
	require.NoError(t, err)
	args, err := procCmdline(pid)
	require.NoError(t, err)
	require.True(t, filepath.Base(args[0]) == "postgres" && slices.Contains(args, "-D"),
		"the postmaster's command line %q is not the one it was started with", args)
	uid, gid, err := procOwner(pid)
	require.NoError(t, err)

	require.NoError(t, syscall.Kill(pid, syscall.SIGINT))
	if c.restarted != nil {
		waitClosed(t, c.exited, 60*time.Second, "postgres to exit after a fast shutdown")
	} else {
		require.Eventually(t, func() bool { return !alive(pid) }, 60*time.Second, 20*time.Millisecond,
			"postgres (pid %d) did not exit after a fast shutdown", pid)
	}

	logFile, err := os.OpenFile(c.srv.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = c.srv.Dir()
	cmd.Env = []string{"LC_ALL=C", "TZ=UTC"} // as internal/pgserver starts it
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if uid != uint32(os.Geteuid()) {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: gid}
	}
	err = cmd.Start()
	_ = logFile.Close()
	require.NoError(t, err)
	c.restarted, c.exited = cmd, make(chan struct{})
	exited := c.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	c.waitReady(t)
}

func (c *cluster) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgconn.Connect(ctx, c.connString())
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL did not accept connections again within a minute: %v", err)
		}
		select {
		case <-c.exited:
			t.Fatalf("the restarted PostgreSQL exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *cluster) stopRestarted(t *testing.T) {
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}} {
		_ = c.restarted.Process.Signal(step.sig)
		select {
		case <-c.exited:
			return
		case <-time.After(step.wait):
		}
	}
	t.Errorf("the restarted postgres (pid %d) did not exit", c.restarted.Process.Pid)
}

// frozen lists the processes freeze stopped, postmaster first.
var frozen []int

// freeze sends SIGSTOP to this cluster's postmaster and then to each of
// its children (found by parent pid in /proc), and to nothing else. The
// postmaster is stopped first, so it forks no new child meanwhile.
func (c *cluster) freeze(t *testing.T) []int {
	t.Helper()
	pid, err := c.postmasterPID()
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	frozen = append(frozen[:0], pid)
	children, err := childrenOf(pid)
	require.NoError(t, err)
	for _, child := range children {
		if err := syscall.Kill(child, syscall.SIGSTOP); err == nil {
			frozen = append(frozen, child)
		}
	}
	return frozen
}

// thaw continues what freeze stopped: the children first, then the
// postmaster.
func (c *cluster) thaw() {
	for i := len(frozen) - 1; i >= 0; i-- {
		_ = syscall.Kill(frozen[i], syscall.SIGCONT)
	}
	frozen = frozen[:0]
}

// procCmdline is a process's argv.
func procCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("pid %d has an empty command line", pid)
	}
	return args, nil
}

// procOwner is a process's real uid and gid.
func procOwner(pid int) (uid, gid uint32, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	field := func(name string) (uint32, error) {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, name+":"); ok {
				f := strings.Fields(rest)
				if len(f) == 0 {
					break
				}
				n, err := strconv.ParseUint(f[0], 10, 32)
				return uint32(n), err
			}
		}
		return 0, fmt.Errorf("no %s in /proc/%d/status", name, pid)
	}
	if uid, err = field("Uid"); err != nil {
		return 0, 0, err
	}
	gid, err = field("Gid")
	return uid, gid, err
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == pid {
			out = append(out, child)
		}
	}
	return out, nil
}

// alive reports whether pid still exists (and is not a zombie).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

func waitClosed(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
