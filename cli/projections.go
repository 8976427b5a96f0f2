package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/internal/progress"
	"github.com/troupehq/troupe/projection"
)

type projectionsCmd struct {
	List    projectionsListCmd    `cmd:"" help:"List the projections registered in this binary, which it can rebuild."`
	Status  projectionsStatusCmd  `cmd:"" help:"Show every projection's state, checkpoint, lag and last error, as stored in the database."`
	Rebuild projectionsRebuildCmd `cmd:"" help:"Reset a projection's read model and replay the log, with a progress bar. Ctrl-C stops it cleanly."`
}

type projectionsListCmd struct{}

func (projectionsListCmd) Run(a *Env) error {
	names := a.projectionNames()
	if len(names) == 0 {
		fmt.Fprintf(a.io.Out, "no projection is registered in this binary (a service registers its own with cli.Config.Projections); "+
			"\"%s projections status\" reports every projection of the database\n", a.name)
		return nil
	}
	tw := tabwriter.NewWriter(a.io.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENGINE\tDESCRIPTION")
	for _, n := range names {
		p := a.projections[n]
		help := p.Help
		if help == "" {
			help = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n, p.kind(), help)
	}
	return tw.Flush()
}

type projectionsStatusCmd struct {
	Name   string `arg:"" optional:"" name:"name" help:"Show only this projection (every partition it runs for)."`
	Format string `short:"f" enum:"table,json" default:"table" help:"Output format (${enum})."`
}

// projectionsListSQL finds every projection and consumer with a checkpoint
// or a reported state.
const projectionsListSQL = `SELECT subscription_id, partition FROM subscriptions WHERE version = 1
UNION
SELECT projection, partition FROM projection_status
ORDER BY 1, 2`

// statusJSON is one projection in `projections status --format json`.
type statusJSON struct {
	Name       string    `json:"name"`
	Partition  string    `json:"partition"`
	State      string    `json:"state"`
	Active     bool      `json:"active"`
	Owner      string    `json:"owner,omitempty"`
	Checkpoint position  `json:"checkpoint"`
	LastEvent  position  `json:"lastEvent"`
	LagEvents  int64     `json:"lagEvents"`
	LagSeconds float64   `json:"lagSeconds"`
	Error      string    `json:"error,omitempty"`
	FailedAt   *position `json:"failedAt,omitempty"`
	Updated    time.Time `json:"updated,omitzero"`
}

type position struct {
	TransactionID  uint64 `json:"transactionId"`
	GlobalPosition int64  `json:"globalPosition"`
}

func (c *projectionsStatusCmd) Run(a *Env) error {
	return a.withPool(func(pool *pgxpool.Pool) error {
		sts, err := loadStatuses(a.ctx, pool)
		if err != nil {
			return err
		}
		if c.Name != "" {
			var known []string
			var mine []projection.Status
			for _, st := range sts {
				if st.Name == c.Name {
					mine = append(mine, st)
				}
				if len(known) == 0 || known[len(known)-1] != st.Name {
					known = append(known, st.Name)
				}
			}
			if len(mine) == 0 {
				if _, ok := a.projections[c.Name]; ok {
					return fmt.Errorf("projection %q is registered in this binary but has not run on this database "+
						"(per-stream projections have no status row)", c.Name)
				}
				return fmt.Errorf("projection %q has not run on this database (%s); registered in this binary: %s",
					c.Name, listOr(known, "none has run"), listOr(a.projectionNames(), "none"))
			}
			sts = mine
		}
		if c.Format == "json" {
			out := make([]statusJSON, 0, len(sts))
			for _, st := range sts {
				j := statusJSON{Name: st.Name, Partition: st.Partition, State: string(st.State), Active: st.Active,
					Owner: st.Owner, LagEvents: st.LagEvents, LagSeconds: st.Lag.Seconds(), Error: st.Error,
					Checkpoint: position{st.Checkpoint.TransactionID, int64(st.Checkpoint.GlobalPosition)},
					LastEvent:  position{st.LastEvent.TransactionID, int64(st.LastEvent.GlobalPosition)}}
				if !st.Updated.IsZero() {
					j.Updated = st.Updated.UTC()
				}
				if fe := st.FailedEvent; fe != nil {
					j.FailedAt = &position{fe.Position.TransactionID, int64(fe.Position.GlobalPosition)}
				}
				out = append(out, j)
			}
			enc := json.NewEncoder(a.io.Out)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		if len(sts) == 0 {
			fmt.Fprintln(a.io.Out, "no projections have run on this database")
			return nil
		}
		tw := tabwriter.NewWriter(a.io.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPARTITION\tSTATE\tCHECKPOINT\tLAG\tLAST ERROR")
		for _, st := range sts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", st.Name, st.Partition, st.State,
				st.Checkpoint.GlobalPosition, lagText(st), errorText(st))
		}
		return tw.Flush()
	})
}

// loadStatuses returns the status of every projection of the database.
func loadStatuses(ctx context.Context, pool *pgxpool.Pool) ([]projection.Status, error) {
	rows, err := pool.Query(ctx, projectionsListSQL)
	if err != nil {
		return nil, fmt.Errorf("list projections: %w", err)
	}
	type key struct{ name, partition string }
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (key, error) {
		var k key
		err := r.Scan(&k.name, &k.partition)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list projections: %w", err)
	}
	out := make([]projection.Status, 0, len(keys))
	for _, k := range keys {
		st, err := projection.LoadStatus(ctx, pool, k.name, k.partition)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func lagText(st projection.Status) string {
	if st.LagEvents == 0 {
		return "0"
	}
	return fmt.Sprintf("%s events (%s)", progress.Count(st.LagEvents), st.Lag.Round(time.Millisecond))
}

func errorText(st projection.Status) string {
	if st.Error == "" {
		return "-"
	}
	msg := strings.Join(strings.Fields(st.Error), " ")
	if fe := st.FailedEvent; fe != nil {
		msg = fmt.Sprintf("%s at %s@%s/%s#%d", msg, fe.Type, fe.Partition, fe.StreamID, fe.StreamPosition)
	}
	return clip(msg, 120)
}

type projectionsRebuildCmd struct {
	Name      string `arg:"" name:"name" help:"Projection to rebuild. Registered in this binary: ${projections}."`
	BatchSize int    `default:"500" help:"Events applied per transaction."`
}

func (c *projectionsRebuildCmd) Run(a *Env) error {
	if c.BatchSize <= 0 {
		return Usagef("--batch-size must be positive, got %d", c.BatchSize)
	}
	reg, ok := a.projections[c.Name]
	if !ok {
		return fmt.Errorf("projection %q is not registered in this binary (registered: %s); "+
			"rebuild a projection from the binary of the service that defines it, which registers it with cli.Config.Projections",
			c.Name, listOr(a.projectionNames(), "none"))
	}
	if reg.PerStream != nil {
		return a.withPool(func(pool *pgxpool.Pool) error { return rebuildPerStream(a, pool, reg, c.BatchSize) })
	}
	return a.withPool(func(pool *pgxpool.Pool) error {
		p, err := reg.New(a.ctx, pool, ProjectionOptions{BatchSize: c.BatchSize, Logger: a.logger})
		if err != nil {
			return fmt.Errorf("build projection %s: %w", c.Name, err)
		}
		if p.Name() != c.Name {
			return fmt.Errorf("projection registered as %q is named %q: cli.Projection.Name must be the projection's name", c.Name, p.Name())
		}
		if st, err := projection.LoadStatus(a.ctx, pool, p.Name(), p.Partition()); err == nil && st.Active {
			fmt.Fprintf(a.io.Err, "projection %s is running in another process (%s): its runner does the rebuild once this one takes the lease; Ctrl-C to give up\n",
				c.Name, st.Owner)
		}
		bar := progress.New(a.io.Err, "rebuild "+c.Name, "events")
		var mu sync.Mutex
		var last projection.RebuildProgress
		start := time.Now()
		err = p.Rebuild(a.ctx, projection.RebuildOptions{Progress: func(pr projection.RebuildProgress) {
			mu.Lock()
			last = pr
			mu.Unlock()
			bar.Update(pr.Done, pr.Total)
		}})
		bar.Finish()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			fmt.Fprintf(a.io.Out, "rebuilt projection %s: %s events replayed in %s\n", c.Name,
				progress.Count(last.Total), time.Since(start).Round(time.Millisecond))
			return nil
		case errors.Is(err, context.Canceled) || a.ctx.Err() != nil:
			return fmt.Errorf("rebuild of %s cancelled after %s of %s events: the read model is consistent with its checkpoint and the projection resumes from there; run the rebuild again to start over",
				c.Name, progress.Count(last.Done), progress.Count(last.Total))
		default:
			return err
		}
	})
}

// listOr returns names joined by ", ", or none when there are none.
func listOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	return strings.Join(names, ", ")
}
