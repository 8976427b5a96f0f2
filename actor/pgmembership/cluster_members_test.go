package pgmembership_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/freeport"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// These tests run cluster members as child processes (the member binary
// actor/internal/clustermember, built without -race: protoactor-go's
// cluster and remoting code has data races of its own) with
// -provider=postgres, and drive them over HTTP.

const (
	heartbeat = 200 * time.Millisecond
	ttl       = 1500 * time.Millisecond
)

// buildMember builds the member binary into a directory of the test.
func buildMember(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "clustermember")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/troupehq/troupe/actor/internal/clustermember")
	cmd.Env = withoutEnv("GOFLAGS=", "CGO_ENABLED=") // no -race, no coverage
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build the member binary: %s", out)
	return bin
}

// withoutEnv is the environment minus the variables with these prefixes.
func withoutEnv(prefixes ...string) []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv, p) })
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	require.NoError(t, err)
	return addr
}

// proc is a member process.
type proc struct {
	addr, http, log string
	cmd             *exec.Cmd
	exited          chan struct{}
}

var client = &http.Client{Timeout: 10 * time.Second}

func startProc(t *testing.T, bin, dsn string) *proc {
	t.Helper()
	p := &proc{addr: freeAddr(t), http: freeAddr(t), exited: make(chan struct{})}
	p.log = filepath.Join(t.TempDir(), "member.log")
	logFile, err := os.Create(p.log)
	require.NoError(t, err)
	defer logFile.Close()
	p.cmd = exec.Command(bin, "-cluster", "pg", "-provider", "postgres", "-addr", p.addr, "-http", p.http, "-db", dsn,
		"-heartbeat", heartbeat.String(), "-ttl", ttl.String(), "-request-timeout", "1s", "-log-level", "info")
	p.cmd.Env = withoutEnv("OTEL_", "DATABASE_URL=")
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("log of member %s:\n%s", p.addr, b)
		}
	})
	return p
}

func (p *proc) get(path string, out any) error {
	resp, err := client.Get("http://" + p.http + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (p *proc) members() ([]string, error) {
	var r struct{ Members []string }
	err := p.get("/members", &r)
	slices.Sort(r.Members)
	return r.Members, err
}

// waitMembers waits until p serves and knows exactly want.
func (p *proc) waitMembers(t *testing.T, within time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	var last any
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ms, err := p.members()
		if err == nil && slices.Equal(ms, want) {
			return
		}
		last = ms
		if err != nil {
			last = err
		}
	}
	t.Fatalf("member %s does not see %v within %v: %v", p.addr, want, within, last)
}

type sendReply struct {
	Member string `json:"member"`
	Count  int    `json:"count"`
	Error  string `json:"error"`
}

// send posts one increment of stream (tenant acme) with command id.
func (p *proc) send(stream, id string) (sendReply, error) {
	var rep sendReply
	body, _ := json.Marshal(map[string]any{"tenant": "acme", "stream": stream, "by": 1, "commandId": id})
	resp, err := client.Post("http://"+p.http+"/send", "application/json", bytes.NewReader(body))
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("POST /send: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return rep, err
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("send %s from %s: %s", stream, p.addr, rep.Error)
	}
	return rep, nil
}

func (p *proc) owner(t *testing.T, stream string) string {
	t.Helper()
	var r struct{ Owner string }
	require.NoError(t, p.get("/owner?tenant=acme&stream="+stream, &r))
	return r.Owner
}

func memberRows(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	var addrs []string
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT coalesce(array_agg(host || ':' || port ORDER BY host, port), '{}') FROM cluster_members WHERE cluster = 'pg'`).Scan(&addrs))
	return addrs
}

// Three members on the PostgreSQL provider: a command sent from every
// member reaches its stream's owner; after kill -9 of one member the
// survivors drop it within the TTL and a few heartbeats, and commands for
// every stream (those the dead member owned included) work again from
// both survivors, each acknowledged command in the log once. The
// survivors' graceful leave deletes their rows.
func TestClusterOnPostgresProvider(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(t.Context(), pool))
	bin := buildMember(t)

	procs := []*proc{startProc(t, bin, dsn), startProc(t, bin, dsn), startProc(t, bin, dsn)}
	all := []string{procs[0].addr, procs[1].addr, procs[2].addr}
	for _, p := range procs {
		p.waitMembers(t, 30*time.Second, all...)
	}
	require.ElementsMatch(t, all, memberRows(t, pool))

	// Every member sends to every stream; the owners are spread over the
	// members and every member agrees on them.
	streams := make([]string, 12)
	owners := map[string]string{}
	for i := range streams {
		streams[i] = fmt.Sprintf("s%d", i)
		owners[streams[i]] = procs[0].owner(t, streams[i])
		for _, p := range procs[1:] {
			require.Equal(t, owners[streams[i]], p.owner(t, streams[i]), streams[i])
		}
	}
	acked := map[string]bool{}
	sent := 0
	for _, s := range streams {
		for j, p := range procs {
			id := fmt.Sprintf("%s-before-%d", s, j)
			rep, err := p.send(s, id)
			require.NoError(t, err)
			require.Equal(t, j+1, rep.Count, "%s from %s", s, p.addr)
			acked[id] = true
			sent++
		}
	}
	t.Logf("%d commands, owners %v", sent, owners)

	// kill -9 the member owning the most streams.
	victim := procs[0]
	for _, p := range procs {
		if countOwned(owners, p.addr) > countOwned(owners, victim.addr) {
			victim = p
		}
	}
	require.Positive(t, countOwned(owners, victim.addr))
	var survivors []*proc
	var alive []string
	for _, p := range procs {
		if p != victim {
			survivors, alive = append(survivors, p), append(alive, p.addr)
		}
	}
	// The first command for a stream the dead member owned, sent from a
	// survivor from the moment of the kill and again until it is answered,
	// while the survivors' member lists are watched.
	var orphan string
	for _, s := range streams {
		if owners[s] == victim.addr {
			orphan = s
			break
		}
	}
	killed := time.Now()
	require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
	servedAt := make(chan time.Duration, 1)
	go func() {
		defer close(servedAt)
		for time.Since(killed) < 30*time.Second {
			if _, err := survivors[0].send(orphan, "orphan-first"); err == nil {
				servedAt <- time.Since(killed)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	<-victim.exited
	for _, p := range survivors {
		p.waitMembers(t, 30*time.Second, alive...)
	}
	dropped := time.Since(killed)
	// A command sent once the survivors dropped the member, for another
	// of its streams, from the other survivor.
	var orphan2 string
	for _, s := range streams {
		if owners[s] == victim.addr && s != orphan {
			orphan2 = s
		}
	}
	var afterDrop time.Duration
	if orphan2 != "" {
		began := time.Now()
		_, err := survivors[1].send(orphan2, "orphan-after-drop")
		require.NoError(t, err)
		afterDrop = time.Since(began)
		acked["orphan-after-drop"] = true
	}
	served, ok := <-servedAt
	require.True(t, ok, "the survivors do not serve %s", orphan)
	acked["orphan-first"] = true
	t.Logf("survivors dropped the killed member after %v; a command for its stream %s sent from the kill on was answered after %v; "+
		"one for its stream %q sent after the drop took %v (TTL %v, heartbeat %v)", dropped, orphan, served, orphan2, afterDrop, ttl, heartbeat)
	// Expiry counts from the last heartbeat, at most one interval before
	// the kill; the survivors see it at their next heartbeat; the rest is
	// slack for a machine shared with other tests.
	require.Less(t, dropped, ttl+8*heartbeat)
	require.ElementsMatch(t, alive, memberRows(t, pool), "the killed member's row is deleted")

	for _, s := range streams {
		for j, p := range survivors {
			id := fmt.Sprintf("%s-after-%d", s, j)
			_, err := p.send(s, id)
			require.NoError(t, err)
			acked[id] = true
		}
		require.NotEqual(t, victim.addr, survivors[0].owner(t, s))
		require.Equal(t, survivors[0].owner(t, s), survivors[1].owner(t, s))
	}
	counts := map[string]int{}
	rows, err := pool.Query(t.Context(), `SELECT message_metadata->>'commandId', count(*) FROM messages WHERE message_metadata ? 'commandId' GROUP BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		counts[id] = n
	}
	require.NoError(t, rows.Err())
	for id := range acked {
		require.Equal(t, 1, counts[id], "acknowledged command %s", id)
	}

	// Graceful leave: SIGTERM; the member deletes its row.
	require.NoError(t, survivors[1].cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-survivors[1].exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the member did not leave within 30s of SIGTERM")
	}
	require.Zero(t, survivors[1].cmd.ProcessState.ExitCode())
	require.Equal(t, []string{survivors[0].addr}, memberRows(t, pool))
	survivors[0].waitMembers(t, ttl, survivors[0].addr)
}

func countOwned(owners map[string]string, addr string) int {
	n := 0
	for _, o := range owners {
		if o == addr {
			n++
		}
	}
	return n
}
