package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// errStopRequested ends the worker loop when Stop is called during a
// retry wait.
var errStopRequested = errors.New("stop requested")

// worker is the state of one run of the worker loop.
type worker struct {
	p            *Projection
	l            *lease
	stop         <-chan struct{}
	gen          uint64
	active       bool
	pending      *rebuildRequest // requested, not yet started
	rebuild      *rebuildRun     // started
	once         bool            // exit when the rebuild is done
	infraRetries int             // infrastructure failures in a row: the next wait is Retry.Delay(infraRetries)
	// seen is the highest global position read so far, and recheck the
	// current delay before reading again a notified event not yet seen.
	seen    int64
	recheck time.Duration
	// ahead is the next batch, read while the previous one was applied,
	// and the checkpoint it was read after (nil: read at the next step).
	ahead *readAhead
}

// readAhead is a read of the log started while a batch is applied.
type readAhead struct {
	after  store.Position
	events []store.Event
	err    error
	done   chan struct{}
}

func (w *worker) loop(ctx context.Context) error {
	p := w.p
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.stop:
			return nil
		default:
		}
		if !w.l.held.Load() {
			w.deactivate(ctx, nil)
			if err := w.wait(ctx); err != nil {
				return err
			}
			continue
		}
		if g := w.l.gen.Load(); g != w.gen || !w.active {
			if err := w.takeOver(ctx); err != nil {
				if werr := w.infraError(ctx, "projection_take_over_failed", err); werr != nil {
					return werr
				}
				continue
			}
			w.gen = g
		}
		if w.pending == nil && w.rebuild == nil {
			select {
			case r := <-p.rebuilds:
				w.pending = r
			default:
			}
		}
		if w.pending != nil {
			req := w.pending
			w.pending = nil
			if err := w.startRebuild(ctx, req); err != nil {
				req.reply(err)
				if w.once {
					return err
				}
				if werr := w.infraError(ctx, "projection_rebuild_reset_failed", err); werr != nil {
					return werr
				}
				continue
			}
		}
		n, err := w.step(ctx)
		if err != nil {
			var he *HandlerError
			switch {
			case errors.As(err, &he):
				p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projection_failed",
					slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
					slog.Int64("global_position", int64(he.Event.GlobalPosition)),
					slog.String("stream_id", string(he.Event.StreamID)),
					slog.String("event_type", he.Event.Type), slog.String("error", he.Err.Error()))
				return err
			case errors.Is(err, errStopRequested):
				return nil
			case ctx.Err() != nil:
				return ctx.Err()
			}
			if werr := w.infraError(ctx, "projection_batch_failed", err); werr != nil {
				return werr
			}
			continue
		}
		w.infraRetries = 0
		if finished, err := w.rebuildProgress(ctx, n); finished && w.once {
			return err
		}
		if n > 0 {
			w.recheck = 0
		}
		if n < p.cfg.BatchSize {
			var timeout time.Duration
			if n == 0 && w.l.notified.Load() > w.seen {
				// Notified of an event the read did not return yet: an
				// older transaction still in flight holds it back. Read
				// again soon, backing off up to the poll interval.
				w.recheck = min(max(2*w.recheck, minRecheck), p.cfg.PollInterval)
				timeout = w.recheck
			}
			if err := w.waitFor(ctx, timeout); err != nil {
				return err
			}
		}
	}
}

// deactivate makes an active runner that lost its lease a standby: it
// writes nothing more until it takes the lease again (and claims the
// projection). cause is the write that found the lease gone, if any: the
// lease connection is then checked at once.
func (w *worker) deactivate(ctx context.Context, cause error) {
	if cause != nil {
		w.l.probe()
	}
	if !w.active {
		return
	}
	p := w.p
	w.active = false
	attrs := []slog.Attr{slog.String("projection", p.cfg.Name), slog.String("partition", p.scope)}
	if cause != nil {
		attrs = append(attrs, slog.String("error", cause.Error()))
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_lease_lost", attrs...)
	p.publish(func() { p.state, p.active = StateStandby, false })
	p.lag.stop()
}

// minRecheck is the first delay before reading again a notified event
// that was not readable yet.
const minRecheck = 2 * time.Millisecond

// wait blocks until something may have changed: a wake-up from the lease
// (notification, poll tick, lease change), a rebuild request, Stop or ctx.
// It returns errStopRequested-free results: nil to go on, or the reason to
// exit (ctx's error; nil with stop closed is reported by the loop).
func (w *worker) wait(ctx context.Context) error { return w.waitFor(ctx, 0) }

// waitFor is wait with a timeout (none when 0).
func (w *worker) waitFor(ctx context.Context, timeout time.Duration) error {
	var rebuilds chan *rebuildRequest
	if w.pending == nil && w.rebuild == nil {
		rebuilds = w.p.rebuilds
	}
	var tick <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stop:
		return nil
	case <-w.l.wake:
	case <-tick:
	case r := <-rebuilds:
		w.pending = r
	}
	return nil
}

// infraError logs an infrastructure error and waits before the next try,
// the delays of Config.Retry growing up to its MaxDelay (infrastructure
// errors are retried for as long as the projection runs). It returns
// non-nil when the loop must exit instead.
func (w *worker) infraError(ctx context.Context, msg string, err error) error {
	p := w.p
	if errors.Is(err, errLeaseLost) {
		// A write found the lease gone: it was rolled back. Stand by until
		// the lease is confirmed (taken again) or lost.
		w.deactivate(ctx, err)
	}
	if p.scope != AllPartitions && postgres.IsTenantDropped(err) {
		// The partition this projection is limited to was dropped: its
		// checkpoint and status can never be written again. Stop.
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projection_tenant_dropped",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope), slog.String("error", err.Error()))
		return fmt.Errorf("projection %q limited to partition %q: %w: %w", p.cfg.Name, p.scope, store.ErrTenantDropped, err)
	}
	w.infraRetries++
	wait := p.cfg.Retry.Delay(w.infraRetries)
	p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, msg,
		slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
		slog.Duration("retry_in", wait), slog.String("error", err.Error()))
	if err := sleep(ctx, w.stop, wait); err != nil {
		if errors.Is(err, errStopRequested) {
			return nil // the loop sees stop closed and exits
		}
		return err
	}
	return nil
}

// sleep waits d, or until ctx is done (its error) or stop is closed
// (errStopRequested).
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errStopRequested
	}
}

// takeOver runs when the lease is (re)acquired: it claims the projection
// (records it as running under this runner), creates the checkpoint when
// missing and loads it.
func (w *worker) takeOver(ctx context.Context) error {
	p := w.p
	state := StateRunning
	if w.rebuild != nil {
		state = StateRebuilding
	}
	cp, err := p.claim(ctx, state)
	if err != nil {
		return err
	}
	w.active = true
	w.seen = max(w.seen, int64(cp.GlobalPosition))
	p.publish(func() { p.checkpoint, p.active, p.state = cp, true, state })
	p.startLag(ctx, cp)
	p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "projection_lease_acquired",
		slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
		slog.Uint64("checkpoint_transaction_id", cp.TransactionID),
		slog.Int64("checkpoint_global_position", int64(cp.GlobalPosition)))
	return nil
}

// step reads one batch after the checkpoint and applies it. When a handler
// fails on the batch, the events are applied one by one with retries, so
// the failing event is known and the ones before it are kept; the failure
// action then applies to it. It returns how many events were read.
func (w *worker) step(ctx context.Context) (int, error) {
	p := w.p
	cp := p.currentCheckpoint()
	var events []store.Event
	if a := w.ahead; a != nil && a.after == cp {
		events = a.events
	} else {
		res, err := p.store.ReadAll(ctx, store.ReadAllOptions{After: cp, Partition: p.cfg.Partition, Limit: p.cfg.BatchSize})
		if err != nil {
			return 0, fmt.Errorf("read the log after %+v: %w", cp, err)
		}
		events = res.Events
	}
	w.ahead = nil
	if len(events) == 0 {
		return 0, nil
	}
	for _, e := range events {
		w.seen = max(w.seen, int64(e.GlobalPosition))
	}
	p.lag.noteRead(events)
	var ahead *readAhead
	if len(events) == p.cfg.BatchSize {
		// A full batch: the log likely goes on. Read the next batch while
		// this one is applied, to use it if this one commits.
		ahead = w.readAhead(ctx, events[len(events)-1].Position())
	}
	err := p.commitBatch(ctx, cp, events)
	if ahead != nil {
		<-ahead.done
		if err == nil && ahead.err == nil && len(ahead.events) > 0 {
			w.ahead = ahead
		}
	}
	switch {
	case err == nil:
		return len(events), nil
	case errors.Is(err, errCheckpointMoved):
		return 0, w.reload(ctx)
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case !isHandlerFailure(err):
		return 0, err
	}
	if len(events) > 1 {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_batch_failed_isolating",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.Int("batch", len(events)), slog.String("error", err.Error()))
	}
	for i := 0; i < len(events); {
		// The events of a split (one stored event upcast to several)
		// share a position, so a checkpoint can't fall between them: they
		// are applied, or skipped, together.
		j := i + 1
		for j < len(events) && events[j].Position() == events[i].Position() {
			j++
		}
		if err := w.applyOne(ctx, events[i:j], i == 0 && j == len(events), err); err != nil {
			if errors.Is(err, errCheckpointMoved) {
				return 0, w.reload(ctx)
			}
			return i, err
		}
		i = j
	}
	return len(events), nil
}

// readAhead starts reading the batch after position after on a
// connection of its own; done is closed when the read has returned.
func (w *worker) readAhead(ctx context.Context, after store.Position) *readAhead {
	p := w.p
	a := &readAhead{after: after, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		res, err := p.store.ReadAll(ctx, store.ReadAllOptions{After: after, Partition: p.cfg.Partition, Limit: p.cfg.BatchSize})
		a.events, a.err = res.Events, err
	}()
	return a
}

// reload reads the checkpoint again after another runner moved it.
func (w *worker) reload(ctx context.Context) error {
	p := w.p
	var cp store.Position
	err := p.fenced(ctx, func(tx pgx.Tx) error {
		var err error
		cp, err = p.ensureCheckpointTx(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_checkpoint_moved",
		slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
		slog.Uint64("checkpoint_transaction_id", cp.TransactionID),
		slog.Int64("checkpoint_global_position", int64(cp.GlobalPosition)))
	p.lag.noteApplied(int64(cp.GlobalPosition), time.Time{})
	p.setCheckpoint(cp)
	return nil
}

// applyOne applies one event in a transaction of its own, retrying with
// backoff; firstFailed says the first attempt was already made (and failed
// with firstErr). Only the handlers' own failures count as attempts:
// transient database errors and other infrastructure errors are waited out
// with the infrastructure backoff and tried again, for as long as the
// projection runs. When the attempts run out, FailSkip dead-letters the
// event and FailStop returns the *HandlerError.
//
// unit is one event, or the events of a split, which share a position and
// are applied in one transaction; when it fails, the event the handler
// failed on is the one reported and dead-lettered, and the checkpoint
// moves past the whole unit.
func (w *worker) applyOne(ctx context.Context, unit []store.Event, firstFailed bool, firstErr error) error {
	p := w.p
	e := unit[0]
	attempt, lastErr := 0, error(nil)
	if firstFailed {
		attempt, lastErr = 1, firstErr
	}
	handlerFailed := firstFailed // the last try failed in a handler
	for attempt < p.cfg.Retry.MaxAttempts {
		if handlerFailed {
			wait := p.cfg.Retry.Delay(attempt)
			p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_event_retry",
				slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
				slog.Int64("global_position", int64(e.GlobalPosition)), slog.Int("attempt", attempt),
				slog.Duration("retry_in", wait), slog.String("error", lastErr.Error()))
			if err := sleep(ctx, w.stop, wait); err != nil {
				return err
			}
		}
		err := p.commitBatch(ctx, p.currentCheckpoint(), unit)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errCheckpointMoved), errors.Is(err, errLeaseLost), ctx.Err() != nil:
			return err
		case !isHandlerFailure(err):
			// Not the handler's making (a deadlock, a lost connection…):
			// not an attempt.
			handlerFailed = false
			if werr := w.infraError(ctx, "projection_event_retry_infrastructure", err); werr != nil {
				return werr
			}
			select {
			case <-w.stop:
				return errStopRequested
			default:
			}
			continue
		}
		attempt++
		handlerFailed, lastErr = true, err
	}
	var f *handlerFailure
	if errors.As(lastErr, &f) && len(unit) > 1 {
		e = f.event
	}
	he := &HandlerError{Projection: p.cfg.Name, Event: e, Attempts: attempt, Err: handlerCause(lastErr)}
	if p.cfg.OnFailure == FailSkip {
		if err := p.deadLetter(ctx, e, he); err != nil {
			return err
		}
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projection_event_skipped",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.Int64("global_position", int64(e.GlobalPosition)), slog.String("stream_id", string(e.StreamID)),
			slog.String("event_type", e.Type), slog.String("error", he.Err.Error()))
		return nil
	}
	return he
}
