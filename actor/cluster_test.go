package actor_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

func identity(stream string) string { return store.DefaultPartition + "/counter/" + stream }

// Must show: commands for every stream sent through every member reach one
// activation of the stream in the whole cluster, and every result is right.
func TestClusterRoutesEveryStreamToOneActivation(t *testing.T) {
	dsn, pool := clusterDB(t)
	ms := startCluster(t, dsn, memberSpec{n: 3})
	const streams = 24
	ctx := context.Background()

	var (
		mu       sync.Mutex
		versions = map[string][]int64{}
		wg       sync.WaitGroup
	)
	for s := range streams {
		stream := fmt.Sprintf("route-%d", s)
		for i, m := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep, err := m.send(ctx, clusterSend{Stream: stream, CommandID: fmt.Sprintf("%s-via-%d", stream, i)})
				if err == nil && rep.Error != "" {
					err = fmt.Errorf("%s", rep.Error)
				}
				if !assertNoError(t, err, "send to %s through member %d", stream, i) {
					return
				}
				mu.Lock()
				versions[stream] = append(versions[stream], rep.Version)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	require.False(t, t.Failed())

	acts := make([]map[string]int, len(ms))
	for i, m := range ms {
		acts[i] = m.activations()
	}
	perMember := make([]int, len(ms))
	for s := range streams {
		stream := fmt.Sprintf("route-%d", s)
		v := versions[stream]
		slices.Sort(v)
		require.Equal(t, []int64{1, 2, 3}, v, "versions returned for %s", stream)
		st := ms[s%len(ms)].state("", stream)
		require.Empty(t, st.Error)
		require.Equal(t, 3, st.Count, "count of %s", stream)
		require.EqualValues(t, 3, st.Version, "version of %s", stream)

		owners := 0
		for i := range ms {
			if n := acts[i][identity(stream)]; n > 0 {
				owners++
				perMember[i]++
				require.Equal(t, 1, n, "activations of %s on member %d", stream, i)
				for _, m := range ms {
					require.Equal(t, ms[i].addr, m.owner("", stream), "owner of %s as member %s sees it", stream, m.addr)
				}
			}
		}
		require.Equal(t, 1, owners, "members with an activation of %s", stream)
	}
	for id, n := range commandCounts(t, pool) {
		require.Equal(t, 1, n, "events of command %s", id)
	}
	t.Logf("%d streams, 3 commands each through 3 members: activations per member %v", streams, perMember)
}

// loadRun is a load of commands with ids sent by senders on some members.
type loadRun struct {
	mu      sync.Mutex
	acked   map[string]bool
	sent    int
	errs    []string
	ackedAt map[int][]time.Time // per sender
}

// runLoad runs senders (per member of on) until stop is closed; a sender
// whose member is gone stops. Every command has a unique id.
func runLoad(ctx context.Context, on []*member, perMember, streams int, stop <-chan struct{}) (*loadRun, *sync.WaitGroup) {
	l := &loadRun{acked: map[string]bool{}, ackedAt: map[int][]time.Time{}}
	var wg sync.WaitGroup
	for i, m := range on {
		for g := range perMember {
			sender := i*perMember + g
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("load-%d-%d", sender, n)
					stream := fmt.Sprintf("load-%d", rand.IntN(streams))
					rep, err := m.send(ctx, clusterSend{Stream: stream, CommandID: id})
					l.mu.Lock()
					l.sent++
					switch {
					case err != nil && m.stopped.Load():
						l.mu.Unlock()
						return
					case err != nil:
						l.errs = append(l.errs, fmt.Sprintf("sender %d: %v", sender, err))
					case rep.Error != "":
						l.errs = append(l.errs, fmt.Sprintf("sender %d: %s", sender, rep.Error))
					default:
						l.acked[id] = true
						l.ackedAt[sender] = append(l.ackedAt[sender], time.Now())
					}
					l.mu.Unlock()
				}
			}()
		}
	}
	return l, &wg
}

// pause is the longest time any of the senders went without an answer
// after since.
func (l *loadRun) pause(senders []int, since, end time.Time) time.Duration {
	var worst time.Duration
	for _, s := range senders {
		prev := since
		for _, at := range l.ackedAt[s] {
			if at.Before(since) {
				continue
			}
			worst = max(worst, at.Sub(prev))
			prev = at
		}
		worst = max(worst, end.Sub(prev))
	}
	return worst
}

// exactlyOnce checks that every acknowledged command is in the log once
// and no command is there twice; it returns the lost and duplicated
// counts.
func (l *loadRun) exactlyOnce(counts map[string]int) (lost, dup int) {
	for id := range l.acked {
		if counts[id] == 0 {
			lost++
		}
	}
	for _, n := range counts {
		if n > 1 {
			dup++
		}
	}
	return lost, dup
}

// Must show: kill -9 one of three members under load. The senders on the
// survivors resume after a bounded pause, the lost member's streams
// activate on survivors, and every acknowledged command is in the log
// exactly once.
func TestClusterMemberLossUnderLoad(t *testing.T) {
	dsn, pool := clusterDB(t)
	ms := startCluster(t, dsn, memberSpec{n: 3})
	victim := ms[2]
	const streams, perMember = 30, 4
	victimStreams := map[string]bool{}
	for s := range streams {
		stream := fmt.Sprintf("load-%d", s)
		if ms[0].owner("", stream) == victim.addr {
			victimStreams[stream] = true
		}
	}
	require.NotEmpty(t, victimStreams, "the victim owns no stream")

	ctx := context.Background()
	stop := make(chan struct{})
	l, wg := runLoad(ctx, ms, perMember, streams, stop)
	time.Sleep(1500 * time.Millisecond)
	killedAt := time.Now()
	victim.kill()
	time.Sleep(5 * time.Second)
	end := time.Now()
	close(stop)
	wg.Wait()

	survivors := []int{}
	for s := range 2 * perMember {
		survivors = append(survivors, s)
	}
	pause := l.pause(survivors, killedAt, end)
	lost, dup := l.exactlyOnce(commandCounts(t, pool))
	t.Logf("member loss (kill -9 of 1 of 3 members, %d senders on the survivors, %d on the victim, %d streams): commands sent %d, acknowledged %d, lost %d, duplicated %d, sender errors %d, longest pause of a survivor's sender after the kill %v",
		2*perMember, perMember, streams, l.sent, len(l.acked), lost, dup, len(l.errs), pause.Round(time.Millisecond))
	for _, e := range l.errs[:min(len(l.errs), 5)] {
		t.Logf("sender error: %s", e)
	}
	require.Zero(t, lost, "acknowledged commands missing from the log")
	require.Zero(t, dup, "commands applied more than once")
	require.Empty(t, l.errs, "errors on the survivors' senders")
	require.Less(t, pause, 5*time.Second, "the survivors' senders did not answer again within the bounded pause")

	// The victim's streams are now owned, and activated, by survivors.
	moved := 0
	for stream := range victimStreams {
		o := ms[0].owner("", stream)
		require.NotEqual(t, victim.addr, o)
		require.Equal(t, o, ms[1].owner("", stream))
		for _, m := range ms[:2] {
			if m.addr == o && m.activations()[identity(stream)] > 0 {
				moved++
			}
		}
	}
	require.Positive(t, moved, "no stream of the lost member was activated on a survivor")
}

// Must show: SIGTERM one of three members under load; the senders on the
// others see no error (placement retries absorb the hand-over), the member
// exits cleanly, and every acknowledged command is in the log once.
func TestClusterGracefulLeave(t *testing.T) {
	dsn, pool := clusterDB(t)
	ms := startCluster(t, dsn, memberSpec{n: 3})
	leaver := ms[2]
	const streams, perMember = 30, 4
	ctx := context.Background()
	stop := make(chan struct{})
	l, wg := runLoad(ctx, ms[:2], perMember, streams, stop)
	time.Sleep(1500 * time.Millisecond)
	leftAt := time.Now()
	require.NoError(t, leaver.terminate(20*time.Second))
	leaveTook := time.Since(leftAt)
	time.Sleep(2 * time.Second)
	end := time.Now()
	close(stop)
	wg.Wait()

	senders := []int{}
	for s := range 2 * perMember {
		senders = append(senders, s)
	}
	pause := l.pause(senders, leftAt, end)
	lost, dup := l.exactlyOnce(commandCounts(t, pool))
	t.Logf("graceful leave (SIGTERM 1 of 3 members, %d senders on the others): commands sent %d, acknowledged %d, lost %d, duplicated %d, sender errors %d, longest pause %v, the leaving member exited after %v",
		len(senders), l.sent, len(l.acked), lost, dup, len(l.errs), pause.Round(time.Millisecond), leaveTook.Round(time.Millisecond))
	for _, e := range l.errs[:min(len(l.errs), 5)] {
		t.Logf("sender error: %s", e)
	}
	require.Empty(t, l.errs)
	require.Zero(t, lost)
	require.Zero(t, dup)
	for _, m := range ms[:2] {
		m.waitMembers(2)
	}
}

// Must show: typed errors cross the wire as the same Go errors (checked
// with errors.Is / errors.As on the calling member).
func TestClusterTypedErrors(t *testing.T) {
	dsn, _ := clusterDB(t)
	ms := startCluster(t, dsn, memberSpec{n: 2, args: func(int) []string {
		return []string{"-faults", "-retry-attempts", "3", "-retry-max-delay", "50ms"}
	}})
	caller, owner := ms[0], ms[1]
	ctx := context.Background()
	// remote returns a stream name with prefix that the other member owns.
	remote := func(prefix string) string {
		for i := 0; ; i++ {
			s := fmt.Sprintf("%s%d", prefix, i)
			if caller.owner("", s) == owner.addr {
				return s
			}
		}
	}
	send := func(r clusterSend) clusterReply {
		t.Helper()
		rep, err := caller.send(ctx, r)
		require.NoError(t, err)
		return rep
	}

	// A command and its re-send cross the wire with their results.
	s := remote("typed-ok-")
	rep := send(clusterSend{Stream: s, By: 5, CommandID: "c1"})
	require.Empty(t, rep.Error)
	require.Equal(t, clusterReply{Member: caller.addr, Version: 1, Count: 5, Events: 1}, withoutMicros(rep))
	rep = send(clusterSend{Stream: s, By: 5, CommandID: "c1"})
	require.Equal(t, clusterReply{Member: caller.addr, Version: 1, Count: 5, Events: 1, Duplicate: true}, withoutMicros(rep))
	require.Equal(t, 1, owner.activations()[identity(s)])
	require.Zero(t, caller.activations()[identity(s)])

	for _, tc := range []struct {
		name, stream, op string
		want             map[string]any
		msg              string
	}{
		{"rejection with a Kind.Errors sentinel", s, "reject", map[string]any{"rejected": true, "tooMany": true}, "count 5: too many at once"},
		{"rejection without a sentinel", s, "reject-other", map[string]any{"rejected": true}, "not today"},
		{"panic in Decide", s, "panic", map[string]any{"panic": true, "panicWhere": "decide", "panicValue": "decide exploded"}, "actor: panic in decide: decide exploded"},
		{"version conflict", remote("fault-conflict-"), "", map[string]any{"conflict": true}, "version conflict"},
		{"outcome unknown", remote("fault-unknown-"), "", map[string]any{"outcomeUnknown": true}, "injected: connection lost during commit"},
		{"tenant dropped", remote("fault-dropped-"), "", map[string]any{"tenantDropped": true}, "the tenant (partition) was dropped"},
		{"invalid argument", remote("fault-invalid-"), "", map[string]any{"invalidArgument": true}, "injected: event data PostgreSQL refuses"},
		// An owner that answers "stopping" on every attempt is a placement
		// failure to the end: after the last attempt the caller sees the
		// owner unreachable (nothing was applied), not a refusal.
		{"owner stopping on every attempt", remote("fault-stopping-"), "", map[string]any{"unavailable": true}, "unreachable after 3 attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := send(clusterSend{Stream: tc.stream, Op: tc.op})
			require.Contains(t, rep.Error, tc.msg)
			got := map[string]any{}
			for k, v := range rep.Matches {
				if k != "conflictStream" && k != "conflictActual" {
					got[k] = v
				}
			}
			require.Equal(t, tc.want, got, "what %q matches on the caller", rep.Error)
			if tc.want["conflict"] == true {
				require.Equal(t, tc.stream, rep.Matches["conflictStream"], "the *store.VersionConflictError's stream")
				require.EqualValues(t, 99, rep.Matches["conflictActual"], "the *store.VersionConflictError's actual version")
			}
		})
	}
	// The failures changed nothing.
	st := caller.state("", s)
	require.Equal(t, clusterState{Count: 5, Version: 1}, st)
}

func withoutMicros(r clusterReply) clusterReply {
	r.Micros = 0
	return r
}

func assertNoError(t *testing.T, err error, format string, args ...any) bool {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", fmt.Sprintf(format, args...), err)
		return false
	}
	return true
}

// A bad ClusterConfig is refused by New with an error naming the field.
func TestClusterConfigErrors(t *testing.T) {
	prov, err := actor.StaticMembers(actor.StaticMembersConfig{Self: "127.0.0.1:7101", Members: []string{"127.0.0.1:7101"}})
	require.NoError(t, err)
	for _, tc := range []struct {
		cfg  actor.ClusterConfig
		want string
	}{
		{actor.ClusterConfig{Address: "127.0.0.1:7001", Provider: prov}, "actor.Config.Cluster.Name"},
		{actor.ClusterConfig{Name: "c", Provider: prov}, "actor.Config.Cluster.Address"},
		{actor.ClusterConfig{Name: "c", Address: ":7001", Provider: prov}, "actor.Config.Cluster.Address"},
		{actor.ClusterConfig{Name: "c", Address: "127.0.0.1:0", Provider: prov}, "actor.Config.Cluster.Address"},
		{actor.ClusterConfig{Name: "c", Address: "127.0.0.1:7001"}, "actor.Config.Cluster.Provider"},
		{actor.ClusterConfig{Name: "c", Address: "127.0.0.1:7001", Provider: prov, AdvertisedAddress: "nope"}, "actor.Config.Cluster.AdvertisedAddress"},
		{actor.ClusterConfig{Name: "c", Address: "127.0.0.1:7001", Provider: prov, RequestTimeout: -1}, "actor.Config.Cluster.RequestTimeout"},
		{actor.ClusterConfig{Name: "c", Address: "127.0.0.1:7001", Provider: prov, Retry: retry.Policy{MaxAttempts: -1}}, "actor.Config.Cluster.Retry"},
	} {
		_, err := actor.New(memory.New(), &actor.Config{Codec: newCodec(), Cluster: &tc.cfg})
		require.ErrorIs(t, err, actor.ErrInvalidConfig)
		require.ErrorContains(t, err, tc.want)
	}
	for _, tc := range []struct {
		cfg  actor.StaticMembersConfig
		want string
	}{
		{actor.StaticMembersConfig{Members: []string{"127.0.0.1:7101"}}, "actor.StaticMembersConfig.Self"},
		{actor.StaticMembersConfig{Self: "127.0.0.1:7101"}, "actor.StaticMembersConfig.Members"},
		{actor.StaticMembersConfig{Self: "127.0.0.1:7101", Members: []string{"x"}}, "actor.StaticMembersConfig.Members"},
		{actor.StaticMembersConfig{Self: "127.0.0.1:7101", Members: []string{"127.0.0.1:7101"}, Refresh: -1}, "actor.StaticMembersConfig.Refresh"},
	} {
		_, err := actor.StaticMembers(tc.cfg)
		require.ErrorIs(t, err, actor.ErrInvalidConfig)
		require.ErrorContains(t, err, tc.want)
	}
}

// A member that has not joined refuses with ErrNotStarted, and one that
// left with ErrStopped, as in single-process mode; the test process never
// joins a cluster (see buildMember).
func TestClusterHostNotStartedAndStopped(t *testing.T) {
	prov, err := actor.StaticMembers(actor.StaticMembersConfig{Self: "127.0.0.1:7101", Members: []string{"127.0.0.1:7101"}})
	require.NoError(t, err)
	h, err := actor.New(memory.New(), &actor.Config{Codec: newCodec(), Cluster: &actor.ClusterConfig{Name: "c", Address: "127.0.0.1:7001", Provider: prov}})
	require.NoError(t, err)
	agg, err := actor.Register(h, counterKind())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7001", h.Member())
	require.Empty(t, h.Members())
	_, err = h.Owner("counter", "", "s-1")
	require.ErrorIs(t, err, actor.ErrNotStarted)
	_, err = h.Owner("nope", "", "s-1")
	require.ErrorIs(t, err, actor.ErrUnknownKind)
	ctx := context.Background()
	_, err = agg.Send(ctx, counterCmd{Stream: "s-1"})
	require.ErrorIs(t, err, actor.ErrNotStarted)
	require.NoError(t, h.Stop(ctx))
	_, err = agg.Send(ctx, counterCmd{Stream: "s-1"})
	require.ErrorIs(t, err, actor.ErrStopped)
	_, _, err = agg.State(ctx, "", "s-1")
	require.ErrorIs(t, err, actor.ErrStopped)
}

// A stream's grain stops after the idle timeout (passivating the stream
// actor on its member) and the next command activates it again, with the
// state read back from the store.
func TestClusterIdleGrainReactivates(t *testing.T) {
	dsn, _ := clusterDB(t)
	ms := startCluster(t, dsn, memberSpec{n: 2, args: func(int) []string { return []string{"-idle", "300ms"} }})
	ctx := context.Background()
	for i := range 3 {
		if i > 0 {
			time.Sleep(800 * time.Millisecond)
		}
		rep, err := ms[i%2].send(ctx, clusterSend{Stream: "idle-1", CommandID: fmt.Sprintf("idle-%d", i)})
		require.NoError(t, err)
		require.Empty(t, rep.Error)
		require.EqualValues(t, i+1, rep.Version)
		require.Equal(t, i+1, rep.Count)
	}
	owner := ms[0].owner("", "idle-1")
	for _, m := range ms {
		if m.addr == owner {
			require.Equal(t, 3, m.activations()[identity("idle-1")], "activations on the owner")
		} else {
			require.Zero(t, m.activations()[identity("idle-1")])
		}
	}
}
