package bench

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// ClusterReport is what RunCluster measured.
type ClusterReport struct {
	RunID       string      `json:"runId"`
	Started     time.Time   `json:"started"`
	Finished    time.Time   `json:"finished"`
	Environment Environment `json:"environment"`
	// Provider is "postgres" or "static".
	Provider string  `json:"provider"`
	Runs     int     `json:"runs"`
	Seconds  float64 `json:"secondsPerRun"`
	// Placement compares a command whose cart member 1 owns (local) with
	// one whose cart another member owns (remote), on a cluster of three.
	Placement []PlacementResult `json:"placement"`
	// Members compares the workload on one member and on three, with the
	// same senders in all.
	Members []MembersResult `json:"members"`
}

// ClusterRun is one run of a cluster measurement.
type ClusterRun struct {
	Commands       int64   `json:"commands"`
	CommandsPerSec float64 `json:"commandsPerSec"`
	Latency        Latency `json:"latency"`
	// CPUPerCommandMicros is the CPU time of every member in the measured
	// window (PostgreSQL's not included) over the commands answered.
	CPUPerCommandMicros float64 `json:"cpuPerCommandMicros"`
	Errors              int64   `json:"errors"`
	FirstError          string  `json:"firstError,omitempty"`
}

// ClusterMedians are the medians over the runs of one measurement.
type ClusterMedians struct {
	CommandsPerSec      float64      `json:"commandsPerSec"`
	P50                 float64      `json:"p50Ms"`
	P99                 float64      `json:"p99Ms"`
	CPUPerCommandMicros float64      `json:"cpuPerCommandMicros"`
	Errors              int64        `json:"errors"`
	FirstError          string       `json:"firstError,omitempty"`
	Runs                []ClusterRun `json:"runs"`
}

// PlacementResult is the local or the remote latency measurement.
type PlacementResult struct {
	Placement string `json:"placement"`
	Senders   int    `json:"senders"`
	ClusterMedians
}

// MembersResult is the throughput of one cluster size.
type MembersResult struct {
	Members int `json:"members"`
	Senders int `json:"senders"`
	ClusterMedians
}

func clusterMedians(runs []ClusterRun) ClusterMedians {
	m := ClusterMedians{Runs: runs}
	col := func(f func(ClusterRun) float64) float64 {
		vs := make([]float64, len(runs))
		for i, r := range runs {
			vs[i] = f(r)
		}
		return median(vs)
	}
	m.CommandsPerSec = col(func(r ClusterRun) float64 { return r.CommandsPerSec })
	m.P50 = col(func(r ClusterRun) float64 { return r.Latency.P50 })
	m.P99 = col(func(r ClusterRun) float64 { return r.Latency.P99 })
	m.CPUPerCommandMicros = col(func(r ClusterRun) float64 { return r.CPUPerCommandMicros })
	for _, r := range runs {
		m.Errors += r.Errors
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
	}
	return m
}

// RunCluster measures the cluster: local versus remote owner (latency and
// CPU per command, on three members) and one versus three members on one
// PostgreSQL (commands per second). Every member is a child process.
func RunCluster(ctx context.Context, cfg ClusterConfig) (rep *ClusterReport, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	progress := func(format string, args ...any) { fmt.Fprintf(cfg.Progress, format+"\n", args...) }
	rep = &ClusterReport{Started: time.Now().UTC(), Provider: "postgres", Runs: cfg.Runs, Seconds: cfg.Duration.Seconds()}
	if cfg.StaticMembers {
		rep.Provider = "static"
	}
	progress("bench: preparing PostgreSQL")
	srv, err := openServer(ctx, cfg.DatabaseURL, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := srv.close(); cerr != nil && err == nil {
			err = fmt.Errorf("stop the throwaway PostgreSQL: %w", cerr)
		}
	}()
	rep.RunID = srv.runID
	if rep.Environment, err = srv.environment(ctx); err != nil {
		return nil, err
	}

	// Local versus remote: one cluster of three, member 1 sends.
	progress("bench: [1/2] local vs remote owner: 3 members, %d senders on member 1, %d runs of %s + %s warm-up",
		cfg.LatencySenders, cfg.Runs, cfg.Duration, cfg.Warmup)
	runs := map[string][]ClusterRun{}
	if err := withCluster(ctx, cfg, srv, 3, func(cl *cluster) error {
		for r := range cfg.Runs {
			for _, placement := range []string{PlacementLocal, PlacementRemote} {
				req := loadRequest{Placement: placement, Prefix: fmt.Sprintf("%s%d", placement, r), Carts: 8,
					Concurrency: cfg.LatencySenders, Warmup: cfg.Warmup, Duration: cfg.Duration}
				// Members 2 and 3 send nothing; they report their CPU time.
				idle := loadRequest{Placement: PlacementIdle, Warmup: cfg.Warmup, Duration: cfg.Duration}
				reqs := []loadRequest{req, idle, idle}
				run, err := measure(ctx, cl, reqs, cfg.Duration)
				if err != nil {
					return fmt.Errorf("%s run %d: %w", placement, r+1, err)
				}
				runs[placement] = append(runs[placement], run)
				progress("  %s run %d: p50 %.3f ms, p99 %.3f ms, %s commands/s, %.0f µs CPU/command, %d errors",
					placement, r+1, run.Latency.P50, run.Latency.P99, fmtRate(run.CommandsPerSec), run.CPUPerCommandMicros, run.Errors)
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("local vs remote: %w", err)
	}
	for _, p := range []string{PlacementLocal, PlacementRemote} {
		rep.Placement = append(rep.Placement, PlacementResult{Placement: p, Senders: cfg.LatencySenders, ClusterMedians: clusterMedians(runs[p])})
	}

	// One versus three members, alternating, a fresh database each run.
	progress("bench: [2/2] 1 vs 3 members on one PostgreSQL: %d senders in all, %d runs each of %s + %s warm-up",
		cfg.Senders, cfg.Runs, cfg.Duration, cfg.Warmup)
	sizes := map[int][]ClusterRun{}
	for r := range cfg.Runs {
		for _, n := range []int{1, 3} {
			err := withCluster(ctx, cfg, srv, n, func(cl *cluster) error {
				reqs := make([]loadRequest, n)
				for i := range reqs {
					reqs[i] = loadRequest{Placement: PlacementAny, Prefix: fmt.Sprintf("m%d-%d", i, r), Tenants: cfg.Tenants,
						Carts: max(cfg.Carts/n, 1), Items: cfg.Items, Concurrency: max(cfg.Senders/n, 1),
						Warmup: cfg.Warmup, Duration: cfg.Duration}
				}
				run, err := measure(ctx, cl, reqs, cfg.Duration)
				if err != nil {
					return err
				}
				sizes[n] = append(sizes[n], run)
				progress("  %d member(s) run %d: %s commands/s, p50 %.2f ms, p99 %.2f ms, %.0f µs CPU/command, %d errors",
					n, r+1, fmtRate(run.CommandsPerSec), run.Latency.P50, run.Latency.P99, run.CPUPerCommandMicros, run.Errors)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("%d members run %d: %w", n, r+1, err)
			}
		}
	}
	for _, n := range []int{1, 3} {
		rep.Members = append(rep.Members, MembersResult{Members: n, Senders: max(cfg.Senders/n, 1) * n, ClusterMedians: clusterMedians(sizes[n])})
	}
	rep.Environment.LoadEnd = loadAverage()
	rep.Finished = time.Now().UTC()
	return rep, nil
}

// withCluster runs fn on n fresh members on a fresh scratch database, then
// stops them and drops the database.
func withCluster(ctx context.Context, cfg ClusterConfig, srv *server, n int, fn func(*cluster) error) (err error) {
	db, err := srv.newDatabase(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if derr := db.drop(ctx); derr != nil && err == nil {
			err = derr
		}
	}()
	cl, err := cfg.startCluster(ctx, db, n)
	if err != nil {
		return err
	}
	defer func() {
		if serr := cl.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	return fn(cl)
}

// measure runs reqs on the members at once and sums what they measured.
func measure(ctx context.Context, cl *cluster, reqs []loadRequest, window time.Duration) (ClusterRun, error) {
	results, err := cl.load(ctx, reqs)
	if err != nil {
		return ClusterRun{}, err
	}
	var run ClusterRun
	var lats []time.Duration
	var cpu float64
	for _, r := range results {
		run.Commands += r.Commands
		run.Errors += r.Errors
		if run.FirstError == "" {
			run.FirstError = r.FirstError
		}
		cpu += r.CPUSeconds
		for _, n := range r.Nanos {
			lats = append(lats, time.Duration(n))
		}
	}
	run.Latency = summarize(lats)
	run.CommandsPerSec = float64(run.Commands) / window.Seconds()
	if run.Commands > 0 {
		run.CPUPerCommandMicros = cpu / float64(run.Commands) * 1e6
	}
	return run, nil
}

// WriteTable prints the report as text tables, with the ratios side by
// side.
func (r *ClusterReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "troupe bench --cluster: members as child processes on 127.0.0.1, membership: %s; medians of %d runs of %.0fs\n",
		r.Provider, r.Runs, r.Seconds)
	e := r.Environment
	fmt.Fprintf(w, "machine: %d CPUs %s, %s/%s, %s\npostgres: %s\nload average: %s at start, %s at end\n\n", e.CPUs, e.CPUModel,
		e.OS, e.Arch, e.GoVersion, e.Postgres, e.LoadStart, e.LoadEnd)
	fmt.Fprintln(w, "Local vs remote owner (3 members; member 1 sends AddItem to carts it owns, or that another member owns):")
	fmt.Fprintln(tw, "owner\tsenders\tcommands/s\tp50 ms\tp99 ms\tCPU µs/command\terrors\t")
	for _, p := range r.Placement {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.3f\t%.3f\t%.0f\t%d\t\n", p.Placement, p.Senders, fmtRate(p.CommandsPerSec), p.P50, p.P99,
			p.CPUPerCommandMicros, p.Errors)
	}
	if len(r.Placement) == 2 && r.Placement[0].P50 > 0 && r.Placement[0].CPUPerCommandMicros > 0 {
		l, rm := r.Placement[0], r.Placement[1]
		fmt.Fprintf(tw, "remote/local\t\t%.2f×\t%.2f×\t%.2f×\t%.2f×\t\t\n", ratio(rm.CommandsPerSec, l.CommandsPerSec), ratio(rm.P50, l.P50),
			ratio(rm.P99, l.P99), ratio(rm.CPUPerCommandMicros, l.CPUPerCommandMicros))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\n1 vs 3 members on one PostgreSQL (the cart workload, the same senders in all, split over the members):")
	fmt.Fprintln(tw, "members\tsenders\tcommands/s\tp50 ms\tp99 ms\tCPU µs/command\terrors\t")
	for _, m := range r.Members {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%.2f\t%.0f\t%d\t\n", m.Members, m.Senders, fmtRate(m.CommandsPerSec), m.P50, m.P99,
			m.CPUPerCommandMicros, m.Errors)
	}
	if len(r.Members) == 2 && r.Members[0].CommandsPerSec > 0 {
		one, three := r.Members[0], r.Members[1]
		fmt.Fprintf(tw, "3/1\t\t%.2f×\t%.2f×\t%.2f×\t%.2f×\t\t\n", ratio(three.CommandsPerSec, one.CommandsPerSec), ratio(three.P50, one.P50),
			ratio(three.P99, one.P99), ratio(three.CPUPerCommandMicros, one.CPUPerCommandMicros))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range append(append([]ClusterMedians{}, medians(r.Placement)...), membersMedians(r.Members)...) {
		if res.FirstError != "" {
			fmt.Fprintf(w, "\nfirst error: %s\n", res.FirstError)
			break
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func medians(ps []PlacementResult) []ClusterMedians {
	out := make([]ClusterMedians, len(ps))
	for i, p := range ps {
		out[i] = p.ClusterMedians
	}
	return out
}

func membersMedians(ms []MembersResult) []ClusterMedians {
	out := make([]ClusterMedians, len(ms))
	for i, m := range ms {
		out[i] = m.ClusterMedians
	}
	return out
}
