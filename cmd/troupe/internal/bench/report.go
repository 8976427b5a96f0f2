package bench

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/troupehq/troupe/internal/progress"
)

// Report is the outcome of a benchmark run. It is what `troupe bench
// --json` prints.
type Report struct {
	// RunID names the run's scratch databases (troupe_bench_<RunID>_<n>).
	RunID       string        `json:"runId"`
	Started     time.Time     `json:"started"`
	Finished    time.Time     `json:"finished"`
	Config      ConfigSummary `json:"config"`
	Environment Environment   `json:"environment"`
	// Throughput has one entry per mode and concurrency.
	Throughput []Throughput `json:"throughput"`
	// Projection has one entry per batch size.
	Projection   []ProjectionResult `json:"projection"`
	Lag          *LagResult         `json:"lag,omitempty"`
	Memory       *MemoryResult      `json:"memory,omitempty"`
	StreamLength []LengthResult     `json:"streamLength"`
	Pgbench      *PgbenchResult     `json:"pgbench,omitempty"`
	Targets      []Target           `json:"targets"`
}

// ConfigSummary is the configuration a report was measured with.
type ConfigSummary struct {
	Tenants           int     `json:"tenants"`
	Carts             int     `json:"carts"`
	Items             int     `json:"items"`
	Concurrency       []int   `json:"concurrency"`
	Runs              int     `json:"runs"`
	DurationSeconds   float64 `json:"durationSeconds"`
	WarmupSeconds     float64 `json:"warmupSeconds"`
	ProjectionBatches []int   `json:"projectionBatches"`
	LagRate           int     `json:"lagRate"`
	LagSeconds        float64 `json:"lagSeconds"`
	MemoryStreams     int     `json:"memoryStreams"`
	StreamLengths     []int   `json:"streamLengths"`
	LengthSamples     int     `json:"lengthSamples"`
	PgbenchSeconds    int     `json:"pgbenchSeconds"`
}

func (c Config) summary() ConfigSummary {
	return ConfigSummary{Tenants: c.Tenants, Carts: c.Carts, Items: c.Items, Concurrency: c.Concurrency, Runs: c.Runs,
		DurationSeconds: c.Duration.Seconds(), WarmupSeconds: c.Warmup.Seconds(), ProjectionBatches: c.ProjectionBatches,
		LagRate: c.LagRate, LagSeconds: c.LagDuration.Seconds(), MemoryStreams: c.MemoryStreams,
		StreamLengths: c.StreamLengths, LengthSamples: c.LengthSamples, PgbenchSeconds: max(c.PgbenchSeconds, 0)}
}

// Throughput is one mode at one concurrency: medians over its runs.
type Throughput struct {
	Mode                 string      `json:"mode"`
	Concurrency          int         `json:"concurrency"`
	CommandsPerSec       float64     `json:"commandsPerSec"`
	EventsPerSec         float64     `json:"eventsPerSec"`
	P50                  float64     `json:"p50Ms"`
	P95                  float64     `json:"p95Ms"`
	P99                  float64     `json:"p99Ms"`
	RoundTripsPerCommand float64     `json:"roundTripsPerCommand"`
	Commands             int64       `json:"commands"`
	Errors               int64       `json:"errors"`
	Conflicts            int64       `json:"conflicts"`
	FirstError           string      `json:"firstError,omitempty"`
	Runs                 []RunResult `json:"runs"`
}

// Target is one of the performance targets and whether this run
// met it.
type Target struct {
	Name  string  `json:"name"`
	Goal  string  `json:"goal"`
	Value float64 `json:"value"`
	Shown string  `json:"shown"`
	Met   bool    `json:"met"`
}

// find returns the throughput entry of mode at c.
func (r *Report) find(mode string, c int) (Throughput, bool) {
	for _, t := range r.Throughput {
		if t.Mode == mode && t.Concurrency == c {
			return t, true
		}
	}
	return Throughput{}, false
}

// maxConcurrency returns the highest concurrency measured.
func (r *Report) maxConcurrency() int {
	m := 0
	for _, t := range r.Throughput {
		m = max(m, t.Concurrency)
	}
	return m
}

// targets checks the report against the targets.
func targets(r *Report) []Target {
	var out []Target
	c := r.maxConcurrency()
	a, okA := r.find(ModeActor, c)
	s, okS := r.find(ModeStateless, c)
	if okA && okS && s.CommandsPerSec > 0 {
		v := a.CommandsPerSec / s.CommandsPerSec
		out = append(out, Target{Name: fmt.Sprintf("actor vs stateless commands/s at C=%d", c), Goal: ">= 5x",
			Value: v, Shown: fmt.Sprintf("%.2fx", v), Met: v >= 5})
	}
	if okA && r.Pgbench != nil && r.Pgbench.TPS > 0 {
		v := a.CommandsPerSec / r.Pgbench.TPS
		out = append(out, Target{Name: fmt.Sprintf("actor commands/s at C=%d vs pgbench ceiling", c), Goal: ">= 0.5",
			Value: v, Shown: fmt.Sprintf("%.2f (%s vs %s tps)", v, fmtRate(a.CommandsPerSec), fmtRate(r.Pgbench.TPS)), Met: v >= 0.5})
	}
	if p := r.Pgbench; okA && p != nil && p.GroupTPS > 0 && p.GroupStreams > 0 {
		ceiling := p.GroupAppendsPerSec()
		v := a.CommandsPerSec / ceiling
		out = append(out, Target{Name: fmt.Sprintf("actor commands/s at C=%d vs group-commit ceiling", c), Goal: ">= 0.5",
			Value: v, Shown: fmt.Sprintf("%.2f (%s vs %s appends/s, %d streams per transaction)", v, fmtRate(a.CommandsPerSec), fmtRate(ceiling), p.GroupStreams),
			Met: v >= 0.5})
	}
	if n := len(r.StreamLength); n >= 2 && r.StreamLength[0].Cached.P50 > 0 {
		short, long := r.StreamLength[0], r.StreamLength[n-1]
		v := long.Cached.P50 / short.Cached.P50
		out = append(out, Target{Name: fmt.Sprintf("cached command p50 on %s vs %s events", fmtInt(int64(long.Events)), fmtInt(int64(short.Events))),
			Goal: "<= 1.5x", Value: v, Shown: fmt.Sprintf("%.2fx (%.2f vs %.2f ms)", v, long.Cached.P50, short.Cached.P50), Met: v <= 1.5})
	}
	if len(r.Projection) > 0 {
		best := r.Projection[0]
		var shown []string
		for _, p := range r.Projection {
			if p.EventsPerSec > best.EventsPerSec {
				best = p
			}
			shown = append(shown, fmt.Sprintf("%s events/s at batch %d", fmtRate(p.EventsPerSec), p.BatchSize))
		}
		out = append(out, Target{Name: "projection throughput from cold", Goal: ">= 20,000 events/s",
			Value: best.EventsPerSec, Shown: strings.Join(shown, ", "), Met: best.EventsPerSec >= 20000})
	}
	if l := r.Lag; l != nil && l.Lag.Count > 0 {
		out = append(out, Target{Name: fmt.Sprintf("end-to-end lag p99 at %s commands/s", fmtInt(int64(l.TargetRate))),
			Goal: "< 100 ms", Value: l.Lag.P99, Shown: fmt.Sprintf("%.2f ms", l.Lag.P99), Met: l.Lag.P99 < 100})
	}
	return out
}

// WriteTable writes the report as human-readable tables.
func (r *Report) WriteTable(w io.Writer) error {
	var sb strings.Builder
	e := r.Environment
	fmt.Fprintf(&sb, "Troupe benchmark, %s (%s)\n", r.Started.Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&sb, "machine: %d CPUs %s, %s memory, %s/%s, %s\n", e.CPUs, e.CPUModel, fmtBytes(e.MemoryBytes), e.OS, e.Arch, e.GoVersion)
	server := "given server"
	if e.Throwaway {
		server = "throwaway server"
	}
	fmt.Fprintf(&sb, "postgres: %s (%s)\n", e.Postgres, server)
	keys := make([]string, 0, len(e.Settings))
	for k := range e.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		kv = append(kv, k+"="+e.Settings[k])
	}
	fmt.Fprintf(&sb, "settings: %s\n", strings.Join(kv, " "))
	fmt.Fprintf(&sb, "load average: %s at start, %s at end\n", e.LoadStart, e.LoadEnd)
	c := r.Config
	fmt.Fprintf(&sb, "workload: %d tenants x %d open carts, %d items per cart (create, %d adds, checkout); %gs runs after %gs warm-up; %d run(s) at the highest concurrency (medians)\n\n",
		c.Tenants, c.Carts, c.Items, c.Items, c.DurationSeconds, c.WarmupSeconds, c.Runs)

	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tC\tcommands/s\tevents/s\tp50 ms\tp95 ms\tp99 ms\terrors\tconflicts\tround trips/cmd\t")
	modes := []string{ModeActor, ModeStateless}
	for _, cc := range r.concurrencies() {
		for _, m := range modes {
			t, ok := r.find(m, cc)
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.2f\t%.2f\t%.2f\t%d\t%d\t%.2f\t\n", m, cc, fmtRate(t.CommandsPerSec), fmtRate(t.EventsPerSec),
				t.P50, t.P95, t.P99, t.Errors, t.Conflicts, t.RoundTripsPerCommand)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range r.Throughput {
		if t.FirstError != "" {
			fmt.Fprintf(&sb, "first error (%s, C=%d): %s\n", t.Mode, t.Concurrency, t.FirstError)
		}
	}
	sb.WriteString("\n")
	for _, p := range r.Projection {
		fmt.Fprintf(&sb, "projection from cold, batch %d: %s events into %s carts rows in %.2fs = %s events/s\n",
			p.BatchSize, fmtInt(p.Events), fmtInt(p.Carts), p.Seconds, fmtRate(p.EventsPerSec))
	}
	if l := r.Lag; l != nil {
		fmt.Fprintf(&sb, "end-to-end lag at %s commands/s (achieved %s/s, %s commands, %d errors): append->visible p50 %.2f ms, p99 %.2f ms, max %.2f ms; send->visible p50 %.2f ms, p99 %.2f ms\n",
			fmtInt(int64(l.TargetRate)), fmtRate(l.AchievedRate), fmtInt(l.Commands), l.Errors, l.Lag.P50, l.Lag.P99, l.Lag.Max,
			l.CommandToVisible.P50, l.CommandToVisible.P99)
		if l.FirstError != "" {
			fmt.Fprintf(&sb, "first lag error: %s\n", l.FirstError)
		}
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(&sb, "memory: %s bytes of heap per live stream actor (%s actors of %d-event carts; heap %s -> %s)\n",
			fmtInt(int64(m.BytesPerActor)), fmtInt(int64(m.LiveActors)), m.EventsPerActor, fmtBytes(int64(m.HeapBefore)), fmtBytes(int64(m.HeapAfter)))
	}
	if len(r.StreamLength) > 0 {
		sb.WriteString("\none command's latency by stream length (ms):\n")
		tw = tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "events\tcached p50\tcached p95\tstateless p50\tstateless p95\t")
		for _, l := range r.StreamLength {
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t\n", fmtInt(int64(l.Events)), l.Cached.P50, l.Cached.P95, l.Stateless.P50, l.Stateless.P95)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if p := r.Pgbench; p != nil {
		fmt.Fprintf(&sb, "\npgbench ceiling (UPDATE stream row + INSERT one message per transaction, -c %d -j %d -T %d): %s tps; with the append's pg_notify: %s tps\n",
			p.Clients, p.Threads, p.Seconds, fmtRate(p.TPS), fmtRate(p.TPSNotify))
		if p.GroupTPS > 0 {
			fmt.Fprintf(&sb, "group-commit ceiling (%d streams' appends per transaction): %s transactions/s = %s appends/s\n",
				p.GroupStreams, fmtRate(p.GroupTPS), fmtRate(p.GroupAppendsPerSec()))
		}
		if a, ok := r.find(ModeActor, r.maxConcurrency()); ok && p.TPS > 0 && p.TPSNotify > 0 {
			fmt.Fprintf(&sb, "actor mode at C=%d: %.2f of the plain ceiling, %.2f of the ceiling with pg_notify",
				a.Concurrency, a.CommandsPerSec/p.TPS, a.CommandsPerSec/p.TPSNotify)
			if p.GroupTPS > 0 {
				fmt.Fprintf(&sb, ", %.2f of the group-commit ceiling", a.CommandsPerSec/p.GroupAppendsPerSec())
			}
			sb.WriteString("\n")
		}
	}
	if len(r.Targets) > 0 {
		sb.WriteString("\ntargets:\n")
		for _, t := range r.Targets {
			mark := "MISSED"
			if t.Met {
				mark = "met"
			}
			fmt.Fprintf(&sb, "  %-6s %s: %s (goal %s)\n", mark, t.Name, t.Shown, t.Goal)
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// concurrencies returns the concurrencies measured, ascending.
func (r *Report) concurrencies() []int {
	var cs []int
	for _, t := range r.Throughput {
		if !slices.Contains(cs, t.Concurrency) {
			cs = append(cs, t.Concurrency)
		}
	}
	slices.Sort(cs)
	return cs
}

func fmtInt(n int64) string { return progress.Count(n) }

// fmtRate formats a rate with thousands separators, no decimals.
func fmtRate(v float64) string { return progress.Count(int64(v + 0.5)) }

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
