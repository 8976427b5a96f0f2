package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// handlerFailure is an error a handler returned for a batch, as opposed
// to an infrastructure failure around it.
type handlerFailure struct {
	event store.Event
	batch int
	err   error
}

func (f *handlerFailure) Error() string { return f.err.Error() }
func (f *handlerFailure) Unwrap() error { return f.err }

func isHandlerFailure(err error) bool {
	var f *handlerFailure
	return errors.As(err, &f)
}

// handlerCause returns the handler's own error inside err.
func handlerCause(err error) error {
	var f *handlerFailure
	if errors.As(err, &f) {
		return f.err
	}
	return err
}

// commitBatch applies events in one transaction that moves the checkpoint
// from cp to the last event, provided it is still at cp, under the batch's
// span.
func (p *Projection) commitBatch(ctx context.Context, cp store.Position, events []store.Event) error {
	ctx, span := p.startBatch(ctx, events)
	err := p.applyBatch(ctx, cp, events)
	applied := 0
	if err == nil {
		applied = len(events)
	}
	span.End(ctx, applied, err)
	if err == nil {
		// Published after the span ended and the lag noted, so a waiter
		// woken by the new checkpoint finds the batch's span complete and
		// the lag gauges at the new checkpoint.
		last := events[len(events)-1]
		p.lag.noteApplied(int64(last.GlobalPosition), last.Created)
		p.setCheckpoint(last.Position())
	}
	return err
}

// applyBatch is commitBatch without telemetry and without publishing the
// new checkpoint.
func (p *Projection) applyBatch(ctx context.Context, cp store.Position, events []store.Event) (err error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin batch: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		for _, bh := range p.cfg.BatchHandlers {
			if f, ok := bh.(BatchFinisher); ok {
				f.FinishBatch(tx, committed)
			}
		}
	}()
	fail := func(e store.Event, n int, herr error) error {
		if tx.Conn().IsClosed() || ctx.Err() != nil {
			// The connection or the context is gone: not the handler's
			// fault, whatever it returned.
			return fmt.Errorf("apply batch: %w", herr)
		}
		if transient(herr) {
			// A deadlock, a serialization failure, a lock or statement
			// timeout...: retried as an infrastructure error, never an
			// attempt of the event.
			return fmt.Errorf("apply batch: transient database error in a handler of %s: %w", e, herr)
		}
		return &handlerFailure{event: e, batch: n, err: herr}
	}
	for _, e := range events {
		for _, h := range p.cfg.Handlers.handlersFor(e.Type) {
			if herr := h(ctx, tx, e); herr != nil {
				return fail(e, 1, herr)
			}
		}
	}
	for _, bh := range p.cfg.BatchHandlers {
		if herr := bh.HandleBatch(ctx, tx, events); herr != nil {
			return fail(events[0], len(events), herr)
		}
	}
	if err := p.fenceAndAdvance(ctx, tx, cp, events[len(events)-1].Position()); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	committed = true
	return nil
}

const (
	checkpointEnsureSQL = `INSERT INTO subscriptions (subscription_id, partition, version)
VALUES ($1, $2, 1) ON CONFLICT DO NOTHING`
	checkpointReadSQL = `SELECT last_processed_transaction_id, last_processed_position FROM subscriptions
WHERE subscription_id = $1 AND partition = $2 AND version = 1`
	checkpointAdvanceSQL = `UPDATE subscriptions
SET last_processed_transaction_id = $3::xid8, last_processed_position = $4, updated = now()
WHERE subscription_id = $1 AND partition = $2 AND version = 1
  AND last_processed_transaction_id = $5::xid8 AND last_processed_position = $6`
)

// ensureCheckpointTx creates the checkpoint at the start of the log when
// it is missing (never resetting one) and returns it.
func (p *Projection) ensureCheckpointTx(ctx context.Context, tx pgx.Tx) (store.Position, error) {
	if _, err := tx.Exec(ctx, checkpointEnsureSQL, p.cfg.Name, p.scope); err != nil {
		return store.Position{}, fmt.Errorf("create checkpoint: %w", err)
	}
	return loadCheckpoint(ctx, tx, p.cfg.Name, p.scope)
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// loadCheckpoint reads a checkpoint; a missing one is the start of the log.
func loadCheckpoint(ctx context.Context, q queryRower, name, scope string) (store.Position, error) {
	var tx uint64
	var gp int64
	err := q.QueryRow(ctx, checkpointReadSQL, name, scope).Scan(&tx, &gp)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Position{}, nil
	}
	if err != nil {
		return store.Position{}, fmt.Errorf("read checkpoint: %w", err)
	}
	return store.Position{TransactionID: tx, GlobalPosition: store.GlobalPosition(gp)}, nil
}

func (p *Projection) advanceArgs(cp, next store.Position) []any {
	return []any{p.cfg.Name, p.scope, next.TransactionID, int64(next.GlobalPosition), cp.TransactionID, int64(cp.GlobalPosition)}
}

const deadLetterSQL = `INSERT INTO projection_dead_letters (projection, scope, partition, transaction_id, global_position,
    stream_id, stream_position, message_id, message_type, message_data, message_metadata, error, attempts)
VALUES ($1, $2, $3, $4::xid8, $5, $6, $7, $8, $9, $10::text::jsonb, $11::text::jsonb, $12, $13)
ON CONFLICT (projection, scope, partition, global_position)
DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, created = now()`

// deadLetter records e as skipped and moves the checkpoint past it, in one
// transaction, under a batch span of its own (no event applied).
func (p *Projection) deadLetter(ctx context.Context, e store.Event, he *HandlerError) error {
	ctx, span := p.startBatch(ctx, []store.Event{e})
	err := p.writeDeadLetter(ctx, e, he)
	if err == nil {
		p.tel.DeadLettered(ctx, p.cfg.Name, e.Type, he.Err)
	}
	span.End(ctx, 0, err)
	if err == nil {
		p.lag.noteApplied(int64(e.GlobalPosition), e.Created)
		p.setCheckpoint(e.Position())
	}
	return err
}

func (p *Projection) writeDeadLetter(ctx context.Context, e store.Event, he *HandlerError) error {
	cp := p.currentCheckpoint()
	meta, err := jsonText(e.Metadata)
	if err != nil {
		return fmt.Errorf("dead-letter %s: encode metadata: %w", e, err)
	}
	data := string(e.Data)
	if len(e.Data) == 0 {
		data = "null"
	}
	// Like a batch: the dead letter, then the lease check and the
	// checkpoint in one round trip; a lost lease rolls the letter back.
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, deadLetterSQL, p.cfg.Name, p.scope, e.Partition, e.TransactionID, int64(e.GlobalPosition),
			string(e.StreamID), int64(e.StreamPosition), e.MessageID, e.Type, data, meta, he.Err.Error(), he.Attempts); err != nil {
			return fmt.Errorf("insert dead letter: %w", err)
		}
		return p.fenceAndAdvance(ctx, tx, cp, e.Position())
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", e, err)
	}
	return nil
}
