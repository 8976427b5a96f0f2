package actor_test

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// The PostgreSQL membership provider (actor/pgmembership) of members run
// as child processes with -provider=postgres.

const (
	pgHeartbeat = 200 * time.Millisecond
	pgTTL       = 1500 * time.Millisecond
)

// waitMemberSet waits until m serves and knows exactly want.
func (m *member) waitMemberSet(within time.Duration, want ...string) {
	m.t.Helper()
	slices.Sort(want)
	var last any
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var r struct{ Members []string }
		err := m.get("/members", &r)
		if err == nil && slices.Equal(r.Members, want) {
			return
		}
		last = r.Members
		if err != nil {
			last = err
		}
	}
	m.t.Fatalf("member %s does not see %v within %v: %v", m.addr, want, within, last)
}

// increment1 sends one increment of stream (tenant acme) with a command
// id through m; a failure of the command is an error.
func (m *member) increment1(stream, id string) (clusterReply, error) {
	rep, err := m.send(context.Background(), clusterSend{Tenant: "acme", Stream: stream, By: 1, CommandID: id})
	if err == nil && rep.Error != "" {
		err = fmt.Errorf("send %s from %s: %s", stream, m.addr, rep.Error)
	}
	return rep, err
}

func memberRows(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	var addrs []string
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT coalesce(array_agg(host || ':' || port ORDER BY host, port), '{}') FROM cluster_members WHERE cluster = 'test'`).Scan(&addrs))
	return addrs
}

// Three members on the PostgreSQL provider: a command sent from every
// member reaches its stream's owner; after kill -9 of one member the
// survivors drop it within the TTL and a few heartbeats, and commands for
// every stream (those the dead member owned included) work again from
// both survivors, each acknowledged command in the log once. The
// survivors' graceful leave deletes their rows.
func TestClusterOnPostgresProvider(t *testing.T) {
	dsn, pool := clusterDB(t)
	procs := startCluster(t, dsn, memberSpec{n: 3, args: func(int) []string {
		return []string{"-provider", "postgres", "-heartbeat", pgHeartbeat.String(), "-ttl", pgTTL.String(), "-log-level", "info"}
	}})
	all := []string{procs[0].addr, procs[1].addr, procs[2].addr}
	for _, p := range procs {
		p.waitMemberSet(30*time.Second, all...)
	}
	require.ElementsMatch(t, all, memberRows(t, pool))

	// Every member sends to every stream; the owners are spread over the
	// members and every member agrees on them.
	streams := make([]string, 12)
	owners := map[string]string{}
	for i := range streams {
		streams[i] = fmt.Sprintf("s%d", i)
		owners[streams[i]] = procs[0].owner("acme", streams[i])
		for _, p := range procs[1:] {
			require.Equal(t, owners[streams[i]], p.owner("acme", streams[i]), streams[i])
		}
	}
	acked := map[string]bool{}
	sent := 0
	for _, s := range streams {
		for j, p := range procs {
			id := fmt.Sprintf("%s-before-%d", s, j)
			rep, err := p.increment1(s, id)
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
	var survivors []*member
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
	victim.stopped.Store(true)
	require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
	servedAt := make(chan time.Duration, 1)
	go func() {
		defer close(servedAt)
		for time.Since(killed) < 30*time.Second {
			if _, err := survivors[0].increment1(orphan, "orphan-first"); err == nil {
				servedAt <- time.Since(killed)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	<-victim.exited
	for _, p := range survivors {
		p.waitMemberSet(30*time.Second, alive...)
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
		_, err := survivors[1].increment1(orphan2, "orphan-after-drop")
		require.NoError(t, err)
		afterDrop = time.Since(began)
		acked["orphan-after-drop"] = true
	}
	served, ok := <-servedAt
	require.True(t, ok, "the survivors do not serve %s", orphan)
	acked["orphan-first"] = true
	t.Logf("survivors dropped the killed member after %v; a command for its stream %s sent from the kill on was answered after %v; "+
		"one for its stream %q sent after the drop took %v (TTL %v, heartbeat %v)", dropped, orphan, served, orphan2, afterDrop, pgTTL, pgHeartbeat)
	// Expiry counts from the last heartbeat, at most one interval before
	// the kill; the survivors see it at their next heartbeat; the rest is
	// slack for a machine shared with other tests.
	require.Less(t, dropped, pgTTL+8*pgHeartbeat)
	require.ElementsMatch(t, alive, memberRows(t, pool), "the killed member's row is deleted")

	for _, s := range streams {
		for j, p := range survivors {
			id := fmt.Sprintf("%s-after-%d", s, j)
			_, err := p.increment1(s, id)
			require.NoError(t, err)
			acked[id] = true
		}
		require.NotEqual(t, victim.addr, survivors[0].owner("acme", s))
		require.Equal(t, survivors[0].owner("acme", s), survivors[1].owner("acme", s))
	}
	counts := commandCounts(t, pool)
	for id := range acked {
		require.Equal(t, 1, counts[id], "acknowledged command %s", id)
	}

	// Graceful leave: SIGTERM; the member deletes its row.
	survivors[1].stopped.Store(true)
	require.NoError(t, survivors[1].cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-survivors[1].exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the member did not leave within 30s of SIGTERM")
	}
	require.Zero(t, survivors[1].cmd.ProcessState.ExitCode())
	require.Equal(t, []string{survivors[0].addr}, memberRows(t, pool))
	survivors[0].waitMemberSet(pgTTL, survivors[0].addr)
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
