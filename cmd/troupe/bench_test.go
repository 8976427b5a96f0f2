package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/cli"
	"github.com/troupehq/troupe/cmd/troupe/internal/bench"
	"github.com/troupehq/troupe/internal/pgtest"
)

// tinyBench are flags that shrink `bench --quick` to a few seconds. Each
// throughput run lasts a second, so even a loaded machine answers a few
// commands in it.
var tinyBench = []string{"bench", "--quick", "--tenants", "1", "--carts", "4", "--items", "2",
	"--duration", "1s", "--warmup", "100ms", "--lag-rate", "200", "--lag-duration", "500ms",
	"--memory-streams", "50", "--stream-lengths", "10,40", "--samples", "3"}

// Must show: `bench --quick`, at a tiny size, prints both modes at every
// concurrency, every measurement and the targets, shows progress on
// standard error and writes the charts.
func TestBenchQuickTiny(t *testing.T) {
	t.Parallel()
	svg := filepath.Join(t.TempDir(), "bench.svg")
	args := append(append([]string{}, tinyBench...), "--concurrency", "1,4", "--pgbench-seconds", "3", "--plot", svg)
	r := ok(t, invocation{env: map[string]string{cli.EnvDatabaseURL: pgtest.AdminConnString(t)}}, args...)

	for _, mode := range []string{"actor", "stateless"} {
		for _, c := range []string{"1", "4"} {
			require.Regexp(t, `(?m)^\s+`+mode+`\s+`+c+`\s+[\d,]+\s+[\d,]+\s+\d+\.\d\d\s`, r.stdout, "row %s C=%s", mode, c)
		}
	}
	for _, want := range []string{"projection from cold, batch 500:", "projection from cold, batch 2000:", "end-to-end lag at 200 commands/s", "bytes of heap per live stream actor",
		"one command's latency by stream length", "pgbench ceiling", "targets:", "actor vs stateless commands/s at C=4",
		"machine: ", "postgres: PostgreSQL", "load average: "} {
		require.Contains(t, r.stdout, want)
	}
	require.Regexp(t, `(?m)^\s+40\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d\d$`, r.stdout)
	// Progress, step by step, on standard error.
	require.Contains(t, r.stderr, "bench: [1/9] throughput actor C=1 run 1/1")
	require.Contains(t, r.stderr, "bench: [9/9] pgbench ceiling")
	require.Contains(t, r.stderr, "charts written to "+svg)

	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	var doc struct {
		XMLName xml.Name
		Texts   []string `xml:"g>text"`
	}
	require.NoError(t, xml.Unmarshal(b, &doc), "the charts are well-formed XML")
	require.Equal(t, "svg", doc.XMLName.Local)
	require.Contains(t, doc.Texts, "Throughput vs concurrency")
	require.Contains(t, doc.Texts, "One command's latency vs stream length")
	require.Equal(t, 4, strings.Count(string(b), "<polyline"), "two lines per chart")
}

// --json prints the report for machines; the scratch databases are gone
// afterwards.
func TestBenchJSON(t *testing.T) {
	t.Parallel()
	admin := pgtest.AdminConnString(t)
	args := append(append([]string{}, tinyBench...), "--concurrency", "2", "--no-pgbench", "--json")
	r := ok(t, invocation{}, append([]string{"--database-url", admin}, args...)...)

	var rep bench.Report
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
	require.Len(t, rep.Throughput, 2)
	for i, mode := range []string{bench.ModeActor, bench.ModeStateless} {
		tp := rep.Throughput[i]
		require.Equal(t, mode, tp.Mode)
		require.Equal(t, 2, tp.Concurrency)
		require.Positive(t, tp.CommandsPerSec, mode)
		require.Positive(t, tp.RoundTripsPerCommand, mode)
		require.Zero(t, tp.Errors, "%s: %s", mode, tp.FirstError)
		require.Len(t, tp.Runs, 1)
	}
	// How many round trips each mode makes per command is proven exactly,
	// one command at a time, by the bench package's
	// TestRoundTripsPerCommand; here the report carries the measurement.
	require.Len(t, rep.Projection, 2)
	for _, p := range rep.Projection {
		require.Positive(t, p.Events)
		require.Positive(t, p.Carts)
	}
	require.NotNil(t, rep.Lag)
	require.Positive(t, rep.Lag.Commands)
	require.NotNil(t, rep.Memory)
	require.Equal(t, 50, rep.Memory.LiveActors)
	require.Len(t, rep.StreamLength, 2)
	require.Nil(t, rep.Pgbench)
	require.NotEmpty(t, rep.Targets)
	require.NotEmpty(t, rep.Environment.Postgres)

	// Every scratch database of the run was dropped.
	require.Regexp(t, `^[0-9a-f]{8}$`, rep.RunID)
	pool, err := pgxpool.New(testCtx(t), admin)
	require.NoError(t, err)
	defer pool.Close()
	var left int
	require.NoError(t, pool.QueryRow(testCtx(t), `SELECT count(*) FROM pg_database WHERE datname LIKE $1`,
		"troupe_bench_"+rep.RunID+"_%").Scan(&left))
	require.Zero(t, left)
}
