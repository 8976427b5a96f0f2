package actor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// The projection tests of cluster mode run members as child processes of
// the member binary actor/internal/clustermember, built without -race
// (protoactor-go's cluster and remoting code has data races of its own),
// each with the projection hook (-projection).

// pmMember is one member process.
type pmMember struct {
	addr, health, http string
	cmd                *exec.Cmd
	exited             chan struct{}
	logPath            string
}

// pmStart starts n members of one cluster on connString, each running the
// projection name, and waits until every member knows all n.
func pmStart(t *testing.T, bin, connString, name string, n int) []*pmMember {
	t.Helper()
	ms := pmPlan(t, n)
	for _, m := range ms {
		m.launch(t, bin, connString, name, ms)
	}
	pmWaitMembers(t, ms, n)
	return ms
}

// pmPlan picks the addresses of n members.
func pmPlan(t *testing.T, n int) []*pmMember {
	t.Helper()
	ms := make([]*pmMember, n)
	for i := range ms {
		ms[i] = &pmMember{addr: freePort(t), health: freePort(t), http: freePort(t), logPath: filepath.Join(t.TempDir(), fmt.Sprintf("member-%d.log", i))}
	}
	return ms
}

// launch starts m as a member of the cluster of all (whose health
// endpoints form the static member list), running the projection name.
func (m *pmMember) launch(t *testing.T, bin, connString, name string, all []*pmMember) {
	t.Helper()
	healths := make([]string, len(all))
	for i, o := range all {
		healths[i] = o.health
	}
	args := []string{"-cluster", "projections", "-addr", m.addr, "-health", m.health, "-members", strings.Join(healths, ","),
		"-db", connString, "-http", m.http, "-projection", name, "-log-level", "warn"}
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = m.cmd.Start()
	_ = logFile.Close()
	require.NoError(t, err)
	m.exited = make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() { m.stop(t) })
}

// pmWaitMembers waits until every member of ms knows n members.
func pmWaitMembers(t *testing.T, ms []*pmMember, n int) {
	t.Helper()
	for _, m := range ms {
		pmWait(t, fmt.Sprintf("member %s to know %d members", m.addr, n), func() bool {
			var r struct{ Members []string }
			if m.get("/members", &r) != nil {
				select {
				case <-m.exited:
					t.Fatalf("member %s exited:\n%s", m.addr, m.logTail())
				default:
				}
				return false
			}
			return len(r.Members) == n
		})
	}
}

// pmOwner is the member protoactor's rendezvous placement gives the
// projection called name among ms.
func pmOwner(t *testing.T, name string, ms []*pmMember) string {
	t.Helper()
	members := make(cluster.Members, len(ms))
	for i, m := range ms {
		host, port, err := net.SplitHostPort(m.addr)
		require.NoError(t, err)
		p, err := strconv.Atoi(port)
		require.NoError(t, err)
		members[i] = &cluster.Member{Host: host, Port: int32(p), Id: m.addr, Kinds: []string{"troupe.projection"}}
	}
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers(members)
	return rdv.GetByClusterIdentity(cluster.NewClusterIdentity(name, "troupe.projection"))
}

var pmClient = &http.Client{Timeout: 10 * time.Second}

func (m *pmMember) get(path string, out any) error {
	resp, err := pmClient.Get("http://" + m.http + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// send increments a counter stream through m (the member retries
// placement failures itself).
func (m *pmMember) send(stream string, by int) error {
	body, err := json.Marshal(map[string]any{"tenant": "acme", "stream": stream, "by": by})
	if err != nil {
		return err
	}
	resp, err := pmClient.Post("http://"+m.http+"/send", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var rep struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return err
	}
	if rep.Error != "" {
		return fmt.Errorf("send to %s through %s: %s", stream, m.addr, rep.Error)
	}
	return nil
}

type pmProjection struct {
	State, Member, Local, Error string
	Runs                        int64
}

func (m *pmMember) projection(t *testing.T) pmProjection {
	t.Helper()
	var p pmProjection
	require.NoError(t, m.get("/projection", &p), "member %s", m.addr)
	return p
}

func (m *pmMember) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, m.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("member %s not reaped after SIGKILL", m.addr)
	}
}

// stop leaves gracefully (SIGTERM), then kills.
func (m *pmMember) stop(t *testing.T) {
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return
	case <-time.After(30 * time.Second):
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	t.Errorf("member %s did not stop within 30s of SIGTERM:\n%s", m.addr, m.logTail())
}

func (m *pmMember) logTail() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// pmWait polls cond for up to a minute.
func pmWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runningOn returns the members whose projection actor runs the runner.
func runningOn(t *testing.T, ms []*pmMember) []*pmMember {
	t.Helper()
	var out []*pmMember
	for _, m := range ms {
		if m.projection(t).State == "running" {
			out = append(out, m)
		}
	}
	return out
}

// Three members run one projection: it runs on exactly one of them, the
// others' status names that one. Killing that member (kill -9) moves it to
// a survivor, which catches the read model up with the events written
// after the kill; the test logs how long that took. A graceful leave of
// the new owner then hands it over to the last member.
func TestClusterProjectionFailover(t *testing.T) {
	bin := buildMember(t)
	connString := pgtest.NewDatabase(t)
	admin := openPool(t, connString, "")
	ctx := context.Background()
	require.NoError(t, postgres.Migrate(ctx, admin))
	_, err := admin.Exec(ctx, `CREATE TABLE counter_totals (stream text PRIMARY KEY, total int NOT NULL)`)
	require.NoError(t, err)
	ms := pmStart(t, bin, connString, "totals", 3)

	want := map[string]int{}
	sendSome := func(via []*pmMember, n, by int) error {
		for i := range n {
			s := fmt.Sprintf("s-%d", i%10)
			if err := via[i%len(via)].send(s, by); err != nil {
				return err
			}
			want[s] += by
		}
		return nil
	}
	caughtUp := func() bool {
		rows, err := admin.Query(ctx, `SELECT stream, total FROM counter_totals`)
		require.NoError(t, err)
		got := map[string]int{}
		for rows.Next() {
			var s string
			var n int
			require.NoError(t, rows.Scan(&s, &n))
			got[s] = n
		}
		require.NoError(t, rows.Err())
		for s, n := range got {
			require.LessOrEqual(t, n, want[s], "stream %s applied more than once", s)
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	}

	require.NoError(t, sendSome(ms, 30, 1))
	pmWait(t, "the read model to catch up", caughtUp)
	var owner *pmMember
	pmWait(t, "the projection to run on exactly one member, named by all", func() bool {
		on := runningOn(t, ms)
		if len(on) != 1 {
			return false
		}
		owner = on[0]
		for _, m := range ms {
			if m.projection(t).Member != owner.addr {
				return false
			}
		}
		return true
	})
	for _, m := range ms {
		p := m.projection(t)
		if m == owner {
			require.Equal(t, "running", p.Local, "the owner's runner holds the lease")
		} else {
			require.Equal(t, "idle", p.State, "member %s", m.addr)
			require.Zero(t, p.Runs, "member %s never ran the projection", m.addr)
		}
	}

	var survivors []*pmMember
	for _, m := range ms {
		if m != owner {
			survivors = append(survivors, m)
		}
	}
	// Kill the owner; write through the survivors meanwhile (their sends
	// to streams the dead member owned wait for the cluster to notice).
	killed := time.Now()
	owner.kill(t)
	sent := make(chan error, 1)
	var sentAfter time.Duration
	go func() {
		err := sendSome(survivors, 20, 2)
		sentAfter = time.Since(killed)
		sent <- err
	}()
	var next *pmMember
	pmWait(t, "a survivor to run the projection", func() bool {
		on := runningOn(t, survivors)
		if len(on) == 1 {
			next = on[0]
		}
		return next != nil
	})
	runningAfter := time.Since(killed)
	require.NoError(t, <-sent)
	pmWait(t, "the survivor to catch the read model up", caughtUp)
	failover := time.Since(killed)
	t.Logf("projection failover after kill -9 of the owner: a survivor runs it after %v; the 20 sends after the kill done after %v; read model caught up with them after %v",
		runningAfter.Round(time.Millisecond), sentAfter.Round(time.Millisecond), failover.Round(time.Millisecond))
	require.Equal(t, "running", next.projection(t).Local, "the new owner's runner holds the lease")

	// It stays on one member and keeps following.
	require.NoError(t, sendSome(survivors, 10, 3))
	pmWait(t, "the read model to follow", caughtUp)
	require.Len(t, runningOn(t, survivors), 1)

	// A graceful leave (SIGTERM) of the owner hands the projection over
	// to the last member.
	var last *pmMember
	for _, m := range survivors {
		if m != next {
			last = m
		}
	}
	left := time.Now()
	require.NoError(t, next.cmd.Process.Signal(syscall.SIGTERM))
	pmWait(t, "the last member to run the projection", func() bool { return last.projection(t).State == "running" })
	runningAfter = time.Since(left)
	require.NoError(t, sendSome([]*pmMember{last}, 10, 4))
	pmWait(t, "the last member to catch the read model up", caughtUp)
	caughtAfter := time.Since(left)
	select {
	case <-next.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("member %s did not leave within 30s:\n%s", next.addr, next.logTail())
	}
	t.Logf("projection handover on a graceful leave (SIGTERM) of the owner: the last member runs it after %v, read model caught up with 10 sends after %v, the leaving member exited after %v",
		runningAfter.Round(time.Millisecond), caughtAfter.Round(time.Millisecond), time.Since(left).Round(time.Millisecond))
}

// A member joining the cluster that becomes the projection's owner takes
// it over: the member that ran it stops it, the new one runs it and the
// read model follows.
func TestClusterProjectionMovesToJoiningMember(t *testing.T) {
	bin := buildMember(t)
	connString := pgtest.NewDatabase(t)
	admin := openPool(t, connString, "")
	ctx := context.Background()
	require.NoError(t, postgres.Migrate(ctx, admin))
	_, err := admin.Exec(ctx, `CREATE TABLE counter_totals (stream text PRIMARY KEY, total int NOT NULL)`)
	require.NoError(t, err)

	// Three members, the third of which owns the projection once it is
	// there (the first two start without it).
	var ms []*pmMember
	for {
		ms = pmPlan(t, 3)
		if pmOwner(t, "totals", ms) == ms[2].addr {
			break
		}
	}
	for _, m := range ms[:2] {
		m.launch(t, bin, connString, "totals", ms)
	}
	pmWaitMembers(t, ms[:2], 2)
	total := 0
	send := func(via *pmMember, n int) {
		for i := range n {
			require.NoError(t, via.send(fmt.Sprintf("s-%d", i%5), 1))
			total++
		}
	}
	applied := func() bool {
		var sum int
		require.NoError(t, admin.QueryRow(ctx, `SELECT coalesce(sum(total), 0) FROM counter_totals`).Scan(&sum))
		require.LessOrEqual(t, sum, total, "an event applied twice")
		return sum == total
	}
	send(ms[0], 10)
	pmWait(t, "the read model to catch up", applied)
	pmWait(t, "the projection to run on one of the first two members", func() bool { return len(runningOn(t, ms[:2])) == 1 })
	before := runningOn(t, ms[:2])[0]

	joined := time.Now()
	ms[2].launch(t, bin, connString, "totals", ms)
	pmWaitMembers(t, ms, 3)
	pmWait(t, "the projection to move to the joining member", func() bool {
		on := runningOn(t, ms)
		return len(on) == 1 && on[0] == ms[2]
	})
	moved := time.Since(joined)
	require.Equal(t, "idle", before.projection(t).State, "the previous owner stopped it")
	// Its runner takes the lease once the previous one has released it
	// (it retries every LeaseRetryInterval).
	pmWait(t, "the new owner's runner to hold the lease", func() bool { return ms[2].projection(t).Local == "running" })
	leased := time.Since(joined)
	send(ms[1], 10)
	pmWait(t, "the read model to follow on the new owner", applied)
	t.Logf("projection moved to the joining member: its actor runs it %v after the member was started (start and join included), its runner holds the lease after %v",
		moved.Round(time.Millisecond), leased.Round(time.Millisecond))
}
