package bench

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// bench is one benchmark run.
type bench struct {
	cfg   Config
	srv   *server
	seq   atomic.Int64
	steps int
	step  int
}

func (b *bench) progressf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Progress, format+"\n", args...)
}

func (b *bench) stepf(format string, args ...any) {
	b.step++
	b.progressf("bench: [%d/%d] %s", b.step, b.steps, fmt.Sprintf(format, args...))
}

// Run runs the benchmark described by cfg and returns its report.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg}
	rep = &Report{Started: time.Now().UTC(), Config: cfg.summary()}
	b.progressf("bench: preparing PostgreSQL")
	srv, err := openServer(ctx, cfg.DatabaseURL, cfg.Logger)
	if err != nil {
		return nil, err
	}
	b.srv = srv
	rep.RunID = srv.runID
	defer func() {
		if cerr := srv.close(); cerr != nil && err == nil {
			err = fmt.Errorf("stop the throwaway PostgreSQL: %w", cerr)
		}
	}()
	if rep.Environment, err = srv.environment(ctx); err != nil {
		return nil, err
	}

	maxC := slices.Max(cfg.Concurrency)
	runsAt := func(c int) int {
		if c == maxC {
			return cfg.Runs
		}
		return 1
	}
	for _, c := range cfg.Concurrency {
		b.steps += 2 * runsAt(c)
	}
	b.steps += 4 // projection, lag, memory, stream lengths
	if cfg.PgbenchSeconds > 0 {
		b.steps++
	}

	// Throughput: the modes alternate, so drift on a shared machine
	// affects both alike.
	var projDB *database
	defer func() {
		if projDB != nil {
			_ = projDB.drop(ctx)
		}
	}()
	for _, c := range cfg.Concurrency {
		runs := map[string][]RunResult{}
		for r := range runsAt(c) {
			for _, mode := range []string{ModeActor, ModeStateless} {
				b.stepf("throughput %s C=%d run %d/%d (%s + %s warm-up)", mode, c, r+1, runsAt(c), cfg.Duration, cfg.Warmup)
				keep := mode == ModeActor && c == maxC && r == runsAt(c)-1
				res, db, err := b.throughputRun(ctx, mode, c, keep)
				if err != nil {
					return nil, fmt.Errorf("throughput %s C=%d: %w", mode, c, err)
				}
				if db != nil {
					projDB = db
				}
				runs[mode] = append(runs[mode], res)
				b.progressf("  %s commands/s, p50 %.2f ms, p99 %.2f ms, %.2f round trips/command, %d conflicts, %d errors",
					fmtRate(res.CommandsPerSec), res.Latency.P50, res.Latency.P99, res.RoundTripsPerCommand, res.Conflicts, res.Errors)
			}
		}
		for _, mode := range []string{ModeActor, ModeStateless} {
			rep.Throughput = append(rep.Throughput, medianOf(mode, c, runs[mode]))
		}
	}

	b.stepf("projection throughput from cold (carts snapshot read model, batch sizes %v)", cfg.ProjectionBatches)
	if projDB != nil {
		for _, batch := range cfg.ProjectionBatches {
			res, err := b.projectionCold(ctx, projDB, batch)
			if err != nil {
				return nil, fmt.Errorf("projection throughput at batch %d: %w", batch, err)
			}
			rep.Projection = append(rep.Projection, res)
			b.progressf("  batch %d: %s events into %s carts in %.2fs: %s events/s", batch, fmtInt(res.Events),
				fmtInt(res.Carts), res.Seconds, fmtRate(res.EventsPerSec))
		}
		if err := projDB.drop(ctx); err != nil {
			return nil, err
		}
		projDB = nil
	}

	b.stepf("end-to-end lag at %d commands/s for %s", cfg.LagRate, cfg.LagDuration)
	lag, err := b.lag(ctx)
	if err != nil {
		return nil, fmt.Errorf("end-to-end lag: %w", err)
	}
	rep.Lag = &lag
	b.progressf("  %s commands at %s/s: lag p50 %.2f ms, p99 %.2f ms", fmtInt(lag.Commands), fmtRate(lag.AchievedRate), lag.Lag.P50, lag.Lag.P99)

	b.stepf("heap per live stream actor (%s actors)", fmtInt(int64(cfg.MemoryStreams)))
	mem, err := b.memory(ctx)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	rep.Memory = &mem
	b.progressf("  %s bytes per actor (%s live)", fmtInt(int64(mem.BytesPerActor)), fmtInt(int64(mem.LiveActors)))

	b.stepf("one command's latency by stream length (%d commands each)", cfg.LengthSamples)
	if rep.StreamLength, err = b.streamLengths(ctx); err != nil {
		return nil, fmt.Errorf("stream length: %w", err)
	}

	if cfg.PgbenchSeconds > 0 {
		b.stepf("pgbench ceilings (-c %d -j %d -T %d, three times: one stream per transaction without and with pg_notify, then %d streams per transaction)",
			cfg.PgbenchClients, cfg.PgbenchThreads, cfg.PgbenchSeconds, pgbenchGroupStreams)
		pg, err := b.pgbench(ctx)
		if err != nil {
			return nil, fmt.Errorf("pgbench: %w", err)
		}
		rep.Pgbench = &pg
		b.progressf("  %s transactions/s (%s with the append's pg_notify); %d streams per transaction: %s appends/s",
			fmtRate(pg.TPS), fmtRate(pg.TPSNotify), pg.GroupStreams, fmtRate(pg.GroupAppendsPerSec()))
	}
	rep.Environment.LoadEnd = loadAverage()
	rep.Finished = time.Now().UTC()
	rep.Targets = targets(rep)
	return rep, nil
}

// medianOf summarises the runs of one mode at one concurrency: every
// figure is the median over the runs, errors and conflicts are summed.
func medianOf(mode string, c int, runs []RunResult) Throughput {
	t := Throughput{Mode: mode, Concurrency: c, Runs: runs}
	col := func(f func(RunResult) float64) float64 {
		vs := make([]float64, len(runs))
		for i, r := range runs {
			vs[i] = f(r)
		}
		return median(vs)
	}
	t.CommandsPerSec = col(func(r RunResult) float64 { return r.CommandsPerSec })
	t.EventsPerSec = col(func(r RunResult) float64 { return r.EventsPerSec })
	t.P50 = col(func(r RunResult) float64 { return r.Latency.P50 })
	t.P95 = col(func(r RunResult) float64 { return r.Latency.P95 })
	t.P99 = col(func(r RunResult) float64 { return r.Latency.P99 })
	t.RoundTripsPerCommand = col(func(r RunResult) float64 { return r.RoundTripsPerCommand })
	for _, r := range runs {
		t.Commands += r.Commands
		t.Errors += r.Errors
		t.Conflicts += r.Conflicts
		if t.FirstError == "" {
			t.FirstError = r.FirstError
		}
	}
	return t
}
