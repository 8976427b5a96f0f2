package main

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
)

// The projection hook: with -projection NAME the member registers a
// continuous projection of the counter's events, run by the host as a
// projection actor (placed on one member of the cluster), that adds each
// increment to its stream's row of the table counter_totals (stream text
// PRIMARY KEY, total int; created by the test). GET /projection answers
// the host's ProjectionStatus for it:
//
//	GET /projection -> {"state","member","runs","failures","lastError","local","active","owner","checkpoint"}

var projectionFlags struct {
	name   string
	ensure time.Duration
	poll   time.Duration
	lease  time.Duration
}

func init() {
	RegisterHook(Hook{
		Name: "projection",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&projectionFlags.name, "projection", "", "run a projection of the counter into counter_totals under this name")
			fs.DurationVar(&projectionFlags.ensure, "projection-ensure", actor.DefaultEnsureInterval, "actor.ProjectionOptions.EnsureInterval")
			fs.DurationVar(&projectionFlags.poll, "projection-poll", projection.DefaultPollInterval, "projection.Config.PollInterval")
			fs.DurationVar(&projectionFlags.lease, "projection-lease-retry", projection.DefaultLeaseRetryInterval, "projection.Config.LeaseRetryInterval")
		},
		Setup: setupProjection,
	})
}

func setupProjection(_ context.Context, m *Member) error {
	name := projectionFlags.name
	if name == "" {
		return nil
	}
	p, err := projection.New(m.Pool, &projection.Config{
		Name:               name,
		Handlers:           projection.Registry{"Incremented": {addToTotal}},
		PollInterval:       projectionFlags.poll,
		LeaseRetryInterval: projectionFlags.lease,
		Logger:             m.Logger,
	})
	if err != nil {
		return err
	}
	if err := m.Host.RunProjection(name, p, &actor.ProjectionOptions{EnsureInterval: projectionFlags.ensure}); err != nil {
		return err
	}
	m.Mux.HandleFunc("GET /projection", func(w http.ResponseWriter, r *http.Request) {
		st, err := m.Host.ProjectionStatus(r.Context(), name)
		out := map[string]any{
			"state": st.State, "member": st.Member, "runs": st.Runs, "failures": st.Failures,
			"local": st.Projection.Local, "active": st.Projection.Active, "owner": st.Projection.Owner,
			"checkpoint": st.Projection.Checkpoint,
		}
		if st.LastError != nil {
			out["lastError"] = st.LastError.Error()
		}
		if err != nil {
			out["error"] = err.Error()
		}
		writeJSON(w, out)
	})
	return nil
}

func addToTotal(ctx context.Context, tx pgx.Tx, e store.Event) error {
	var d Incremented
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO counter_totals (stream, total) VALUES ($1, $2)
		ON CONFLICT (stream) DO UPDATE SET total = counter_totals.total + EXCLUDED.total`, string(e.StreamID), d.By)
	return err
}
