package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
)

// The workload never hands out a command the cart rules reject, even with
// many senders racing on few carts, and carts run their whole life.
func TestWorkloadNeverRejected(t *testing.T) {
	t.Parallel()
	const tenants, carts, items, senders, perSender = 2, 3, 4, 16, 300
	wl := newWorkload(tenants, carts, items, "t")
	var mu sync.Mutex
	states := map[string]benchcart.State{}
	kinds := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			for range perSender {
				cmd, tok, ok := wl.next(context.Background(), rng)
				if !ok {
					errs <- context.Canceled
					return
				}
				key := cmd.Tenant() + "/" + cmd.Cart()
				mu.Lock()
				s, found := states[key]
				if !found {
					s = benchcart.InitialState()
				}
				evs, err := benchcart.Decide(cmd, s)
				if err == nil {
					for _, e := range evs {
						s = benchcart.Evolve(s, e)
					}
					states[key] = s
					kinds[commandName(cmd)]++
				}
				mu.Unlock()
				wl.done(tok, err != nil)
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, senders*perSender, kinds["CreateCart"]+kinds["AddItem"]+kinds["CheckoutCart"])
	require.Positive(t, kinds["CheckoutCart"])
	// Every checked-out cart got its K items first.
	for key, s := range states {
		if s.Status == benchcart.StatusCheckedOut {
			require.Len(t, s.Items, items, key)
		}
		require.True(t, strings.HasPrefix(s.TenantID, "bench-t"), key)
	}
}

// close wakes senders waiting for a free benchcart.
func TestWorkloadCloseWakesWaiters(t *testing.T) {
	t.Parallel()
	wl := newWorkload(1, 1, 1, "t")
	rng := rand.New(rand.NewPCG(1, 2))
	_, tok, ok := wl.next(context.Background(), rng) // the create, left unanswered
	require.True(t, ok)
	got := make(chan bool)
	go func() {
		_, _, ok := wl.next(context.Background(), rng) // waits: nothing to do until the create is answered
		got <- ok
	}()
	wl.close()
	require.False(t, <-got)
	wl.done(tok, false)
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := summarize(ds)
	require.Equal(t, Latency{Count: 100, P50: 50, P95: 95, P99: 99, Max: 100, Mean: 50.5}, l)
	require.Equal(t, Latency{}, summarize(nil))
	require.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
	require.Equal(t, 3.0, median([]float64{5, 3, 1}))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	c := Config{}.withDefaults()
	require.NoError(t, c.validate())
	require.Equal(t, []int{1, 8, 64}, c.Concurrency)
	require.Equal(t, []int{10, 1000, 10000}, c.StreamLengths)
	require.Equal(t, 20, c.PgbenchSeconds)

	c = Config{Concurrency: []int{64, 1, 64}}.withDefaults()
	require.Equal(t, []int{1, 64}, c.Concurrency)

	for _, bad := range []Config{{Tenants: -1}, {Concurrency: []int{0}}, {StreamLengths: []int{1}}, {Duration: -time.Second}} {
		err := bad.withDefaults().validate()
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", bad)
	}
	require.ErrorContains(t, Config{Carts: -2}.withDefaults().validate(), "Carts: must be positive, got -2")
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://u:p@h:5432/scratch?sslmode=disable", withDatabase("postgres://u:p@h:5432/app?sslmode=disable", "scratch"))
	require.Equal(t, "postgresql://h/scratch", withDatabase("postgresql://h", "scratch"))
	require.Equal(t, "host=h dbname=app dbname=scratch", withDatabase("host=h dbname=app", "scratch"))
	require.Equal(t, "postgres://u:xxxxx@h/app", redact("postgres://u:secret@h/app"))
}

func TestParseTPS(t *testing.T) {
	t.Parallel()
	out := `transaction type: append.sql
number of clients: 64
latency average = 8.881 ms
initial connection time = 70.406 ms
tps = 7206.541235 (without initial connection time)
`
	tps, err := parseTPS(out)
	require.NoError(t, err)
	require.InDelta(t, 7206.541235, tps, 1e-9)
	tps, err = parseTPS("tps = 12.5 (excluding connections establishing)\n")
	require.NoError(t, err)
	require.Equal(t, 12.5, tps)
	_, err = parseTPS("pgbench: error: connection refused")
	require.ErrorContains(t, err, "no tps line")
}

func TestPgbenchScriptShape(t *testing.T) {
	t.Parallel()
	body, err := pgbenchBody()
	require.NoError(t, err)
	require.Contains(t, body, `"eventData":{"item":{"sku":"sku-1"`)
	require.NotContains(t, body, "'")
}

// sample is a small report for the output tests.
func sample() *Report {
	r := &Report{RunID: "abcd0123", Started: time.Unix(0, 0).UTC(), Finished: time.Unix(60, 0).UTC(),
		Config:      Config{}.withDefaults().summary(),
		Environment: Environment{CPUs: 2, Postgres: "PostgreSQL 15", Settings: map[string]string{"fsync": "off"}}}
	for _, c := range []int{1, 8, 64} {
		r.Throughput = append(r.Throughput,
			Throughput{Mode: ModeActor, Concurrency: c, CommandsPerSec: float64(1000 * c), P50: 1, P99: 3, RoundTripsPerCommand: 1},
			Throughput{Mode: ModeStateless, Concurrency: c, CommandsPerSec: float64(300 * c), P50: 2, P99: 9, RoundTripsPerCommand: 2})
	}
	r.Projection = []ProjectionResult{{Events: 30000, Seconds: 2, EventsPerSec: 15000, BatchSize: 500},
		{Events: 30000, Seconds: 1, EventsPerSec: 30000, BatchSize: 2000}}
	r.Lag = &LagResult{TargetRate: 1000, Commands: 10, Lag: Latency{Count: 10, P50: 5, P99: 120}}
	r.StreamLength = []LengthResult{
		{Events: 10, Cached: Latency{P50: 0.4}, Stateless: Latency{P50: 0.6}},
		{Events: 10000, Cached: Latency{P50: 0.5}, Stateless: Latency{P50: 200}},
	}
	r.Pgbench = &PgbenchResult{TPS: 100000, GroupTPS: 20000, GroupStreams: 10}
	r.Targets = targets(r)
	return r
}

func TestTargets(t *testing.T) {
	t.Parallel()
	got := map[string]bool{}
	for _, tg := range sample().Targets {
		got[tg.Name] = tg.Met
	}
	require.Equal(t, map[string]bool{
		"actor vs stateless commands/s at C=64":            false, // 3.33x
		"actor commands/s at C=64 vs pgbench ceiling":      true,  // 0.64
		"actor commands/s at C=64 vs group-commit ceiling": false, // 0.32
		"cached command p50 on 10,000 vs 10 events":        true,  // 1.25x
		"projection throughput from cold":                  true,
		"end-to-end lag p99 at 1,000 commands/s":           false, // 120 ms
	}, got)
}

func TestWriteTableAndSVG(t *testing.T) {
	t.Parallel()
	r := sample()
	var out bytes.Buffer
	require.NoError(t, r.WriteTable(&out))
	s := out.String()
	require.Regexp(t, `(?m)^\s+actor\s+64\s+64,000\s+0\s+1\.00\s+0\.00\s+3\.00\s+0\s+0\s+1\.00$`, s)
	require.Regexp(t, `(?m)^\s+stateless\s+64\s+19,200\s`, s)
	require.Contains(t, s, "MISSED actor vs stateless commands/s at C=64: 3.33x (goal >= 5x)")
	require.Contains(t, s, "met    projection throughput from cold: 15,000 events/s at batch 500, 30,000 events/s at batch 2000")

	out.Reset()
	require.NoError(t, r.WriteSVG(&out))
	dec := xml.NewDecoder(bytes.NewReader(out.Bytes()))
	var circles int
	for {
		tok, err := dec.Token()
		if err != nil {
			require.ErrorContains(t, err, "EOF")
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "circle" {
			circles++
		}
	}
	require.Equal(t, 6+4, circles, "a point per mode and concurrency, and per length and mode")
}

func TestNiceStep(t *testing.T) {
	t.Parallel()
	for raw, want := range map[float64]float64{0.7: 1, 1: 1, 1.2: 2, 3: 5, 7: 10, 1234: 2000, 0: 1} {
		require.Equal(t, want, niceStep(raw), "niceStep(%v)", raw)
	}
}
