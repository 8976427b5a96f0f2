package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// ErrStopped is returned by Rebuild when the projection is stopped before
// the rebuild finishes.
var ErrStopped = errors.New("projection stopped")

// RebuildOptions are the options of a rebuild.
type RebuildOptions struct {
	// Progress, when set, is called once after the reset and after every
	// batch of the replay. It runs on the projection's goroutine: keep it
	// short.
	Progress func(RebuildProgress)
}

// RebuildProgress is how far a rebuild's replay has come.
type RebuildProgress struct {
	// Done is how many of the Total events have been applied again.
	Done int64
	// Total is the number of events in the log (of the partition) when the
	// rebuild started; the replay is finished when it has applied them.
	Total int64
}

type rebuildRequest struct {
	ctx  context.Context
	opts RebuildOptions
	done chan error // buffered: one reply
}

func (r *rebuildRequest) reply(err error) {
	select {
	case r.done <- err:
	default:
	}
}

// rebuildRun is a rebuild whose reset is committed and whose replay is
// under way.
type rebuildRun struct {
	req    *rebuildRequest
	target store.Position
	total  int64
	done   int64
}

// Rebuild resets the projection and replays the log from the start: in
// one transaction it deletes the read-model rows (Config.Reset and the batch
// handlers implementing Resetter), the projection's dead letters, and sets
// the checkpoint back to the start of the log; then it applies the log
// again, reporting progress, and returns once it has applied every event
// that was in the log when it started.
//
// On a running projection the rebuild is done by its runner, once it holds
// the lease; on a stopped one Rebuild runs it itself, taking the lease
// (waiting for it while another process holds it) and releasing it when
// done. The state is rebuilding meanwhile.
//
// Cancelling ctx stops waiting at the next batch: the reset and the
// batches applied so far stay committed, the read model is consistent with
// its checkpoint (partly rebuilt), and a running projection just goes on
// catching up. Rebuild then returns ctx's error.
func (p *Projection) Rebuild(ctx context.Context, opts RebuildOptions) error {
	req := &rebuildRequest{ctx: ctx, opts: opts, done: make(chan error, 1)}
	p.runMu.Lock()
	if p.running {
		done := p.done
		p.runMu.Unlock()
		select {
		case p.rebuilds <- req:
		case <-done:
			return fmt.Errorf("rebuild projection %q: %w", p.cfg.Name, ErrStopped)
		case <-ctx.Done():
			return fmt.Errorf("rebuild projection %q: %w", p.cfg.Name, ctx.Err())
		}
		select {
		case err := <-req.done:
			return wrapRebuild(p.cfg.Name, err)
		case <-ctx.Done():
			// The runner notices too, at its next batch.
			return fmt.Errorf("rebuild projection %q: %w", p.cfg.Name, ctx.Err())
		case <-done:
			select {
			case err := <-req.done:
				return wrapRebuild(p.cfg.Name, err)
			default:
				return fmt.Errorf("rebuild projection %q: %w", p.cfg.Name, ErrStopped)
			}
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	p.running, p.stopCh, p.cancel, p.done = true, stop, cancel, done
	p.starting()
	p.runMu.Unlock()
	defer func() {
		cancel()
		p.runMu.Lock()
		if p.done == done {
			p.running = false
		}
		p.runMu.Unlock()
		close(done)
	}()
	err := p.run(rctx, stop, req)
	select {
	case rerr := <-req.done:
		return wrapRebuild(p.cfg.Name, rerr)
	default:
	}
	if err == nil {
		err = ErrStopped
	}
	return wrapRebuild(p.cfg.Name, err)
}

func wrapRebuild(name string, err error) error {
	if err == nil {
		return nil
	}
	var he *HandlerError
	if errors.As(err, &he) {
		return err
	}
	return fmt.Errorf("rebuild projection %q: %w", name, err)
}

const (
	checkpointLockSQL  = checkpointReadSQL + ` FOR UPDATE`
	checkpointResetSQL = `UPDATE subscriptions SET last_processed_transaction_id = '0', last_processed_position = 0, updated = now()
WHERE subscription_id = $1 AND partition = $2 AND version = 1`
	deadLettersDeleteSQL = `DELETE FROM projection_dead_letters WHERE projection = $1 AND scope = $2`
)

// startRebuild commits the reset and starts tracking the replay.
func (w *worker) startRebuild(ctx context.Context, req *rebuildRequest) error {
	if err := req.ctx.Err(); err != nil {
		return err
	}
	p := w.p
	err := p.fenced(ctx, func(tx pgx.Tx) error {
		var txid uint64
		var gp int64
		if err := tx.QueryRow(ctx, checkpointLockSQL, p.cfg.Name, p.scope).Scan(&txid, &gp); err != nil {
			return fmt.Errorf("lock checkpoint: %w", err)
		}
		if p.cfg.Reset != nil {
			if err := p.cfg.Reset(ctx, tx, p.scope); err != nil {
				return fmt.Errorf("reset read model: %w", err)
			}
		}
		for _, bh := range p.cfg.BatchHandlers {
			if r, ok := bh.(Resetter); ok {
				if err := r.ResetReadModel(ctx, tx, p.scope); err != nil {
					return fmt.Errorf("reset read model: %w", err)
				}
			}
		}
		if _, err := tx.Exec(ctx, deadLettersDeleteSQL, p.cfg.Name, p.scope); err != nil {
			return fmt.Errorf("delete dead letters: %w", err)
		}
		if _, err := tx.Exec(ctx, checkpointResetSQL, p.cfg.Name, p.scope); err != nil {
			return fmt.Errorf("reset checkpoint: %w", err)
		}
		return p.writeStatus(ctx, tx, StateRebuilding, nil)
	})
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	p.lag.noteApplied(0, time.Time{})
	p.publish(func() { p.checkpoint, p.state = store.Position{}, StateRebuilding })

	run := &rebuildRun{req: req}
	var partArg *string
	if p.cfg.Partition != "" {
		partArg = &p.cfg.Partition
	}
	var txid uint64
	var gp int64
	var created time.Time
	err = p.pool.QueryRow(ctx, lastEventSQL, partArg).Scan(&txid, &gp, &created)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read the last event: %w", err)
	default:
		run.target = store.Position{TransactionID: txid, GlobalPosition: store.GlobalPosition(gp)}
		p.lag.noteHead(gp, created)
		if err := p.pool.QueryRow(ctx, countUpToSQL, partArg, txid, gp).Scan(&run.total); err != nil {
			return fmt.Errorf("count the events: %w", err)
		}
	}
	w.rebuild = run
	p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "projection_rebuild_started",
		slog.String("projection", p.cfg.Name), slog.String("partition", p.scope), slog.Int64("total", run.total))
	if req.opts.Progress != nil {
		req.opts.Progress(RebuildProgress{Done: 0, Total: run.total})
	}
	return nil
}

// rebuildProgress accounts for n more events applied and finishes the
// rebuild when the checkpoint has reached its target or its context has
// ended. finished reports whether the rebuild was answered; err is the
// answer.
func (w *worker) rebuildProgress(ctx context.Context, n int) (finished bool, err error) {
	r := w.rebuild
	if r == nil {
		return false, nil
	}
	p := w.p
	reached := !p.currentCheckpoint().Less(r.target)
	r.done = min(r.done+int64(n), r.total)
	if reached {
		r.done = r.total
	}
	if n > 0 || reached {
		if r.req.opts.Progress != nil {
			r.req.opts.Progress(RebuildProgress{Done: r.done, Total: r.total})
		}
	}
	switch {
	case reached:
		p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "projection_rebuild_done",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope), slog.Int64("total", r.total))
	case r.req.ctx.Err() != nil:
		err = r.req.ctx.Err()
		p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "projection_rebuild_cancelled",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.Int64("done", r.done), slog.Int64("total", r.total))
	default:
		return false, nil
	}
	w.rebuild = nil
	if !w.once {
		if serr := p.fenced(ctx, func(tx pgx.Tx) error { return p.writeStatus(ctx, tx, StateRunning, nil) }); serr != nil {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_status_write_failed",
				slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
				slog.String("state", string(StateRunning)), slog.String("error", serr.Error()))
		}
		p.setState(StateRunning)
	}
	r.req.reply(err)
	return true, err
}

// abandonRebuild answers a rebuild still waiting when the worker exits.
func (w *worker) abandonRebuild(exit error) {
	if exit == nil {
		exit = ErrStopped
	}
	if w.pending != nil {
		w.pending.reply(exit)
		w.pending = nil
	}
	if w.rebuild != nil {
		w.rebuild.req.reply(exit)
		w.rebuild = nil
	}
}
