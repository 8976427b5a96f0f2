package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/troupehq/troupe/cli"
	"github.com/troupehq/troupe/cmd/troupe/internal/bench"
)

type benchCmd struct {
	Quick         bool   `help:"Quick preset: every measurement at small sizes, under a minute in total."`
	JSON          bool   `name:"json" help:"Print the report as JSON instead of tables."`
	Plot          string `placeholder:"FILE.svg" type:"path" help:"Also write SVG charts (throughput vs concurrency, latency vs stream length) to this file."`
	StartPostgres bool   `name:"start-postgres" help:"Start a throwaway PostgreSQL for the run (the default when no database URL is set)."`

	Tenants           int           `placeholder:"T" help:"Tenants (default 4, quick 2)."`
	Carts             int           `placeholder:"N" help:"Carts each tenant keeps open (default 64, quick 32)."`
	Items             int           `placeholder:"K" help:"Items added to each cart before checkout (default 5)."`
	Concurrency       []int         `placeholder:"C" help:"Concurrent senders to measure, each in both modes (default 1,8,64)."`
	Runs              int           `help:"Runs at the highest concurrency; the report gives medians (default 3, quick 1)."`
	Duration          time.Duration `help:"Measured time of each throughput run (default 10s, quick 2s)."`
	Warmup            time.Duration `help:"Unmeasured warm-up before each throughput run (default 1s, quick 500ms)."`
	LagRate           int           `help:"Commands per second during the end-to-end lag measurement (default 1000)."`
	LagDuration       time.Duration `help:"Length of the end-to-end lag measurement (default 10s, quick 3s)."`
	MemoryStreams     int           `placeholder:"M" help:"Stream actors activated to measure heap per actor (default 10000, quick 2000)."`
	StreamLengths     []int         `placeholder:"N" help:"Stream lengths for the latency-vs-length measurement (default 10,1000,10000)."`
	Samples           int           `help:"Commands timed per stream length and mode (default 50, quick 10)."`
	ProjectionBatches []int         `name:"projection-batches" placeholder:"B" help:"Batch sizes the carts projection is measured at from cold; the first is also used for the lag (default 500,2000)."`
	PoolSize          int           `help:"Connections in each mode's pool (default: one per sender plus 8)."`
	PgbenchSeconds    int           `name:"pgbench-seconds" help:"pgbench -T for the PostgreSQL ceiling (default 20, quick 3)."`
	NoPgbench         bool          `name:"no-pgbench" help:"Skip the pgbench ceiling."`
	CPUProfile        string        `name:"cpuprofile" placeholder:"FILE" type:"path" help:"Write a CPU profile of the whole run (go tool pprof FILE)."`

	Cluster        bool `help:"Measure the cluster instead: a command to a local vs a remote owner (p50, p99, CPU per command) and 1 vs 3 members on one PostgreSQL (commands/s), every member a child process of this binary. Uses --runs (default 3), --duration (10s), --warmup (2s), --tenants, --carts, --items."`
	StaticMembers  bool `name:"static-members" help:"With --cluster: the members find each other through a static list instead of the PostgreSQL membership provider."`
	LatencySenders int  `name:"latency-senders" help:"With --cluster: senders on member 1 in the local and remote runs (default 4)."`
	Senders        int  `help:"With --cluster: senders of a throughput run in all, split over the members (default 48)."`
}

func (c *benchCmd) config(a *cli.Env) bench.Config {
	var cfg bench.Config
	if c.Quick {
		cfg = bench.Quick()
	}
	setInt := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	setDur := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	setInt(&cfg.Tenants, c.Tenants)
	setInt(&cfg.Carts, c.Carts)
	setInt(&cfg.Items, c.Items)
	setInt(&cfg.Runs, c.Runs)
	setInt(&cfg.LagRate, c.LagRate)
	setInt(&cfg.MemoryStreams, c.MemoryStreams)
	setInt(&cfg.LengthSamples, c.Samples)
	if len(c.ProjectionBatches) > 0 {
		cfg.ProjectionBatches = c.ProjectionBatches
	}
	setInt(&cfg.PoolSize, c.PoolSize)
	setInt(&cfg.PgbenchSeconds, c.PgbenchSeconds)
	setDur(&cfg.Duration, c.Duration)
	setDur(&cfg.Warmup, c.Warmup)
	setDur(&cfg.LagDuration, c.LagDuration)
	if len(c.Concurrency) > 0 {
		cfg.Concurrency = c.Concurrency
	}
	if len(c.StreamLengths) > 0 {
		cfg.StreamLengths = c.StreamLengths
	}
	if c.NoPgbench {
		cfg.PgbenchSeconds = -1
	}
	if !c.StartPostgres {
		cfg.DatabaseURL = a.DatabaseURL()
	}
	cfg.Progress = a.Stderr()
	cfg.Logger = a.Logger()
	return cfg
}

func (c *benchCmd) Run(a *cli.Env) error {
	for name, v := range map[string]int{"--tenants": c.Tenants, "--carts": c.Carts, "--items": c.Items, "--runs": c.Runs,
		"--lag-rate": c.LagRate, "--memory-streams": c.MemoryStreams, "--samples": c.Samples,
		"--pgbench-seconds": c.PgbenchSeconds} {
		if v < 0 {
			return cli.Usagef("%s must be positive, got %d", name, v)
		}
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return fmt.Errorf("create the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if c.Cluster {
		return c.runCluster(a)
	}
	rep, err := bench.Run(a.Context(), c.config(a))
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(a.Stdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
	} else if err := rep.WriteTable(a.Stdout()); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if c.Plot != "" {
		f, err := os.Create(c.Plot)
		if err != nil {
			return fmt.Errorf("write the charts: %w", err)
		}
		werr := rep.WriteSVG(f)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("write the charts to %s: %w", c.Plot, werr)
		}
		fmt.Fprintf(a.Stderr(), "bench: charts written to %s\n", c.Plot)
	}
	return nil
}

// runCluster is bench --cluster: the members are this binary, run as
// "troupe __bench-member" (main dispatches it before the command line).
func (c *benchCmd) runCluster(a *cli.Env) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to start the members: %w", err)
	}
	cfg := bench.ClusterConfig{MemberBinary: bin, StaticMembers: c.StaticMembers, Runs: c.Runs, Duration: c.Duration,
		Warmup: c.Warmup, LatencySenders: c.LatencySenders, Senders: c.Senders, Tenants: c.Tenants, Carts: c.Carts,
		Items: c.Items, Progress: a.Stderr(), Logger: a.Logger()}
	if c.Quick {
		for dst, def := range map[*time.Duration]time.Duration{&cfg.Duration: 2 * time.Second, &cfg.Warmup: 500 * time.Millisecond} {
			if *dst == 0 {
				*dst = def
			}
		}
		if cfg.Runs == 0 {
			cfg.Runs = 1
		}
	}
	if !c.StartPostgres {
		cfg.DatabaseURL = a.DatabaseURL()
	}
	rep, err := bench.RunCluster(a.Context(), cfg)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(a.Stdout())
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(a.Stdout())
}
