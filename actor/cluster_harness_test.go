package actor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/freeport"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// The cluster tests run members as child processes of the test binary,
// built without -race: protoactor-go's cluster and remoting code has data
// races of its own, and the test process itself never joins a cluster. They
// drive the members over HTTP (actor/internal/clustermember). One test
// (cluster_race_test.go) builds the members with -race and fails on a race
// in Troupe's code.

var memberBin struct {
	once sync.Once
	path string
	err  error
}

// memberRaceBin is the member binary built with -race, for the one test
// that runs members under the race detector and tells Troupe's races from
// upstream's.
var memberRaceBin struct {
	once sync.Once
	path string
	err  error
}

// buildMember builds the member binary once per test binary, without the
// race detector and with a clean environment.
func buildMember(t testing.TB) string {
	t.Helper()
	memberBin.once.Do(func() { memberBin.path, memberBin.err = goBuildMember() })
	require.NoError(t, memberBin.err)
	return memberBin.path
}

// buildMemberRace builds the member binary with -race, once per test
// binary.
func buildMemberRace(t testing.TB) string {
	t.Helper()
	memberRaceBin.once.Do(func() { memberRaceBin.path, memberRaceBin.err = goBuildMember("-race") })
	require.NoError(t, memberRaceBin.err)
	return memberRaceBin.path
}

func goBuildMember(flags ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "troupe-clustermember-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "clustermember")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(append([]string{"build"}, flags...), "-o", path, "github.com/troupehq/troupe/actor/internal/clustermember")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Env = buildEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return path, fmt.Errorf("go build %s the member binary: %v: %s", strings.Join(flags, " "), err, out)
	}
	return path, nil
}

// removeMemberBin removes the built member binaries (TestMain calls it).
func removeMemberBin() {
	for _, p := range []string{memberBin.path, memberRaceBin.path} {
		if p != "" {
			_ = os.RemoveAll(filepath.Dir(p))
		}
	}
}

// buildEnv is the environment of `go build`: the caller's minus anything
// that would turn the race detector or coverage on.
func buildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOFLAGS=") || strings.HasPrefix(kv, "CGO_ENABLED=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// memberEnv is a member's environment: no telemetry export, no database
// but the one named by -db.
func memberEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort returns a free 127.0.0.1 address.
func freePort(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	require.NoError(t, err)
	return addr
}

// clusterDB returns a fresh migrated database and a pool on it for the
// test's own queries.
func clusterDB(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(context.Background(), pool))
	return dsn, pool
}

// member is a running member process.
type member struct {
	t       testing.TB
	addr    string // gRPC, the member's cluster address
	health  string
	http    string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	env     []string    // extra environment
	bin     string      // the binary launch starts
	args    []string    // its flags
	listed  int         // how many members its static list names
	stopped atomic.Bool // killed or terminated by the test
}

// kill kills the member with SIGKILL and waits for it to exit.
func (m *member) kill() {
	m.t.Helper()
	m.stopped.Store(true)
	require.NoError(m.t, m.cmd.Process.Kill())
	<-m.exited
}

// memberSpec describes the members of a test cluster.
type memberSpec struct {
	n     int
	args  func(i int) []string // extra flags of member i
	group func(i int) []int    // the members member i lists (default: all)
	bin   string               // the member binary (default: buildMember's)
	env   []string             // extra environment of every member
}

// startCluster starts n members against dsn and waits until each sees
// the members it lists.
func startCluster(t testing.TB, dsn string, spec memberSpec) []*member {
	t.Helper()
	ms := planCluster(t, dsn, spec)
	for _, m := range ms {
		m.launch()
	}
	for _, m := range ms {
		m.waitMembers(m.listed)
	}
	return ms
}

// planCluster picks the addresses and flags of the members of spec
// without starting them (launch starts one).
func planCluster(t testing.TB, dsn string, spec memberSpec) []*member {
	t.Helper()
	bin := spec.bin
	if bin == "" {
		bin = buildMember(t)
	}
	ms := make([]*member, spec.n)
	for i := range ms {
		ms[i] = &member{t: t, addr: freePort(t), health: freePort(t), http: freePort(t), env: spec.env, bin: bin,
			logPath: filepath.Join(t.TempDir(), fmt.Sprintf("member-%d.log", i))}
	}
	group := func(i int) []int {
		if spec.group != nil {
			return spec.group(i)
		}
		all := make([]int, spec.n)
		for j := range all {
			all[j] = j
		}
		return all
	}
	for i, m := range ms {
		var hs []string
		for _, j := range group(i) {
			hs = append(hs, ms[j].health)
		}
		m.listed = len(hs)
		m.args = []string{"-cluster", "test", "-addr", m.addr, "-health", m.health, "-members", strings.Join(hs, ","),
			"-db", dsn, "-http", m.http, "-refresh", "200ms", "-request-timeout", "1s", "-log-level", "warn"}
		if spec.args != nil {
			m.args = append(m.args, spec.args(i)...)
		}
	}
	return ms
}

// launch starts a planned member.
func (m *member) launch() { m.start(m.bin, m.args) }

func (m *member) start(bin string, args []string) {
	t := m.t
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Env = append(memberEnv(), m.env...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, m.cmd.Start())
	_ = logFile.Close()
	m.exited = make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		if m.alive() {
			_ = m.cmd.Process.Kill()
		}
		<-m.exited
		clusterHTTP.CloseIdleConnections()
		if t.Failed() {
			b, _ := os.ReadFile(m.logPath)
			t.Logf("log of member %s:\n%s", m.addr, tail(string(b), 4000))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (m *member) alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// waitMembers waits until the member serves and sees n members.
func (m *member) waitMembers(n int) {
	m.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if !m.alive() {
			b, _ := os.ReadFile(m.logPath)
			m.t.Fatalf("member %s exited while starting:\n%s", m.addr, tail(string(b), 4000))
		}
		var r struct{ Members []string }
		if err := m.get("/members", &r); err == nil {
			if len(r.Members) == n {
				return
			}
			last = fmt.Sprint(r.Members)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.t.Fatalf("member %s does not see %d members: %s", m.addr, n, last)
}

// terminate sends SIGTERM and waits for the member to exit; it returns
// the exit error (nil for status 0).
func (m *member) terminate(timeout time.Duration) error {
	m.t.Helper()
	m.stopped.Store(true)
	require.NoError(m.t, m.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-m.exited:
		if code := m.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("member %s exited with status %d", m.addr, code)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("member %s did not exit %v after SIGTERM", m.addr, timeout)
	}
}

var clusterHTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func (m *member) get(path string, out any) error {
	resp, err := clusterHTTP.Get("http://" + m.http + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b.String())
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// clusterSend and clusterReply mirror the member binary's POST /send.
type clusterSend struct {
	Tenant    string `json:"tenant,omitempty"`
	Stream    string `json:"stream"`
	Op        string `json:"op,omitempty"`
	By        int    `json:"by,omitempty"`
	CommandID string `json:"commandId,omitempty"`
}

type clusterReply struct {
	Member    string         `json:"member"`
	Version   int64          `json:"version"`
	Count     int            `json:"count"`
	Events    int            `json:"events"`
	Duplicate bool           `json:"duplicate"`
	Error     string         `json:"error"`
	Matches   map[string]any `json:"matches"`
	Micros    int64          `json:"micros"`
}

// send posts a command; a transport failure (the member is gone) is the
// error, a command failure is in clusterReply.Error.
func (m *member) send(ctx context.Context, r clusterSend) (clusterReply, error) {
	var rep clusterReply
	body, _ := json.Marshal(r)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+m.http+"/send", bytes.NewReader(body))
	if err != nil {
		return rep, err
	}
	resp, err := clusterHTTP.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("POST /send: %s", resp.Status)
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

func (m *member) owner(tenant, stream string) string {
	m.t.Helper()
	var r struct{ Owner string }
	require.NoError(m.t, m.get("/owner?tenant="+tenant+"&stream="+stream, &r))
	return r.Owner
}

func (m *member) activations() map[string]int {
	m.t.Helper()
	var r struct{ Activations map[string]int }
	require.NoError(m.t, m.get("/activations", &r))
	return r.Activations
}

type clusterState struct {
	Count   int            `json:"count"`
	Version int64          `json:"version"`
	Error   string         `json:"error"`
	Matches map[string]any `json:"matches"`
}

func (m *member) state(tenant, stream string) clusterState {
	m.t.Helper()
	var r clusterState
	require.NoError(m.t, m.get("/state?tenant="+tenant+"&stream="+stream, &r))
	return r
}

// commandCounts counts the events of every command id in the log.
func commandCounts(t testing.TB, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT message_metadata->>'commandId', count(*) FROM messages WHERE message_metadata ? 'commandId' GROUP BY 1`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		out[id] = n
	}
	require.NoError(t, rows.Err())
	return out
}
