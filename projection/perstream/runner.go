package perstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/batchtel"
	"github.com/troupehq/troupe/projection/internal/cfgerr"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// DefaultBatchSize is how many events ProjectEvents reads when
// ProjectOptions.BatchSize is 0.
const DefaultBatchSize = 500

// Config configures a Runner.
type Config struct {
	// Store is read with ReadStream. Defaults to a store/postgres store on
	// the database given to New, whose reads then join the batch's
	// transaction.
	Store store.EventStore
	// Registry holds the handlers run for each event type. Defaults to
	// none: events are only checkpointed.
	Registry projection.Registry
	// TracerProvider creates the tracer of the "projection <subscription
	// id>" span of each batch with events (handler writes, checkpoint and
	// commit; see docs/telemetry.md). Defaults to otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the instruments of the batch duration and
	// events projected. Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// RowLevelSecurity scopes each ProjectEvents transaction to the
	// stream's partition (postgres.SetTenant) before its first statement,
	// so the runner works as an application role under the policies of
	// postgres.EnableRowLevelSecurity: its checkpoints, the stream and the
	// handlers' writes are then limited to that tenant. Defaults to false
	// (no tenant set: run as the owner, or without row-level security).
	RowLevelSecurity bool
}

// Runner projects the events of one stream on demand, the seed's
// projection runner: each call reads the next batch of a stream after the
// subscription's checkpoint, runs the handlers registered for each event's
// type and advances the checkpoint, all in one transaction.
//
// The checkpoint is kept per (subscription id, partition, stream id) in
// projection_stream_checkpoints, as the stream position of the last event
// projected and the stream's incarnation: one subscription can project many
// streams, each from its own position. When the stream read is another
// incarnation than the checkpoint's (archived and started again with the
// same id), the checkpoint restarts: the new stream is projected from its
// first event, and handlers see positions 1, 2, … again (a
// readmodel.Projection restarts its row; other handlers can compare
// store.Event.Incarnation).
type Runner struct {
	db       postgres.DB
	store    store.EventStore
	registry projection.Registry
	tel      *otelwire.Telemetry
	rls      bool
}

// New returns a Runner on db, which holds the checkpoints and the read
// models: a pool, a connection or a transaction (each ProjectEvents call
// then runs in a savepoint of it). A nil cfg means every default.
//
// Without Config.Store, db must be a *pgxpool.Pool, the store/postgres
// store's handle.
func New(db postgres.DB, cfg *Config) (*Runner, error) {
	if postgres.IsNil(db) {
		return nil, cfgerr.Errorf("perstream.New: db is nil")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	tel, err := batchtel.New(cfg.TracerProvider, cfg.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("new per-stream runner: %w", err)
	}
	r := &Runner{db: db, store: cfg.Store, registry: projection.MergeRegistries(cfg.Registry), tel: tel, rls: cfg.RowLevelSecurity}
	if r.store == nil {
		pool, ok := db.(*pgxpool.Pool)
		if !ok {
			return nil, cfgerr.Errorf("perstream.Config.Store is nil and db is a %T: give a store or a *pgxpool.Pool", db)
		}
		s, err := postgres.New(pool, nil)
		if err != nil {
			return nil, fmt.Errorf("new per-stream runner: %w", err)
		}
		r.store = s
	}
	return r, nil
}

// ProjectOptions are the options of one ProjectEvents call.
type ProjectOptions struct {
	// Partition the stream lives in. Defaults to the default partition.
	Partition string
	// BatchSize is the most events projected by the call. Defaults to
	// DefaultBatchSize.
	BatchSize int
}

// Result is the outcome of ProjectEvents or Drain.
type Result struct {
	// Processed is how many events were read and checkpointed (those
	// without a handler included).
	Processed int
	// CurrentStreamVersion is the stream's version when it was read.
	CurrentStreamVersion store.Version
	// Checkpoint is the subscription's checkpoint on the stream afterwards.
	Checkpoint store.Version
	// Restarted reports that the checkpoint was restarted because the
	// stream is a new incarnation (archived and started again since the
	// checkpoint was written): the events processed are the new stream's
	// from position 1.
	Restarted bool
}

const (
	streamCheckpointEnsureSQL = `INSERT INTO projection_stream_checkpoints (subscription_id, partition, stream_id)
VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	streamCheckpointLockSQL = `SELECT last_processed_position, incarnation FROM projection_stream_checkpoints
WHERE subscription_id = $1 AND partition = $2 AND stream_id = $3 FOR UPDATE`
	streamCheckpointUpdateSQL = `UPDATE projection_stream_checkpoints
SET last_processed_position = $4, incarnation = $5, updated = now()
WHERE subscription_id = $1 AND partition = $2 AND stream_id = $3`
)

// ProjectEvents projects the next events of stream for subscriptionID:
// those after the checkpoint, at most BatchSize of them. It creates the
// checkpoint at 0 when missing (never resetting an existing one) and locks
// it, so concurrent calls for the same subscription and stream run one
// after the other. Handlers run in stream order within one transaction that
// also advances the checkpoint past every event read, handled or not.
//
// A handler error rolls everything back and is returned as a
// *projection.HandlerError: the checkpoint stays before the batch.
func (r *Runner) ProjectEvents(ctx context.Context, subscriptionID string, stream store.StreamID, opts ProjectOptions) (Result, error) {
	if subscriptionID == "" {
		return Result{}, store.InvalidArgument("project events: subscription id is empty")
	}
	if err := store.ValidateStreamID(stream); err != nil {
		return Result{}, err
	}
	partition, err := store.ValidatePartition(opts.Partition)
	if err != nil {
		return Result{}, err
	}
	batch := opts.BatchSize
	if batch < 0 {
		return Result{}, store.InvalidArgument("project events: negative batch size %d", batch)
	}
	if batch == 0 {
		batch = DefaultBatchSize
	}

	var (
		res  Result
		span *otelwire.BatchSpan
		sctx = ctx
	)
	err = pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		if r.rls {
			if err := postgres.SetTenant(ctx, tx, store.TenantID(partition)); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, streamCheckpointEnsureSQL, subscriptionID, partition, string(stream)); err != nil {
			return fmt.Errorf("create checkpoint: %w", err)
		}
		var last int64
		var incarnation *int64 // NULL: written before incarnations were recorded
		if err := tx.QueryRow(ctx, streamCheckpointLockSQL, subscriptionID, partition, string(stream)).Scan(&last, &incarnation); err != nil {
			return fmt.Errorf("lock checkpoint: %w", err)
		}
		res.Checkpoint = store.Version(last)
		es := r.store
		if pg, ok := es.(*postgres.Store); ok {
			es = pg.WithTx(tx)
		}
		to := store.Version(last) + store.Version(batch)
		read, err := es.ReadStream(ctx, stream, store.ReadOptions{
			Partition: partition,
			From:      store.Version(last) + 1,
			To:        to,
		})
		if err != nil {
			return err
		}
		if read.StreamExists && last > 0 && newIncarnation(incarnation, store.Version(last), read) {
			// The stream was archived and started again: project the new
			// one from its first event.
			last, res.Checkpoint, res.Restarted = 0, 0, true
			to = store.Version(batch)
			if read, err = es.ReadStream(ctx, stream, store.ReadOptions{Partition: partition, From: 1, To: to}); err != nil {
				return err
			}
		}
		for len(read.Events) == 0 && read.StreamExists && to < read.CurrentVersion {
			// Every stored event of the range reads as nothing (dropped
			// by the store's upcaster): read on.
			from := to + 1
			to += store.Version(batch)
			if read, err = es.ReadStream(ctx, stream, store.ReadOptions{Partition: partition, From: from, To: to}); err != nil {
				return err
			}
		}
		res.CurrentStreamVersion = read.CurrentVersion
		if len(read.Events) == 0 {
			if read.StreamExists && incarnation == nil && last > 0 {
				// Adopt the stream's incarnation for an older checkpoint.
				if _, err := tx.Exec(ctx, streamCheckpointUpdateSQL, subscriptionID, partition, string(stream), last, int64(read.Incarnation)); err != nil {
					return fmt.Errorf("record the checkpoint's incarnation: %w", err)
				}
			}
			return nil
		}
		// The batch's span covers the handlers and the checkpoint, and
		// ends once the transaction has committed or rolled back.
		sctx, span = r.tel.StartProjectionBatch(ctx, batchtel.Of(subscriptionID, partition, read.Events))
		ctx := sctx
		for _, e := range read.Events {
			for _, h := range r.registry[e.Type] {
				if err := h(ctx, tx, e); err != nil {
					return &projection.HandlerError{Projection: subscriptionID, Event: e, Attempts: 1, Err: err}
				}
			}
		}
		if n := len(read.Events); n > 0 {
			// The range was read whole: the checkpoint moves to its end,
			// past any event after the last one that reads as nothing.
			next := min(to, read.CurrentVersion)
			if _, err := tx.Exec(ctx, streamCheckpointUpdateSQL, subscriptionID, partition, string(stream), int64(next), int64(read.Incarnation)); err != nil {
				return fmt.Errorf("advance checkpoint: %w", err)
			}
			res.Checkpoint = next
			res.Processed = n
		}
		return nil
	})
	if span != nil {
		processed := res.Processed
		if err != nil {
			processed = 0
		}
		span.End(sctx, processed, err)
	}
	if err != nil {
		var he *projection.HandlerError
		if errors.As(err, &he) {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("project stream %q of partition %q for %q: %w", stream, partition, subscriptionID, err)
	}
	return res, nil
}

// newIncarnation reports whether the stream read is a later incarnation
// than the one a checkpoint at position last was written for. A checkpoint
// written before incarnations were recorded (incarnation NULL) is taken to
// be the stream's, unless it is past the stream's end.
func newIncarnation(incarnation *int64, last store.Version, read store.ReadResult) bool {
	if incarnation == nil || *incarnation == 0 {
		return last > read.CurrentVersion
	}
	return store.Incarnation(*incarnation) != read.Incarnation
}

// Drain calls ProjectEvents until the subscription has caught up with the
// stream. Processed is the total over all calls; the other fields are those
// of the last call. On error, the batches committed before it stay
// committed and the returned Result counts them.
func (r *Runner) Drain(ctx context.Context, subscriptionID string, stream store.StreamID, opts ProjectOptions) (Result, error) {
	var total Result
	for {
		res, err := r.ProjectEvents(ctx, subscriptionID, stream, opts)
		if err != nil {
			return total, err
		}
		total.Processed += res.Processed
		total.CurrentStreamVersion = res.CurrentStreamVersion
		total.Checkpoint = res.Checkpoint
		total.Restarted = total.Restarted || res.Restarted
		if res.Processed == 0 || res.Checkpoint >= res.CurrentStreamVersion {
			return total, nil
		}
	}
}
