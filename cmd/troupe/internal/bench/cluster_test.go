package bench

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
)

// buildTroupe builds the troupe binary WITHOUT the race detector: the
// members run protoactor-go's cluster code, which has data races of its
// own (docs/cluster.md); this test process only drives them over HTTP.
func buildTroupe(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "troupe")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/troupehq/troupe/cmd/troupe").CombinedOutput()
	require.NoError(t, err, "go build the troupe binary: %s", out)
	return bin
}

// The cluster benchmark at tiny sizes: every measurement runs on member
// processes, answers every command, and the report holds the ratios.
func TestRunClusterTiny(t *testing.T) {
	t.Parallel()
	bin := buildTroupe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := RunCluster(ctx, ClusterConfig{DatabaseURL: pgtest.AdminConnString(t), MemberBinary: bin, Runs: 1,
		Duration: time.Second, Warmup: 300 * time.Millisecond, LatencySenders: 2, Senders: 6, Tenants: 1, Carts: 6, Items: 2,
		Progress: &progress})
	require.NoError(t, err, progress.String())
	require.Len(t, rep.Placement, 2)
	for i, want := range []string{PlacementLocal, PlacementRemote} {
		p := rep.Placement[i]
		require.Equal(t, want, p.Placement)
		require.Zero(t, p.Errors, p.FirstError)
		require.Positive(t, p.CommandsPerSec, want)
		require.Positive(t, p.P50, want)
		require.GreaterOrEqual(t, p.P99, p.P50, want)
		require.Positive(t, p.CPUPerCommandMicros, want)
	}
	require.Len(t, rep.Members, 2)
	for i, n := range []int{1, 3} {
		m := rep.Members[i]
		require.Equal(t, n, m.Members)
		require.Equal(t, 6, m.Senders)
		require.Zero(t, m.Errors, m.FirstError)
		require.Positive(t, m.CommandsPerSec, "%d members", n)
	}
	var out bytes.Buffer
	require.NoError(t, rep.WriteTable(&out))
	require.Contains(t, out.String(), "remote/local")
	require.Contains(t, out.String(), "3/1")
	require.Contains(t, out.String(), "membership: postgres")
}

func TestClusterConfig(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, ClusterConfig{}.withDefaults().validate(), ErrInvalidConfig)
	require.ErrorContains(t, ClusterConfig{}.withDefaults().validate(), "MemberBinary")
	require.ErrorContains(t, ClusterConfig{MemberBinary: "x", Senders: -1}.withDefaults().validate(), "Senders")
	c := ClusterConfig{MemberBinary: "x"}.withDefaults()
	require.NoError(t, c.validate())
	require.Equal(t, 3, c.Runs)
	require.Equal(t, 48, c.Senders)
}
