package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupehq/troupe/internal/freeport"
)

// ClusterConfig configures RunCluster: the cluster measurements, with
// every member a child process running MemberBinary.
type ClusterConfig struct {
	// DatabaseURL names the server the scratch databases go on; "" starts
	// a throwaway one.
	DatabaseURL string
	// MemberBinary is the troupe binary the members run (as
	// "MemberBinary __bench-member ..."). Required; build it without the
	// race detector.
	MemberBinary string
	// StaticMembers makes the members find each other through a static
	// member list instead of the PostgreSQL membership provider.
	StaticMembers bool
	// Runs is how many times each measurement runs; the report gives
	// medians. Defaults to 3.
	Runs int
	// Duration and Warmup of every run. Default 10s and 2s.
	Duration, Warmup time.Duration
	// LatencySenders are the senders of the local and remote latency runs
	// on member 1, each on Carts carts of its own. Defaults to 4.
	LatencySenders int
	// Senders is the total of senders of a throughput run, split evenly
	// over the members. Defaults to 48.
	Senders int
	// Tenants, Carts and Items shape the throughput workload as in Config.
	// Default 4, 64 and 5.
	Tenants, Carts, Items int
	// Progress receives one line per step. Defaults to io.Discard.
	Progress io.Writer
	// Logger receives the members' start-up failures. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

func (c ClusterConfig) withDefaults() ClusterConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Runs, 3)
	def(&c.LatencySenders, 4)
	def(&c.Senders, 48)
	def(&c.Tenants, 4)
	def(&c.Carts, 64)
	def(&c.Items, 5)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ClusterConfig) validate() error {
	if c.MemberBinary == "" {
		return configError("MemberBinary", "is required")
	}
	for name, v := range map[string]int{"Runs": c.Runs, "LatencySenders": c.LatencySenders, "Senders": c.Senders,
		"Tenants": c.Tenants, "Carts": c.Carts, "Items": c.Items} {
		if v < 0 {
			return configError(name, "must be positive, got %d", v)
		}
	}
	if c.Duration < 0 || c.Warmup < 0 {
		return configError("Duration/Warmup", "must not be negative")
	}
	return nil
}

// benchMember is one member process.
type benchMember struct {
	n       int
	cluster string // its cluster listener
	health  string // its health endpoint (static member list only)
	control string // its control API
	cmd     *exec.Cmd
	exited  chan struct{}
	stderr  *bytes.Buffer
	mu      *sync.Mutex
}

// lockedWriter serialises writes to a buffer the process writes to.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (m *benchMember) log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stderr.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

func freeAddr() (string, error) {
	return freeport.Addr()
}

// cluster is the running members of one measurement.
type cluster struct {
	members []*benchMember
	client  *http.Client
}

// startCluster starts n members on db and waits until each knows all n.
func (c ClusterConfig) startCluster(ctx context.Context, db *database, n int) (cl *cluster, err error) {
	cl = &cluster{client: &http.Client{Timeout: 5 * time.Minute}}
	defer func() {
		if err != nil {
			_ = cl.stop()
		}
	}()
	name := fmt.Sprintf("bench-%s", db.name)
	for i := range n {
		m := &benchMember{n: i + 1, exited: make(chan struct{}), stderr: &bytes.Buffer{}, mu: &sync.Mutex{}}
		if m.cluster, err = freeAddr(); err != nil {
			return cl, err
		}
		if m.control, err = freeAddr(); err != nil {
			return cl, err
		}
		if c.StaticMembers {
			if m.health, err = freeAddr(); err != nil {
				return cl, err
			}
		}
		cl.members = append(cl.members, m)
	}
	var static []string
	if c.StaticMembers {
		for _, m := range cl.members {
			static = append(static, m.health)
		}
	}
	for _, m := range cl.members {
		m.cmd = exec.Command(c.MemberBinary, MemberCommand, "-database-url", db.url, "-cluster-name", name,
			"-cluster-addr", m.cluster, "-control", m.control, "-members", strings.Join(static, ","), "-health", m.health)
		m.cmd.Stdout, m.cmd.Stderr = lockedWriter{m.mu, m.stderr}, lockedWriter{m.mu, m.stderr}
		m.cmd.SysProcAttr = memberProcAttr()
		if err := m.cmd.Start(); err != nil {
			m.cmd = nil
			return cl, fmt.Errorf("start member %d (%s): %w", m.n, c.MemberBinary, err)
		}
		go func(m *benchMember) { _ = m.cmd.Wait(); close(m.exited) }(m)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, m := range cl.members {
		for {
			st, err := cl.status(ctx, m)
			if err == nil && len(st.Members) == n {
				break
			}
			select {
			case <-m.exited:
				return cl, fmt.Errorf("member %d exited while starting:\n%s", m.n, m.log())
			case <-ctx.Done():
				return cl, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return cl, fmt.Errorf("member %d did not see the %d members within 2 minutes (%v, %+v):\n%s", m.n, n, err, st, m.log())
			}
		}
	}
	return cl, nil
}

func (cl *cluster) status(ctx context.Context, m *benchMember) (memberStatus, error) {
	var st memberStatus
	err := cl.call(ctx, m, http.MethodGet, "/status", nil, &st)
	return st, err
}

func (cl *cluster) call(ctx context.Context, m *benchMember, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+m.control+path, body)
	if err != nil {
		return err
	}
	resp, err := cl.client.Do(req)
	if err != nil {
		return fmt.Errorf("member %d: %s %s: %w", m.n, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("member %d: %s %s answered %d: %s", m.n, method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, out)
}

// cpu is the members' CPU time so far, summed.
func (cl *cluster) cpu(ctx context.Context) (float64, error) {
	var sum float64
	for _, m := range cl.members {
		st, err := cl.status(ctx, m)
		if err != nil {
			return 0, err
		}
		sum += st.CPUSeconds
	}
	return sum, nil
}

// load runs reqs[i] on member i at once and returns the results.
func (cl *cluster) load(ctx context.Context, reqs []loadRequest) ([]loadResult, error) {
	res := make([]loadResult, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cl.call(ctx, cl.members[i], http.MethodPost, "/load", req, &res[i])
		}()
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

// stop stops every member gracefully (SIGTERM), killing one that takes
// over 30 s, and reports a member that did not exit cleanly.
func (cl *cluster) stop() error {
	var errs []error
	for _, m := range cl.members {
		if m.cmd != nil {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, m := range cl.members {
		if m.cmd == nil {
			continue
		}
		select {
		case <-m.exited:
		case <-time.After(30 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
			errs = append(errs, fmt.Errorf("member %d did not stop within 30s of SIGTERM:\n%s", m.n, m.log()))
			continue
		}
		if st := m.cmd.ProcessState; st != nil && !st.Success() {
			errs = append(errs, fmt.Errorf("member %d exited with %s:\n%s", m.n, st, m.log()))
		}
	}
	cl.client.CloseIdleConnections()
	return errors.Join(errs...)
}
