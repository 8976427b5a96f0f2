package actor_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The other cluster tests run members built without -race, because
// protoactor-go's cluster and remoting code has data races of its own.
// This one runs three members built with -race under load, through a
// graceful leave and a kill -9, with a projection actor and the
// PostgreSQL membership provider, and reads every report the detector
// writes: a race whose unsynchronised access is in Troupe's code fails the
// test; upstream's are logged.
func TestClusterRaceDetectorFindsNoRaceOfTroupe(t *testing.T) {
	dsn, pool := clusterDB(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE counter_totals (stream text PRIMARY KEY, total int NOT NULL)`)
	require.NoError(t, err)
	reports := t.TempDir()
	ms := startCluster(t, dsn, memberSpec{
		n:   3,
		bin: buildMemberRace(t),
		env: []string{"GORACE=halt_on_error=0 log_path=" + filepath.Join(reports, "race")},
		args: func(int) []string {
			return []string{"-provider", "postgres", "-heartbeat", "200ms", "-ttl", "1500ms",
				"-projection", "totals", "-projection-ensure", "200ms", "-projection-poll", "50ms",
				"-projection-lease-retry", "200ms", "-request-timeout", "2s"}
		},
	})
	for _, m := range ms {
		var r struct{ Race bool }
		require.NoError(t, m.get("/members", &r))
		require.True(t, r.Race, "member %s was built without the race detector", m.addr)
	}

	// Load through every member, and the calls that read the cluster's
	// state beside it (owner, members, state, projection status).
	const streams, perMember = 12, 3
	stop := make(chan struct{})
	l, wg := runLoad(ctx, ms, perMember, streams, stop)
	var readers sync.WaitGroup
	for _, m := range ms {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if !m.alive() || m.stopped.Load() {
					return
				}
				var v map[string]any
				stream := fmt.Sprintf("load-%d", n%streams)
				_ = m.get("/owner?stream="+stream, &v)
				_ = m.get("/members", &v)
				_ = m.get("/state?stream="+stream, &v)
				_ = m.get("/projection", &v)
				_ = m.get("/activations", &v)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	leaver, victim := ms[2], ms[1]
	require.NoError(t, exitedCleanOrRaced(leaver, 30*time.Second), "graceful leave")
	time.Sleep(1500 * time.Millisecond)
	victim.kill()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	readers.Wait()
	require.NoError(t, exitedCleanOrRaced(ms[0], 30*time.Second), "the last member's stop")

	lost, dup := l.exactlyOnce(commandCounts(t, pool))
	t.Logf("under the race detector: commands sent %d, acknowledged %d, lost %d, duplicated %d", l.sent, len(l.acked), lost, dup)
	require.NotEmpty(t, l.acked, "no command was acknowledged")
	require.Zero(t, lost)
	require.Zero(t, dup)

	files, err := filepath.Glob(filepath.Join(reports, "race*"))
	require.NoError(t, err)
	var ours, theirs []raceReport
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, r := range parseRaceReports(string(b)) {
			if r.troupe() {
				ours = append(ours, r)
			} else {
				theirs = append(theirs, r)
			}
		}
	}
	seen := map[string]int{}
	for _, r := range theirs {
		seen[strings.Join(r.tops, " vs ")]++
	}
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		t.Logf("upstream race (%d×): %s", seen[k], k)
	}
	for _, r := range ours {
		t.Errorf("data race in Troupe's code (%s):\n%s", strings.Join(r.tops, " vs "), r.text)
	}
	t.Logf("race reports: %d in Troupe's code, %d upstream, from %d member processes", len(ours), len(theirs), len(files))
}

// exitedCleanOrRaced stops m with SIGTERM and accepts exit status 0, or
// 66: the race detector's status for a process that reported a race (the
// reports are checked by the test).
func exitedCleanOrRaced(m *member, timeout time.Duration) error {
	m.stopped.Store(true)
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-m.exited:
		if code := m.cmd.ProcessState.ExitCode(); code != 0 && code != 66 {
			return fmt.Errorf("member %s exited with status %d", m.addr, code)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("member %s did not exit %v after SIGTERM", m.addr, timeout)
	}
}

// raceReport is one report of the race detector: its text and, for each
// of its two accesses, the first function outside Go's standard library.
type raceReport struct {
	text string
	tops []string
}

// troupe reports whether one of the accesses is Troupe's own code (its
// packages, or the member binary's main).
func (r raceReport) troupe() bool {
	return slices.ContainsFunc(r.tops, func(fn string) bool {
		p := importPath(fn)
		return p == "main" || p == "github.com/troupehq/troupe" || strings.HasPrefix(p, "github.com/troupehq/troupe/")
	})
}

// parseRaceReports splits the race detector's output into reports.
func parseRaceReports(out string) []raceReport {
	const sep = "=================="
	var reports []raceReport
	for _, block := range strings.Split(out, sep) {
		if !strings.Contains(block, "WARNING: DATA RACE") {
			continue
		}
		r := raceReport{text: strings.TrimSpace(block)}
		for _, section := range strings.Split(block, "\n\n") {
			lines := strings.Split(strings.TrimLeft(section, "\n"), "\n")
			if lines[0] == "WARNING: DATA RACE" {
				lines = lines[1:]
			}
			if len(lines) == 0 || !strings.Contains(lines[0], " at 0x") || strings.HasPrefix(lines[0], "Goroutine") {
				continue
			}
			top := "(standard library only)"
			for _, l := range lines[1:] {
				if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "      ") {
					continue // a file:line
				}
				fn := strings.TrimSpace(l)
				if p := importPath(fn); p == "main" || strings.Contains(strings.Split(p, "/")[0], ".") {
					top = fn
					break
				}
			}
			r.tops = append(r.tops, top)
		}
		reports = append(reports, r)
	}
	return reports
}

// importPath is the import path of a function name as a stack trace
// prints it: "github.com/a/b.(*T[...]).M()" is github.com/a/b.
func importPath(fn string) string {
	if i := strings.IndexAny(fn, "[("); i >= 0 {
		fn = fn[:i]
	}
	slash := strings.LastIndex(fn, "/")
	dot := strings.Index(fn[slash+1:], ".")
	if dot < 0 {
		return fn
	}
	return fn[:slash+1+dot]
}

func TestClusterRaceReportsAreAttributed(t *testing.T) {
	out := `==================
WARNING: DATA RACE
Read at 0x00c0001b2a38 by goroutine 81:
  runtime.mapaccess2_faststr()
      /usr/local/go/src/internal/runtime/maps/runtime_faststr.go:117 +0x0
  github.com/troupehq/troupe/actor.(*clusterRuntime).members()
      /work/actor/cluster.go:292 +0x64
  main.routes.func5()
      /work/actor/internal/clustermember/counter.go:136 +0x44

Previous write at 0x00c0001b2a38 by goroutine 40:
  github.com/asynkron/protoactor-go/cluster.(*MemberList).UpdateClusterTopology()
      /mod/cluster/member_list.go:147 +0x3e

Goroutine 81 (running) created at:
  net/http.(*Server).Serve()
      /usr/local/go/src/net/http/server.go:3454 +0x8c4
==================
==================
WARNING: DATA RACE
Write at 0x00c000a1 by goroutine 7:
  sync/atomic.StoreInt32()
      /usr/local/go/src/runtime/race_amd64.s:229 +0xb
  github.com/asynkron/protoactor-go/remote.(*endpointManager).stop()
      /mod/remote/endpoint_manager.go:115 +0x1f

Previous read at 0x00c000a1 by goroutine 9:
  github.com/asynkron/protoactor-go/remote.(*endpointManager).removeEndpoint()
      /mod/remote/endpoint_manager.go:248 +0x2a
  github.com/troupehq/troupe/actor.(*Host).Stop()
      /work/actor/host.go:400 +0x2a

Goroutine 7 (running) created at:
  main.main()
==================
`
	rs := parseRaceReports(out)
	require.Len(t, rs, 2)
	require.Equal(t, []string{"github.com/troupehq/troupe/actor.(*clusterRuntime).members()",
		"github.com/asynkron/protoactor-go/cluster.(*MemberList).UpdateClusterTopology()"}, rs[0].tops)
	require.True(t, rs[0].troupe(), "a race whose read is in Troupe's code is Troupe's")
	require.Equal(t, []string{"github.com/asynkron/protoactor-go/remote.(*endpointManager).stop()",
		"github.com/asynkron/protoactor-go/remote.(*endpointManager).removeEndpoint()"}, rs[1].tops)
	require.False(t, rs[1].troupe(), "a race between two upstream accesses is upstream's, whoever called them")
	require.Equal(t, "main", importPath("main.routes.func5()"))
	require.Equal(t, "sync/atomic", importPath("sync/atomic.(*Int64).Load()"))
	require.Equal(t, "github.com/troupehq/troupe/actor",
		importPath("github.com/troupehq/troupe/actor.(*Aggregate[go.shape.struct { github.com/x/y.Z }]).Send()"))
}
