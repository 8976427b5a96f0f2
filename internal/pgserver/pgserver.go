package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/internal/freeport"
)

// Superuser is the role initdb creates; ConnString connects as it.
const Superuser = "postgres"

// ErrExited is returned (wrapped, with the server log's tail) when the
// postgres process exits before it accepts connections.
var ErrExited = errors.New("postgres exited before accepting connections")

// Options configure [Start]. The zero value is ready to use.
type Options struct {
	// BinDir is the directory holding initdb and postgres.
	// Defaults to the result of [FindBinDir].
	BinDir string

	// Port is the TCP port to listen on at 127.0.0.1.
	// Defaults to a free port picked at start (retried if another process
	// takes it first).
	Port int

	// MaxConnections is the server's max_connections, sized for many
	// parallel test pools. Defaults to 300.
	MaxConnections int

	// SharedBuffers is the server's shared_buffers.
	// Defaults to "64MB".
	SharedBuffers string

	// Settings are extra server settings passed as -c name=value; they
	// override the defaults above.
	// Defaults to none.
	Settings map[string]string

	// RunAs is the system user initdb and postgres run as when this process
	// runs as root (PostgreSQL refuses to run as root). Ignored otherwise.
	// Defaults to "postgres" if that user exists, else "nobody".
	RunAs string

	// TempDir is the directory under which the server's own directory
	// (data, socket, log) is created. When RunAs applies, that user must be
	// able to traverse it.
	// Defaults to /dev/shm when it is a tmpfs with at least 1 GiB free
	// (CREATE DATABASE there takes milliseconds instead of a few hundred on
	// a disk), else os.TempDir().
	TempDir string

	// LogPath is the file the server writes its log to; it is kept after
	// Stop. Defaults to postgres.log in the server's directory, removed by
	// Stop.
	LogPath string

	// Logger receives debug records about starting and stopping.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// defaultStartTimeout bounds Start when ctx has no deadline.
const defaultStartTimeout = time.Minute

// portAttempts is how many free ports Start tries when Port is 0 and the
// picked port is taken before postgres binds it.
const portAttempts = 5

func (o Options) withDefaults(ctx context.Context) (Options, error) {
	if o.BinDir == "" {
		dir, err := FindBinDir(ctx)
		if err != nil {
			return o, err
		}
		o.BinDir = dir
	} else if !hasServerBinaries(o.BinDir) {
		return o, fmt.Errorf("pgserver: Options.BinDir %q has no initdb and postgres: %w", o.BinDir, ErrBinariesNotFound)
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 300
	}
	if o.SharedBuffers == "" {
		o.SharedBuffers = "64MB"
	}
	if o.TempDir == "" {
		if dir, ok := memoryTempDir(); ok {
			o.TempDir = dir
		} else {
			o.TempDir = os.TempDir()
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, o.validate()
}

func (o Options) validate() error {
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("pgserver: Options.Port %d is not a TCP port", o.Port)
	}
	if o.MaxConnections < 1 {
		return fmt.Errorf("pgserver: Options.MaxConnections %d must be positive", o.MaxConnections)
	}
	for name := range o.Settings {
		if name == "" || strings.ContainsAny(name, "= \t\n") {
			return fmt.Errorf("pgserver: Options.Settings has an invalid setting name %q", name)
		}
	}
	return nil
}

// Server is a running throwaway PostgreSQL cluster. Its methods are safe for
// concurrent use.
type Server struct {
	dir     string // everything Start created; removed by Stop
	dataDir string
	sockDir string
	logPath string
	port    int
	logger  *slog.Logger
	opts    Options             // as Start resolved them, for Restart
	cred    *syscall.Credential // the user postgres runs as, or nil

	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error         // cmd.Wait's result, readable after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start creates a fresh cluster and starts postgres, returning once it
// accepts connections. ctx bounds the whole start (one minute when it has no
// deadline). On error nothing is left running and the directories are
// removed.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts, err := opts.withDefaults(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	cred, err := credential(opts.RunAs)
	if err != nil {
		return nil, err
	}

	sweepStale(ctx, opts.TempDir, opts.Logger)
	began := time.Now()
	dir, err := makeDirs(opts.TempDir, cred)
	if err != nil {
		return nil, err
	}
	s := &Server{
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		sockDir: filepath.Join(dir, "run"),
		logPath: opts.LogPath,
		logger:  opts.Logger,
		opts:    opts,
		cred:    cred,
	}
	if s.logPath == "" {
		s.logPath = filepath.Join(dir, "postgres.log")
	}
	fail := func(err error) (*Server, error) {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("pgserver: removing %s: %w", dir, rmErr))
		}
		return nil, err
	}

	if err := initdb(ctx, opts.BinDir, s.dataDir, dir, cred); err != nil {
		return fail(err)
	}
	initialized := time.Now()

	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freeport.Port(); err != nil {
				return fail(err)
			}
		}
		err = s.launch(ctx, opts, port, cred)
		if err == nil {
			break
		}
		if opts.Port != 0 || attempt >= portAttempts || !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "could not bind") {
			return fail(err)
		}
		s.logger.DebugContext(ctx, "pgserver_port_taken", slog.Int("port", port), slog.Int("attempt", attempt))
	}
	s.logger.DebugContext(ctx, "pgserver_started",
		slog.String("dir", dir),
		slog.Int("port", s.port),
		slog.Duration("initdb", initialized.Sub(began)),
		slog.Duration("start", time.Since(initialized)))
	return s, nil
}

// credential resolves the user to run as when this process is root, or nil.
func credential(runAs string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	names := []string{runAs}
	if runAs == "" {
		names = []string{"postgres", "nobody"}
	}
	var errs []error
	for _, name := range names {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, uerr := strconv.ParseUint(u.Uid, 10, 32)
		gid, gerr := strconv.ParseUint(u.Gid, 10, 32)
		if uerr != nil || gerr != nil {
			errs = append(errs, fmt.Errorf("user %s has a non-numeric uid %q or gid %q", name, u.Uid, u.Gid))
			continue
		}
		if uid == 0 {
			errs = append(errs, fmt.Errorf("user %s is root", name))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, fmt.Errorf("pgserver: running as root and no unprivileged user to run PostgreSQL as (Options.RunAs): %w", errors.Join(errs...))
}

// makeDirs creates the server's private directory with its unix socket
// directory, owned by cred's user when set.
func makeDirs(tempDir string, cred *syscall.Credential) (string, error) {
	dir, err := os.MkdirTemp(tempDir, dirPrefix)
	if err != nil {
		return "", fmt.Errorf("pgserver: creating the server directory under %s: %w", tempDir, err)
	}
	sock := filepath.Join(dir, "run")
	err = os.Mkdir(sock, 0o700)
	if err == nil && cred != nil {
		for _, p := range []string{dir, sock} {
			if err = os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				break
			}
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("pgserver: preparing the server directory %s: %w", dir, err)
	}
	return dir, nil
}

// childEnv is the whole environment of initdb and postgres: a fixed locale
// and time zone, nothing inherited (no PG* variables leaking in).
func childEnv() []string {
	return []string{"LC_ALL=C", "TZ=UTC"}
}

// initdb creates the cluster in dataDir.
func initdb(ctx context.Context, binDir, dataDir, workDir string, cred *syscall.Credential) error {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"--pgdata="+dataDir,
		"--username="+Superuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
		"--no-instructions",
	)
	cmd.Dir = workDir
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr(cred)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgserver: running initdb in %s: %w\n%s", dataDir, err, tail(out.Bytes()))
	}
	return nil
}

// launch starts postgres on port and waits until it accepts connections.
// On error the process is gone.
func (s *Server) launch(ctx context.Context, opts Options, port int, cred *syscall.Credential) error {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": s.sockDir,
		"max_connections":         strconv.Itoa(opts.MaxConnections),
		"shared_buffers":          opts.SharedBuffers,
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"logging_collector":       "off",
		"log_destination":         "stderr",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	args := []string{"-D", s.dataDir}
	for _, k := range names {
		args = append(args, "-c", k+"="+settings[k])
	}

	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgserver: opening the server log %s: %w", s.logPath, err)
	}
	// Deliberately not CommandContext: ctx bounds the start, not the
	// server's life.
	cmd := exec.Command(filepath.Join(opts.BinDir, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr(cred)
	err = cmd.Start()
	// The child holds its own descriptor from here on.
	closeErr := logFile.Close()
	if err != nil {
		return fmt.Errorf("pgserver: starting postgres: %w", err)
	}
	s.cmd = cmd
	s.port = port
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if closeErr != nil {
		return s.abort(fmt.Errorf("pgserver: closing the server log %s: %w", s.logPath, closeErr))
	}
	if err := s.waitReady(ctx); err != nil {
		return s.abort(err)
	}
	return nil
}

// abort kills a server that never became ready and returns err.
func (s *Server) abort(err error) error {
	if stopErr := s.shutdown(); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	return err
}

// waitReady polls a connection until one succeeds, the process exits or ctx
// ends.
func (s *Server) waitReady(ctx context.Context) error {
	const pollEvery = 20 * time.Millisecond
	ticker := time.NewTicker(pollEvery)
	defer ticker.Stop()
	var lastErr error
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(attemptCtx, s.ConnString())
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		lastErr = err
		select {
		case <-s.exited:
			return fmt.Errorf("pgserver: waiting for postgres on port %d: %w (%v)\n%s", s.port, ErrExited, s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("pgserver: waiting for postgres on port %d: %w (last connection error: %v)\n%s", s.port, ctx.Err(), lastErr, s.logTail())
		case <-ticker.C:
		}
	}
}

// logTail returns the last lines of the server log, for error messages.
func (s *Server) logTail() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return fmt.Sprintf("(server log unavailable: %v)", err)
	}
	defer f.Close()
	const maxBytes = 4096
	if info, err := f.Stat(); err == nil && info.Size() > maxBytes {
		if _, err := f.Seek(info.Size()-maxBytes, io.SeekStart); err != nil {
			return fmt.Sprintf("(server log unreadable: %v)", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(server log unreadable: %v)", err)
	}
	return "server log " + s.logPath + " (tail):\n" + tail(b)
}

// tail returns at most the last 20 lines of b.
func tail(b []byte) string {
	const maxLines = 20
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}

// ConnString is a URL connecting to the "postgres" database as the
// superuser over TCP, e.g. postgres://postgres@127.0.0.1:54321/postgres?sslmode=disable.
func (s *Server) ConnString() string {
	return s.ConnStringFor("postgres")
}

// ConnStringFor is like ConnString but names database instead.
func (s *Server) ConnStringFor(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (s *Server) Port() int { return s.port }

// SocketDir is the directory holding the server's unix socket.
func (s *Server) SocketDir() string { return s.sockDir }

// Dir is the server's private directory (data, socket, log), removed by Stop.
func (s *Server) Dir() string { return s.dir }

// LogPath is the file the server writes its log to.
func (s *Server) LogPath() string { return s.logPath }

// Stop asks postgres for a fast shutdown (SIGINT: open sessions are
// disconnected), escalating to an immediate shutdown and then SIGKILL if it
// does not exit in time, waits for the process, and removes the server's
// directory. Calling Stop again returns the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		began := time.Now()
		err := s.shutdown()
		if rmErr := os.RemoveAll(s.dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("pgserver: removing %s: %w", s.dir, rmErr))
		}
		s.stopErr = err
		s.logger.Debug("pgserver_stopped", slog.String("dir", s.dir), slog.Duration("took", time.Since(began)))
	})
	return s.stopErr
}

// shutdown stops the process and waits for it.
func (s *Server) shutdown() error {
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{
		{syscall.SIGINT, 30 * time.Second},  // fast shutdown
		{syscall.SIGQUIT, 10 * time.Second}, // immediate shutdown
		{syscall.SIGKILL, 10 * time.Second},
	}
	for _, step := range steps {
		select {
		case <-s.exited:
			return nil
		default:
		}
		if err := s.cmd.Process.Signal(step.sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("pgserver: sending %v to postgres (pid %d): %w", step.sig, s.cmd.Process.Pid, err)
		}
		timer := time.NewTimer(step.wait)
		select {
		case <-s.exited:
			timer.Stop()
			return nil
		case <-timer.C:
			s.logger.Debug("pgserver_stop_escalating", slog.String("signal", step.sig.String()), slog.Int("pid", s.cmd.Process.Pid))
		}
	}
	return fmt.Errorf("pgserver: postgres (pid %d) did not exit after SIGKILL", s.cmd.Process.Pid)
}
