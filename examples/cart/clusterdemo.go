package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/internal/freeport"
)

// clusterDemoEnv is what the cluster demo runs against.
type clusterDemoEnv struct {
	dbURL     string // the members' DATABASE_URL
	storeInfo string
	pool      *pgxpool.Pool // the demo's own, for the checks
	// bin is the cart binary the members run (CART_MEMBER_BINARY).
	// Defaults to this program (os.Executable).
	bin string
	// members is how many members to start. Defaults to 3.
	members int
	// static makes the members find each other through a static member
	// list (-cluster-members) instead of the PostgreSQL provider.
	static bool
}

// memberStartTimeout bounds a member's start-up (and the wait until it
// knows every other member); memberStopTimeout its graceful stop.
const (
	memberStartTimeout = 2 * time.Minute
	memberStopTimeout  = 30 * time.Second
)

// member is one cart process of the demo.
type member struct {
	n       int    // 1, 2, 3
	http    string // host:port of its HTTP API
	cluster string // host:port of its cluster listener
	health  string // host:port of its health endpoint (static member list only)
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func (m *member) base() string { return "http://" + m.http }

// stop sends SIGTERM and waits for a clean exit; past memberStopTimeout
// the member is killed and stop says so.
func (m *member) stop() error {
	select {
	case <-m.exited:
		return m.exitErr()
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return m.exitErr()
	case <-time.After(memberStopTimeout):
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	return fmt.Errorf("member %d did not stop within %s of SIGTERM; killed:\n%s", m.n, memberStopTimeout, m.logTail())
}

func (m *member) exitErr() error {
	if st := m.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("member %d exited with %s:\n%s", m.n, st, m.logTail())
	}
	return nil
}

func (m *member) logTail() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// freeLocalAddr returns a 127.0.0.1 address with a port nothing listens on
// now.
func freeLocalAddr() (string, error) {
	return freeport.Addr()
}

// memberEnv is the environment of a member: this process's, without what
// would send it elsewhere (another database, port or cluster, telemetry
// export), plus DATABASE_URL.
func memberEnv(dbURL string, extra ...string) []string {
	env := []string{"DATABASE_URL=" + dbURL}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "OTEL_") || strings.HasPrefix(name, "CLUSTER_") ||
			slices.Contains([]string{"DATABASE_URL", "PORT", "REQUEST_TIMEOUT", "DB_MAX_CONNS"}, name) {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startMembers starts the members, each with its log in dir, and waits
// until every one serves HTTP and knows all the others. On error the
// members already started are stopped.
func startMembers(ctx context.Context, out io.Writer, env clusterDemoEnv, dir, name string) (ms []*member, err error) {
	defer func() {
		if err != nil {
			stopMembers(ms)
			ms = nil
		}
	}()
	for i := range env.members {
		m := &member{n: i + 1, logPath: filepath.Join(dir, fmt.Sprintf("member-%d.log", i+1))}
		if m.http, err = freeLocalAddr(); err != nil {
			return ms, err
		}
		if m.cluster, err = freeLocalAddr(); err != nil {
			return ms, err
		}
		if env.static {
			if m.health, err = freeLocalAddr(); err != nil {
				return ms, err
			}
		}
		ms = append(ms, m)
	}
	var extra []string
	if env.static {
		addrs := make([]string, len(ms))
		for i, m := range ms {
			addrs[i] = m.health
		}
		extra = append(extra, "CLUSTER_MEMBERS="+strings.Join(addrs, ","))
	}
	launch := func(m *member) error {
		logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		args := []string{"-addr", m.http, "-cluster-name", name, "-cluster-addr", m.cluster, "-log-level", "warn", "-db-max-conns", "8"}
		if m.health != "" {
			args = append(args, "-cluster-health", m.health)
		}
		m.cmd = exec.Command(env.bin, args...)
		m.cmd.Env = memberEnv(env.dbURL, extra...)
		m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
		m.cmd.SysProcAttr = memberProcAttr()
		err = m.cmd.Start()
		_ = logFile.Close()
		if err != nil {
			m.cmd = nil
			return fmt.Errorf("start member %d (%s): %w", m.n, env.bin, err)
		}
		m.exited = make(chan struct{})
		go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(m.cmd, m.exited)
		fmt.Fprintf(out, "Started member %d: HTTP on %s, cluster listener on %s (pid %d, log %s)\n",
			m.n, m.base(), m.cluster, m.cmd.Process.Pid, m.logPath)
		return nil
	}
	for _, m := range ms {
		if err := launch(m); err != nil {
			return ms, err
		}
	}
	began := time.Now()
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	deadline := began.Add(memberStartTimeout)
	for _, m := range ms {
		relaunched := 0
		for {
			view, err := clusterView(ctx, client, m)
			if err == nil && len(view.Members) == len(ms) {
				break
			}
			if err == nil {
				err = fmt.Errorf("it knows %d members: %v", len(view.Members), view.Members)
			}
			select {
			case <-m.exited:
				// A port picked free was taken meanwhile by another
				// process: start the member again on other ports (its
				// address is in the PostgreSQL membership, not in a list).
				if !env.static && relaunched < 3 && strings.Contains(m.logTail(), "address already in use") {
					relaunched++
					if m.http, err = freeLocalAddr(); err != nil {
						return ms, err
					}
					if m.cluster, err = freeLocalAddr(); err != nil {
						return ms, err
					}
					if err := launch(m); err != nil {
						return ms, err
					}
					continue
				}
				return ms, fmt.Errorf("member %d exited while starting:\n%s", m.n, m.logTail())
			case <-ctx.Done():
				return ms, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return ms, fmt.Errorf("member %d was not ready within %s (%v):\n%s", m.n, memberStartTimeout, err, m.logTail())
			}
		}
	}
	fmt.Fprintf(out, "Every member serves HTTP and knows the %d members (%s).\n\n", len(ms), time.Since(began).Round(10*time.Millisecond))
	return ms, nil
}

// clusterView asks a member which members it knows.
func clusterView(ctx context.Context, client *http.Client, m *member) (service.ClusterView, error) {
	var v service.ClusterView
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base()+"/api/cluster", nil)
	if err != nil {
		return v, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return v, err
	}
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("GET /api/cluster answered %d: %s", resp.StatusCode, body)
	}
	return v, json.Unmarshal(body, &v)
}

// stopMembers stops every member at once, gracefully, and returns what
// went wrong.
func stopMembers(ms []*member) error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		if m.cmd == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = m.stop() }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// clusterClient calls the members' APIs and prints each exchange with the
// member that served it and the member that owns the cart.
type clusterClient struct {
	ctx     context.Context
	out     io.Writer
	http    *http.Client
	members []*member
	names   map[string]string // cluster address → "member n"
	writes  int               // cart writes
	remote  int               // cart writes served by a member that does not own the cart
}

type memberReply struct {
	reply
	member, owner string
}

func (c *clusterClient) call(m *member, method, path, body string, quiet bool) (memberReply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, m.base()+path, rd)
	if err != nil {
		return memberReply{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return memberReply{}, fmt.Errorf("member %d: %s %s: %w", m.n, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return memberReply{}, fmt.Errorf("member %d: %s %s: %w", m.n, method, path, err)
	}
	r := memberReply{reply: reply{status: resp.StatusCode, raw: bytes.TrimSpace(raw)},
		member: resp.Header.Get(service.MemberHeader), owner: resp.Header.Get(service.OwnerHeader)}
	_ = json.Unmarshal(raw, &r.body)
	if want := m.cluster; r.member != want {
		return r, fmt.Errorf("member %d: %s %s was answered by %q, want %s", m.n, method, path, r.member, want)
	}
	if r.owner != "" {
		c.writes++
		if r.owner != r.member {
			c.remote++
		}
	}
	if !quiet {
		fmt.Fprintf(c.out, "→ member %d: %s %s", m.n, method, path)
		if body != "" {
			fmt.Fprintf(c.out, " %s", body)
		}
		if r.owner != "" {
			where := "local"
			if r.owner != r.member {
				where = "sent on to " + c.name(r.owner)
			}
			fmt.Fprintf(c.out, "\n  (the cart's owner is %s: %s)", c.name(r.owner), where)
		}
		fmt.Fprintf(c.out, "\n  ← %d %s\n", r.status, r.raw)
	}
	return r, nil
}

func (c *clusterClient) name(addr string) string {
	if n, ok := c.names[addr]; ok {
		return n
	}
	return addr
}

// expect calls the API and fails the demo unless it answers want.
func (c *clusterClient) expect(want int, m *member, method, path, body string) (memberReply, error) {
	r, err := c.call(m, method, path, body, false)
	if err == nil && r.status != want {
		err = fmt.Errorf("member %d: %s %s answered %d, want %d: %s", m.n, method, path, r.status, want, r.raw)
	}
	return r, err
}

// runClusterDemo starts env.members members of one cluster on 127.0.0.1,
// plays carts through every member, checks the answers, the read model and
// the log, stops the members and returns nil when every check passed.
func runClusterDemo(ctx context.Context, out io.Writer, env clusterDemoEnv) (err error) {
	if env.members == 0 {
		env.members = 3
	}
	if env.bin == "" {
		if env.bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find this program to start the members: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "troupe-cluster-demo-")
	if err != nil {
		return err
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := "cart-demo-" + hex.EncodeToString(suffix)
	provider := "membership in PostgreSQL"
	if env.static {
		provider = "a static member list"
	}
	fmt.Fprintf(out, "\n== Troupe cart cluster demo: %d members of cluster %q on 127.0.0.1 (%s; store: %s)\n\n",
		env.members, name, provider, env.storeInfo)
	ms, err := startMembers(ctx, out, env, dir, name)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "\nStopping the members (SIGTERM: each hands its carts over and drains)…")
		if serr := stopMembers(ms); serr != nil {
			err = errors.Join(err, serr)
			fmt.Fprintf(out, "The members' logs are in %s.\n", dir)
			return
		}
		fmt.Fprintln(out, "Every member exited cleanly.")
		if err == nil {
			_ = os.RemoveAll(dir)
			fmt.Fprintln(out, "\nCluster demo finished: every check passed.")
		} else {
			fmt.Fprintf(out, "The members' logs are in %s.\n", dir)
		}
	}()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &clusterClient{ctx: ctx, out: out, http: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		members: ms, names: map[string]string{}}
	for _, m := range ms {
		c.names[m.cluster] = fmt.Sprintf("member %d", m.n)
	}
	tenant := "cluster-" + hex.EncodeToString(suffix)
	ids, err := playCarts(c, tenant)
	if err != nil {
		return err
	}
	if err := checkClusterLog(ctx, out, env.pool, tenant, ids); err != nil {
		return err
	}
	if c.remote == 0 {
		return fmt.Errorf("none of the %d cart writes was sent on to another member", c.writes)
	}
	fmt.Fprintf(out, "\n%d cart writes, %d of them served by a member that does not own the cart.\n", c.writes, c.remote)
	return nil
}
