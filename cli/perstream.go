package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/internal/progress"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/store"
)

// PerStream registers a per-stream projection (projection/perstream): a
// subscription, named by Projection.Name, whose checkpoints are kept per
// stream and which the service projects on demand. `projections rebuild
// <name>` resets its read model and deletes its checkpoints in one
// transaction, then drains every stream (of StreamType) through the
// runner, with a progress bar.
type PerStream struct {
	// New returns the runner, on pool, whose Registry holds the
	// projection's handlers. Required.
	New func(ctx context.Context, pool *pgxpool.Pool) (*perstream.Runner, error)
	// Reset empties the projection's read model in tx, the transaction
	// that deletes its checkpoints. Defaults to nothing: the handlers
	// then see every event again on top of what they wrote.
	Reset func(ctx context.Context, tx pgx.Tx) error
	// StreamType limits the rebuild to the streams of this type, as
	// recorded by the aggregate kind that created them. Defaults to every
	// stream.
	StreamType string
}

const (
	perStreamResetSQL   = `DELETE FROM projection_stream_checkpoints WHERE subscription_id = $1`
	perStreamStreamsSQL = `SELECT stream_id, partition, stream_position FROM streams
WHERE NOT is_archived AND ($1 = '' OR stream_type = $1) ORDER BY partition, stream_id`
)

// rebuildPerStream resets the per-stream projection reg and drains every
// one of its streams.
func rebuildPerStream(a *Env, pool *pgxpool.Pool, reg Projection, batchSize int) error {
	ps := reg.PerStream
	runner, err := ps.New(a.ctx, pool)
	if err != nil {
		return fmt.Errorf("build projection %s: %w", reg.Name, err)
	}
	if runner == nil {
		return fmt.Errorf("build projection %s: cli.PerStream.New returned a nil runner", reg.Name)
	}
	type target struct {
		stream    store.StreamID
		partition string
		events    int64
	}
	rows, err := pool.Query(a.ctx, perStreamStreamsSQL, ps.StreamType)
	if err != nil {
		return fmt.Errorf("list the streams of %s: %w", reg.Name, err)
	}
	targets, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (target, error) {
		var t target
		err := r.Scan(&t.stream, &t.partition, &t.events)
		return t, err
	})
	if err != nil {
		return fmt.Errorf("list the streams of %s: %w", reg.Name, err)
	}
	var total int64
	for _, t := range targets {
		total += t.events
	}
	err = pgx.BeginFunc(a.ctx, pool, func(tx pgx.Tx) error {
		if ps.Reset != nil {
			if err := ps.Reset(a.ctx, tx); err != nil {
				return fmt.Errorf("reset the read model: %w", err)
			}
		}
		if _, err := tx.Exec(a.ctx, perStreamResetSQL, reg.Name); err != nil {
			return fmt.Errorf("delete the checkpoints: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild %s: %w (nothing was changed)", reg.Name, err)
	}
	bar := progress.New(a.io.Err, "rebuild "+reg.Name, "events")
	var done int64
	bar.Update(0, total)
	start := time.Now()
	for _, t := range targets {
		res, err := runner.Drain(a.ctx, reg.Name, t.stream, perstream.ProjectOptions{Partition: t.partition, BatchSize: batchSize})
		done += int64(res.Processed)
		bar.Update(done, max(total, done))
		if err != nil {
			bar.Finish()
			if errors.Is(err, context.Canceled) || a.ctx.Err() != nil {
				return fmt.Errorf("rebuild of %s cancelled after %s of %s events: the read model holds the streams drained so far; "+
					"the others are projected when the service next projects them, or run the rebuild again",
					reg.Name, progress.Count(done), progress.Count(total))
			}
			return fmt.Errorf("rebuild %s: stream %q in partition %s: %w", reg.Name, t.stream, t.partition, err)
		}
	}
	bar.Finish()
	fmt.Fprintf(a.io.Out, "rebuilt projection %s: %s events of %d streams replayed in %s\n", reg.Name,
		progress.Count(done), len(targets), time.Since(start).Round(time.Millisecond))
	return nil
}
