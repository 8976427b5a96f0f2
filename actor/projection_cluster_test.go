package actor_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/stretchr/testify/require"
)

// The projection tests of cluster mode run members as child processes of
// the member binary actor/internal/clustermember, built without -race
// (protoactor-go's cluster and remoting code has data races of its own),
// each with the projection hook (-projection).

// projectionSpec is n members each running the projection name.
func projectionSpec(n int, name string) memberSpec {
	return memberSpec{n: n, args: func(int) []string { return []string{"-projection", name} }}
}

// projectionOwner is the member protoactor's rendezvous placement gives
// the projection called name among ms.
func projectionOwner(t *testing.T, name string, ms []*member) string {
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

// increment adds by to a counter stream of tenant acme through m (the
// member retries placement failures itself).
func (m *member) increment(stream string, by int) error {
	rep, err := m.send(context.Background(), clusterSend{Tenant: "acme", Stream: stream, By: by})
	if err != nil {
		return err
	}
	if rep.Error != "" {
		return fmt.Errorf("send to %s through %s: %s", stream, m.addr, rep.Error)
	}
	return nil
}

// projectionView is a member's GET /projection.
type projectionView struct {
	State, Member, Local, Error string
	Runs                        int64
}

func (m *member) projection() projectionView {
	m.t.Helper()
	var p projectionView
	require.NoError(m.t, m.get("/projection", &p), "member %s", m.addr)
	return p
}

func (m *member) logTail() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(string(b), 4000)
}

// waitCluster polls cond every 20 ms for up to a minute.
func waitCluster(t *testing.T, what string, cond func() bool) {
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
func runningOn(ms []*member) []*member {
	var out []*member
	for _, m := range ms {
		if m.projection().State == "running" {
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
	connString, admin := clusterDB(t)
	ctx := context.Background()
	_, err := admin.Exec(ctx, `CREATE TABLE counter_totals (stream text PRIMARY KEY, total int NOT NULL)`)
	require.NoError(t, err)
	ms := startCluster(t, connString, projectionSpec(3, "totals"))

	want := map[string]int{}
	sendSome := func(via []*member, n, by int) error {
		for i := range n {
			s := fmt.Sprintf("s-%d", i%10)
			if err := via[i%len(via)].increment(s, by); err != nil {
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
	waitCluster(t, "the read model to catch up", caughtUp)
	var owner *member
	waitCluster(t, "the projection to run on exactly one member, named by all", func() bool {
		on := runningOn(ms)
		if len(on) != 1 {
			return false
		}
		owner = on[0]
		for _, m := range ms {
			if m.projection().Member != owner.addr {
				return false
			}
		}
		return true
	})
	for _, m := range ms {
		p := m.projection()
		if m == owner {
			require.Equal(t, "running", p.Local, "the owner's runner holds the lease")
		} else {
			require.Equal(t, "idle", p.State, "member %s", m.addr)
			require.Zero(t, p.Runs, "member %s never ran the projection", m.addr)
		}
	}

	var survivors []*member
	for _, m := range ms {
		if m != owner {
			survivors = append(survivors, m)
		}
	}
	// Kill the owner; write through the survivors meanwhile (their sends
	// to streams the dead member owned wait for the cluster to notice).
	killed := time.Now()
	owner.kill()
	sent := make(chan error, 1)
	var sentAfter time.Duration
	go func() {
		err := sendSome(survivors, 20, 2)
		sentAfter = time.Since(killed)
		sent <- err
	}()
	var next *member
	waitCluster(t, "a survivor to run the projection", func() bool {
		on := runningOn(survivors)
		if len(on) == 1 {
			next = on[0]
		}
		return next != nil
	})
	runningAfter := time.Since(killed)
	require.NoError(t, <-sent)
	waitCluster(t, "the survivor to catch the read model up", caughtUp)
	failover := time.Since(killed)
	t.Logf("projection failover after kill -9 of the owner: a survivor runs it after %v; the 20 sends after the kill done after %v; read model caught up with them after %v",
		runningAfter.Round(time.Millisecond), sentAfter.Round(time.Millisecond), failover.Round(time.Millisecond))
	require.Equal(t, "running", next.projection().Local, "the new owner's runner holds the lease")

	// It stays on one member and keeps following.
	require.NoError(t, sendSome(survivors, 10, 3))
	waitCluster(t, "the read model to follow", caughtUp)
	require.Len(t, runningOn(survivors), 1)

	// A graceful leave (SIGTERM) of the owner hands the projection over
	// to the last member.
	var last *member
	for _, m := range survivors {
		if m != next {
			last = m
		}
	}
	left := time.Now()
	next.stopped.Store(true)
	require.NoError(t, next.cmd.Process.Signal(syscall.SIGTERM))
	waitCluster(t, "the last member to run the projection", func() bool { return last.projection().State == "running" })
	runningAfter = time.Since(left)
	require.NoError(t, sendSome([]*member{last}, 10, 4))
	waitCluster(t, "the last member to catch the read model up", caughtUp)
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
	connString, admin := clusterDB(t)
	ctx := context.Background()
	_, err := admin.Exec(ctx, `CREATE TABLE counter_totals (stream text PRIMARY KEY, total int NOT NULL)`)
	require.NoError(t, err)

	// Three members, the third of which owns the projection once it is
	// there (the first two start without it).
	var ms []*member
	for {
		ms = planCluster(t, connString, projectionSpec(3, "totals"))
		if projectionOwner(t, "totals", ms) == ms[2].addr {
			break
		}
	}
	for _, m := range ms[:2] {
		m.launch()
	}
	for _, m := range ms[:2] {
		m.waitMembers(2)
	}
	total := 0
	send := func(via *member, n int) {
		for i := range n {
			require.NoError(t, via.increment(fmt.Sprintf("s-%d", i%5), 1))
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
	waitCluster(t, "the read model to catch up", applied)
	waitCluster(t, "the projection to run on one of the first two members", func() bool { return len(runningOn(ms[:2])) == 1 })
	before := runningOn(ms[:2])[0]

	joined := time.Now()
	ms[2].launch()
	for _, m := range ms {
		m.waitMembers(3)
	}
	waitCluster(t, "the projection to move to the joining member", func() bool {
		on := runningOn(ms)
		return len(on) == 1 && on[0] == ms[2]
	})
	moved := time.Since(joined)
	require.Equal(t, "idle", before.projection().State, "the previous owner stopped it")
	// Its runner takes the lease once the previous one has released it
	// (it retries every LeaseRetryInterval).
	waitCluster(t, "the new owner's runner to hold the lease", func() bool { return ms[2].projection().Local == "running" })
	leased := time.Since(joined)
	send(ms[1], 10)
	waitCluster(t, "the read model to follow on the new owner", applied)
	t.Logf("projection moved to the joining member: its actor runs it %v after the member was started (start and join included), its runner holds the lease after %v",
		moved.Round(time.Millisecond), leased.Round(time.Millisecond))
}
